//! The one `ProxyHttp` implementation. `request_filter` answers mxgate's own endpoints and
//! authenticates everything else; `upstream_request_filter` cleans the request for the core and
//! adds the assertion. Bodies stream both ways (SSE included); nothing is buffered.

use super::admit::{AuthParts, RequestHead};
use super::forwarded::{apply_forwarded, ForwardedFacts};
use super::local_response::{json_error, read_request, write_response};
use super::mcp_session_binding::MCP_SESSION_HEADER;
use super::proxy_trust::{ClientView, ProxyTrust};
use super::strip_gateway_cookies::strip_gateway_cookies;
use super::strip_identity_headers::strip_identity_headers;
use crate::identity::assertion::ASSERTION_HEADER;
use crate::oauth::PublicOrigin;
use crate::session::ActiveSession;
use async_trait::async_trait;
use http::{HeaderValue, Method, StatusCode};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::ErrorSource;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";

pub struct McpGateway {
    pub auth: Option<AuthParts>,
    pub peer: HttpPeer,
    pub upstream_host: String,
    pub public_scheme: &'static str,
    /// `public_url` was derived, not configured: a trusted proxy may name the origin per request.
    pub origin_from_proxy: bool,
    pub trust: ProxyTrust,
    pub store_ready: Option<crate::store::Store>,
}

/// What earlier phases of one request learned, for later ones.
pub struct RequestContext {
    started: Instant,
    view: ClientView,
    /// The public URL of this request when a trusted proxy names one other than `public_url`.
    origin: Option<PublicOrigin>,
    session: Option<Arc<ActiveSession>>,
    assertion: Option<HeaderValue>,
    local: bool,
}

// === impl McpGateway ===

impl McpGateway {
    async fn answer(&self, session: &mut Session, response: http::Response<bytes::Bytes>) -> pingora::Result<bool> {
        write_response(session, response).await?;
        Ok(true)
    }

    async fn ready(&self) -> http::Response<bytes::Bytes> {
        let healthy = match &self.store_ready {
            Some(store) => store
                .get::<serde_json::Value>(crate::store::Table::Clients, "")
                .await
                .is_ok(),
            None => true,
        };
        if healthy {
            json_error(StatusCode::OK, "ok", "ready")
        } else {
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the store is not readable",
            )
        }
    }

    /// Admits a request for the core. `Ok(true)` when a refusal was written instead.
    async fn admit(&self, auth: &AuthParts, session: &mut Session, ctx: &mut RequestContext) -> pingora::Result<bool> {
        let now = crate::store::now();
        let header = session.req_header();
        let request = RequestHead {
            method: &header.method,
            path_and_query: header.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            headers: &header.headers,
            origin: ctx.origin.as_ref(),
        };
        match auth.admit(&request, now).await {
            Ok(admitted) => {
                ctx.assertion = Some(admitted.assertion);
                ctx.session = Some(admitted.session);
                Ok(false)
            }
            Err(refusal) => self.answer(session, refusal).await,
        }
    }
}

#[async_trait]
impl ProxyHttp for McpGateway {
    type CTX = RequestContext;

