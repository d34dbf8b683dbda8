//! The per-request rules of `policies`, after admission (token, `required_scopes`, MCP
//! session): a denial is answered here, recorded (`request_denied`), and never reaches the core.
//!
//! The answer MCP clients show best: when the body was read (some rule reads `rpc`/`tool`) and
//! holds JSON-RPC requests, a JSON-RPC error for each of them (HTTP 200, code
//! [`ACCESS_DENIED_CODE`], the rule's reason as the message), which an SDK's `call_tool` raises
//! with that message; otherwise `403 {"error":"access_denied","error_description":<reason>}`.
//! Plain `http` types; no Pingora here.

use super::admit::AuthParts;
use super::local_response::json_error;
use crate::audit::{AuditEvent, AuditRecord};
use crate::policy::variables::{RequestFacts, RpcCall, UserFacts};
use crate::policy::{Decision, Denial};
use crate::session::ActiveSession;
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};
use std::net::IpAddr;

/// The JSON-RPC error code of a request a policy denied (implementation-defined server error).
pub const ACCESS_DENIED_CODE: i64 = -32003;

// === impl AuthParts ===

impl AuthParts {
    /// The answer to send instead when the request rules deny this request (`calls`: its
    /// JSON-RPC messages, when the body was read).
    pub fn policy_refusal(
        &self,
        active: &ActiveSession,
        request: RequestFacts<'_>,
        calls: &[RpcCall],
        client: Option<IpAddr>,
    ) -> Option<Response<Bytes>> {
        let policies = self.policies.current();
        let record = &active.record;
        let user = UserFacts {
            user: &record.user,
            scopes: &record.scope,
        };
        let Decision::Deny(denial) = policies.check_request(user, request, calls) else {
            return None;
        };
        crate::metrics::metrics().authentication(crate::metrics::AuthReason::PolicyDenied);
        crate::audit::record(
            AuditRecord::new(AuditEvent::RequestDenied)
                .user(&record.user)
                .client_id(&record.client_id)
                .session_id(&record.id)
                .client_addr(client)
                .reason(format!("policy rule {}: {}", denial.rule, denial.reason))
                .request(describe(request, calls)),
        );
        Some(denied(&denial, calls))
    }
}

/// `POST /mcp tools/call drop_table (+1 more)`, for the audit record.
fn describe(request: RequestFacts<'_>, calls: &[RpcCall]) -> String {
    let mut text = format!("{} {}", request.method, request.path);
    if let Some(first) = calls.first() {
        text.push(' ');
        text.push_str(&first.method);
        if let Some(tool) = &first.tool {
            text.push(' ');
            text.push_str(&tool.name);
        }
        if calls.len() > 1 {
            text.push_str(&format!(" (+{} more)", calls.len() - 1));
        }
    }
    text
}

/// The answer to a denied request (see the module doc).
pub fn denied(denial: &Denial, calls: &[RpcCall]) -> Response<Bytes> {
    let errors: Vec<Value> = calls
        .iter()
        .filter(|c| !c.id.is_null() && !c.method.is_empty())
        .map(|c| {
            json!({"jsonrpc": "2.0", "id": c.id, "error": {
                "code": ACCESS_DENIED_CODE, "message": denial.reason, "data": {"error": "access_denied"}}})
        })
        .collect();
    let body = match errors.len() {
        0 => return json_error(StatusCode::FORBIDDEN, "access_denied", &denial.reason),
        1 if calls.len() == 1 => errors[0].to_string(),
        _ => Value::Array(errors).to_string(),
    };
    let mut response = Response::new(Bytes::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::variables::ToolCall;

    fn denial() -> Denial {
        Denial {
            rule: 2,
            reason: "no dropping".into(),
            error: None,
        }
    }

    fn call(id: Value, method: &str) -> RpcCall {
        RpcCall {
            method: method.into(),
            id,
            tool: (method == "tools/call").then(|| ToolCall {
                name: "drop_table".into(),
                arguments: json!({}),
            }),
        }
    }

    fn body(response: &Response<Bytes>) -> Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn json_rpc_requests_get_a_json_rpc_error_and_anything_else_a_403() {
        let one = denied(&denial(), &[call(json!(5), "tools/call")]);
        assert_eq!(one.status(), StatusCode::OK);
        let v = body(&one);
        assert_eq!(v["id"], 5);
        assert_eq!(v["error"]["code"], ACCESS_DENIED_CODE);
        assert_eq!(v["error"]["message"], "no dropping");

        let batch = denied(
            &denial(),
            &[
                call(json!(1), "tools/list"),
                call(Value::Null, "notifications/x"),
                call(json!("b"), "tools/call"),
            ],
        );
        let v = body(&batch);
        assert_eq!(v.as_array().unwrap().len(), 2, "one error per request with an id: {v}");

        for calls in [vec![], vec![call(Value::Null, "notifications/initialized")]] {
            let plain = denied(&denial(), &calls);
            assert_eq!(plain.status(), StatusCode::FORBIDDEN);
            assert_eq!(
                body(&plain),
                json!({"error": "access_denied", "error_description": "no dropping"})
            );
        }
    }

    #[test]
    fn the_audit_request_names_the_call() {
        let post = RequestFacts {
            method: "POST",
            path: "/mcp",
        };
        assert_eq!(describe(post, &[]), "POST /mcp");
        assert_eq!(
            describe(post, &[call(json!(1), "tools/call"), call(json!(2), "tools/list")]),
            "POST /mcp tools/call drop_table (+1 more)"
        );
    }
}
