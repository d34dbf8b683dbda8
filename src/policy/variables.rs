//! What a policy condition can read: `user`, `request`, `rpc` and `tool`, as CEL values.
//!
//! Every key is always present: a missing optional value is an empty string or an empty list, so
//! `!user.email.endsWith('@corp.test')` is true for a user without an email (and denies them)
//! instead of failing. `rpc.method` is `""` and `tool` is `{name: "", arguments: {}}` outside an
//! MCP `tools/call`; `rpc.id` is the JSON-RPC id (`null` for notifications and non-RPC requests).

use crate::identity::user::UserIdentity;
use cel::Value;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::Arc;

/// The signed-in user and the scopes their token carries.
#[derive(Clone, Copy)]
pub struct UserFacts<'a> {
    pub user: &'a UserIdentity,
    pub scopes: &'a [String],
}

/// The HTTP request (at login: the provider's callback).
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
}

/// One JSON-RPC message of an MCP request body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RpcCall {
    pub method: String,
    /// `null` when the message has none (a notification).
    pub id: Json,
    /// For `tools/call`: the tool and its arguments.
    pub tool: Option<ToolCall>,
}

/// The tool a `tools/call` names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// A JSON object (`{}` when the call sent none or something else).
    pub arguments: Json,
}

/// Which variables the rules of a set read; only those are built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    pub user: bool,
    pub request: bool,
    /// `rpc` or `tool`: the request body must be read.
    pub call: bool,
}

// === impl Reads ===

impl Reads {
    pub fn of(references: &cel::parser::ExpressionReferences<'_>) -> Self {
        Self {
            user: references.has_variable("user"),
            request: references.has_variable("request"),
            call: references.has_variable("rpc") || references.has_variable("tool"),
        }
    }

    pub fn union(self, other: Self) -> Self {
        Self {
            user: self.user || other.user,
            request: self.request || other.request,
            call: self.call || other.call,
        }
    }
}

/// `user` and `request`, built once per decision and shared by every message of a batch.
pub struct Subject {
    user: Option<Value>,
    request: Option<Value>,
}

// === impl Subject ===

impl Subject {
    pub fn new(reads: Reads, user: UserFacts<'_>, request: RequestFacts<'_>) -> Self {
        Self {
            user: reads.user.then(|| user_value(user)),
            request: reads.request.then(|| request_value(request)),
        }
    }

    /// Binds the variables to a fresh context (with `call` when the rules read it).
    pub fn context(&self, env: &Arc<cel::Env>, reads: Reads, call: Option<&RpcCall>) -> cel::Context<'static, 'static> {
        let mut context = cel::Context::with_env(env.clone());
        if let Some(user) = &self.user {
            context.add_variable_from_value("user", user.clone());
        }
        if let Some(request) = &self.request {
            context.add_variable_from_value("request", request.clone());
        }
        if reads.call {
            let (rpc, tool) = call_values(call);
            context.add_variable_from_value("rpc", rpc);
            context.add_variable_from_value("tool", tool);
        }
        context
    }
}

fn text(value: &str) -> Value {
    Value::String(Arc::new(value.to_string()))
}

fn texts(values: &[String]) -> Value {
    Value::List(Arc::new(values.iter().map(|v| text(v)).collect()))
}

fn map(entries: Vec<(&'static str, Value)>) -> Value {
    Value::from(entries.into_iter().collect::<HashMap<&str, Value>>())
}

fn user_value(facts: UserFacts<'_>) -> Value {
    let user = facts.user;
    let optional = |v: &Option<String>| text(v.as_deref().unwrap_or_default());
    map(vec![
        ("id", text(&user.user_id)),
        ("username", text(&user.username)),
        ("email", optional(&user.email)),
        ("name", optional(&user.name)),
        ("provider", text(&user.provider)),
        ("role", optional(&user.role)),
        ("permissions", texts(&user.permissions)),
        ("groups", texts(&user.groups)),
        ("capabilities", texts(&user.capabilities)),
        ("scopes", texts(facts.scopes)),
    ])
}

fn request_value(facts: RequestFacts<'_>) -> Value {
    map(vec![("method", text(facts.method)), ("path", text(facts.path))])
}

fn call_values(call: Option<&RpcCall>) -> (Value, Value) {
    let id = call.map_or(Value::Null, |c| json_value(&c.id));
    let method = call.map_or("", |c| c.method.as_str());
    let tool = call.and_then(|c| c.tool.as_ref());
    let arguments = tool.map_or_else(
        || Value::from(HashMap::<&str, Value>::new()),
        |t| json_value(&t.arguments),
    );
    (
        map(vec![("method", text(method)), ("id", id)]),
        map(vec![
            ("name", text(tool.map_or("", |t| t.name.as_str()))),
            ("arguments", arguments),
        ]),
    )
}

/// A JSON value as CEL sees it (numbers: int, uint or double).
fn json_value(json: &Json) -> Value {
    cel::to_value(json).unwrap_or(Value::Null)
}