    fn new_ctx(&self) -> Self::CTX {
        RequestContext {
            started: Instant::now(),
            view: ClientView::default(),
            origin: None,
            session: None,
            assertion: None,
            local: false,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> pingora::Result<bool> {
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        ctx.view = self.trust.view(peer, &session.req_header().headers);
        if self.origin_from_proxy {
            if let (Some(proto), Some(host)) = (&ctx.view.forwarded_proto, &ctx.view.host) {
                ctx.origin = Some(PublicOrigin(format!("{proto}://{host}")));
            }
        }
        let path = session.req_header().uri.path();
        if path == HEALTH_PATH {
            ctx.local = true;
            return self.answer(session, json_error(StatusCode::OK, "ok", "alive")).await;
        }
        if path == READY_PATH {
            ctx.local = true;
            let resp = self.ready().await;
            return self.answer(session, resp).await;
        }
        let Some(auth) = &self.auth else {
            return Ok(false);
        };
        if let Some(route) = auth.server.route(path) {
            ctx.local = true;
            let response = match read_request(session).await? {
                Some(mut request) => {
                    if let Some(origin) = &ctx.origin {
                        request.extensions_mut().insert(origin.clone());
                    }
                    auth.server.handle(route, request).await
                }
                None => json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_request",
                    "the request body is too large",
                ),
            };
            return self.answer(session, response).await;
        }
        // CORS preflights carry no credentials; they pass to the core unauthenticated.
        if session.req_header().method == Method::OPTIONS {
            return Ok(false);
        }
        self.admit(auth, session, ctx).await
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        strip_identity_headers(upstream_request);
        if self.auth.is_some() {
            // The client's token is for mxgate, never for the core.
            upstream_request.remove_header(&http::header::AUTHORIZATION);
            strip_gateway_cookies(upstream_request)?;
        }
        let proto = ctx.view.forwarded_proto.as_deref().unwrap_or(self.public_scheme);
        apply_forwarded(
            upstream_request,
            &ForwardedFacts {
                client_ip: ctx.view.client_ip,
                forwarded_for: ctx.view.forwarded_for.as_deref(),
                proto,
                original_host: ctx.view.host.as_deref(),
                upstream_host: &self.upstream_host,
            },
        )?;
        if let Some(assertion) = ctx.assertion.take() {
            upstream_request.insert_header(ASSERTION_HEADER, assertion)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut pingora::http::ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> pingora::Result<()> {
        let (Some(auth), Some(active)) = (&self.auth, &ctx.session) else {
            return Ok(());
        };
        if !upstream_response.status.is_success() {
            return Ok(());
        }
        let request = session.req_header();
        if request.method == Method::DELETE {
            if let Some(id) = request.headers.get(MCP_SESSION_HEADER).and_then(|v| v.to_str().ok()) {
                auth.mcp_sessions.forget(id);
            }
        } else if let Some(id) = upstream_response
            .headers
            .get(MCP_SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            auth.mcp_sessions
                .bind(id, &active.record.user.key(), crate::store::now());
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &pingora::Error, _ctx: &mut Self::CTX) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        let code = match e.etype() {
            pingora::ErrorType::HTTPStatus(code) => *code,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    pingora::ErrorType::WriteError
                    | pingora::ErrorType::ReadError
                    | pingora::ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 && session.response_written().is_none() {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            let resp = if code == 502 {
                json_error(status, "bad_gateway", "the MCP server behind mxgate is not reachable")
            } else {
                json_error(status, "proxy_error", status.canonical_reason().unwrap_or("error"))
            };
            if let Err(write_error) = write_response(session, resp).await {
                tracing::debug!(error = %write_error, "could not write the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that hangs up mid-request is routine (a closed tab, an aborted stream): not an error.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &pingora::Error) -> bool {
        client_went_away(error)
    }

    async fn logging(&self, session: &mut Session, error: Option<&pingora::Error>, ctx: &mut Self::CTX) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed: Duration = ctx.started.elapsed();
        let user = ctx
            .session
            .as_ref()
            .map(|s| s.record.user.username.as_str())
            .unwrap_or("-");
        let req = session.req_header();
        if let Some(e) = error.filter(|e| !client_went_away(e)) {
            tracing::warn!(method = %req.method, path = %req.uri.path(), status, user, error = %e, "request failed");
        } else if let Some(e) = error {
            tracing::debug!(method = %req.method, path = %req.uri.path(), status, user, error = %e, "client went away");
        } else if ctx.local {
            tracing::info!(method = %req.method, path = %req.uri.path(), status, micros = elapsed.as_micros() as u64, "local");
        } else {
            tracing::debug!(method = %req.method, path = %req.uri.path(), status, user, micros = elapsed.as_micros() as u64, "proxied");
        }
    }
}

/// The downstream client closed or broke its connection.
fn client_went_away(error: &pingora::Error) -> bool {
    *error.esource() == ErrorSource::Downstream
        && matches!(
            error.etype(),
            pingora::ErrorType::ConnectionClosed | pingora::ErrorType::ReadError | pingora::ErrorType::WriteError
        )
}
