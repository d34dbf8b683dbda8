//! `policies:` compiled: an ordered list of CEL rules; at each stage (login, request) the first
//! rule whose condition is true decides (`deny` or `allow`), and none true allows.
//!
//! **Fail closed**: a rule whose evaluation fails (no such key, wrong type, a result that is not
//! a boolean) denies, logged with the rule's index and the user's id only. A condition that does
//! not compile, an `on` that reads `rpc`/`tool` at login, or a rule that needs the request body
//! while forward auth is on (mxgate never sees that body) is a configuration error.
//!
//! Programs are compiled once, when the set is built; a set with no rules costs nothing per
//! request (no variables are built), and only the variables some rule reads are built.

use super::role_mappings::RoleMappings;
use super::variables::{Reads, RequestFacts, RpcCall, Subject, ToolCall, UserFacts};
use crate::config::access_policy::{PolicyAction, PolicyRule, PolicyStage};
use crate::config::{ConfigError, Settings};
use std::sync::Arc;

/// What a denied user is told when the rule has no `reason`.
const DEFAULT_REASON: &str = "access denied by policy";
/// What a user is told when a rule could not be evaluated (the details are only logged).
const FAILED_REASON: &str = "access denied: a policy could not be evaluated";

/// One compiled rule.
struct Rule {
    index: usize,
    program: cel::Program,
    action: PolicyAction,
    reason: String,
    at_login: bool,
    at_request: bool,
    reads: Reads,
}

/// The role mappings and the compiled rules of one configuration, swapped whole on reload.
pub struct PolicySet {
    pub role_mappings: RoleMappings,
    rules: Vec<Rule>,
    env: Arc<cel::Env>,
    login_reads: Reads,
    request_reads: Reads,
}

/// A stage's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

/// Why a request or login was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The deciding rule's position in `policies` (from 0).
    pub rule: usize,
    /// What the user is told: the rule's `reason`.
    pub reason: String,
    /// The rule's evaluation failed (fail closed); what went wrong, for the logs.
    pub error: Option<String>,
}

// === impl PolicySet ===

impl PolicySet {
    /// Compiles the settings' `policies` and takes their `role_mappings`.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let file = &settings.config_file;
        let nothing_configured = settings.policies.is_empty() && settings.role_mappings.0.is_empty();
        if !settings.auth_enabled() && !nothing_configured {
            let key = if settings.policies.is_empty() {
                "role_mappings"
            } else {
                "policies"
            };
            return Err(ConfigError::invalid(
                file,
                key,
                "the MXCP config has `provider: none`: there is no user to map or decide on",
            ));
        }
        Self::build(
            &settings.policies,
            RoleMappings::new(settings.role_mappings.clone()),
            settings.forward_auth_path.is_some(),
        )
        .map_err(|(key, message)| ConfigError::invalid(file, key, message))
    }

    /// Compiles `policies`; the error is `(key, message)`.
    pub fn build(
        policies: &[PolicyRule],
        role_mappings: RoleMappings,
        forward_auth: bool,
    ) -> Result<Self, (String, String)> {
        let env = Arc::new(cel::Env::stdlib());
        let mut rules = Vec::with_capacity(policies.len());
        for (index, rule) in policies.iter().enumerate() {
            let compiled = compile(&env, index, rule)?;
            if compiled.at_request && compiled.reads.call && forward_auth {
                return Err((
                    format!("policies[{index}].condition"),
                    "reads `rpc` or `tool`, but forward auth is on: a proxy's auth check carries no \
                     request body, so mxgate could not enforce it there"
                        .into(),
                ));
            }
            rules.push(compiled);
        }
        let reads_at = |stage: fn(&Rule) -> bool| {
            rules
                .iter()
                .filter(|r| stage(r))
                .fold(Reads::default(), |acc, r| acc.union(r.reads))
        };
        Ok(Self {
            role_mappings,
            login_reads: reads_at(|r| r.at_login),
            request_reads: reads_at(|r| r.at_request),
            rules,
            env,
        })
    }

    /// No rule at all (and so no work per request).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn has_request_rules(&self) -> bool {
        self.rules.iter().any(|r| r.at_request)
    }

    /// Some per-request rule reads `rpc` or `tool`: POST bodies must be read, and `tools/list`
    /// answers filtered.
    pub fn reads_calls(&self) -> bool {
        self.request_reads.call
    }

    /// The login rules' decision for a user who just signed in.
    pub fn check_login(&self, user: UserFacts<'_>, request: RequestFacts<'_>) -> Decision {
        if !self.rules.iter().any(|r| r.at_login) {
            return Decision::Allow;
        }
        let subject = Subject::new(self.login_reads, user, request);
        self.decide(&subject, self.login_reads, None, user, |r| r.at_login)
    }

    /// The request rules' decision; with several JSON-RPC messages (a batch), each is decided
    /// and any denial denies the whole request.
    pub fn check_request(&self, user: UserFacts<'_>, request: RequestFacts<'_>, calls: &[RpcCall]) -> Decision {
        if !self.has_request_rules() {
            return Decision::Allow;
        }
        let reads = self.request_reads;
        let subject = Subject::new(reads, user, request);
        if calls.is_empty() || !reads.call {
            return self.decide(&subject, reads, None, user, |r| r.at_request);
        }
        for call in calls {
            if let denied @ Decision::Deny(_) = self.decide(&subject, reads, Some(call), user, |r| r.at_request) {
                return denied;
            }
        }
        Decision::Allow
    }

    /// Whether a tool would be denied a `tools/call` with no arguments (for hiding it from a
    /// `tools/list` answer); a rule that fails on the missing arguments hides the tool.
    pub fn tool_filter<'s>(&'s self, user: UserFacts<'_>, request: RequestFacts<'_>) -> impl FnMut(&str) -> bool + 's {
        let reads = self.request_reads;
        let subject = Subject::new(reads, user, request);
        move |name| {
            let call = RpcCall {
                method: "tools/call".into(),
                id: serde_json::Value::Null,
                tool: Some(ToolCall {
                    name: name.to_string(),
                    arguments: serde_json::json!({}),
                }),
            };
            matches!(
                self.evaluate(&subject, reads, Some(&call), |r| r.at_request),
                Decision::Deny(_)
            )
        }
    }

    /// [`Self::evaluate`], logging a denial (the user's id and the rule, nothing else).
    fn decide(
        &self,
        subject: &Subject,
        reads: Reads,
        call: Option<&RpcCall>,
        user: UserFacts<'_>,
        at: fn(&Rule) -> bool,
    ) -> Decision {
        let decision = self.evaluate(subject, reads, call, at);
        if let Decision::Deny(denial) = &decision {
            match &denial.error {
                Some(error) => tracing::warn!(
                    user = %user.user.key(),
                    rule = denial.rule,
                    %error,
                    "policy rule could not be evaluated; denied (fail closed)"
                ),
                None => tracing::info!(user = %user.user.key(), rule = denial.rule, "denied by policy rule"),
            }
        }
        decision
    }

    /// The first rule (among those `at` selects) whose condition is true decides.
    fn evaluate(&self, subject: &Subject, reads: Reads, call: Option<&RpcCall>, at: fn(&Rule) -> bool) -> Decision {
        let context = subject.context(&self.env, reads, call);
        for rule in self.rules.iter().filter(|r| at(r)) {
            let failed = |error: String| {
                Decision::Deny(Denial {
                    rule: rule.index,
                    reason: FAILED_REASON.into(),
                    error: Some(error),
                })
            };
            match rule.program.execute(&context) {
                Ok(cel::Value::Bool(false)) => continue,
                Ok(cel::Value::Bool(true)) => {
                    return match rule.action {
                        PolicyAction::Allow => Decision::Allow,
                        PolicyAction::Deny => Decision::Deny(Denial {
                            rule: rule.index,
                            reason: rule.reason.clone(),
                            error: None,
                        }),
                    }
                }
                Ok(other) => return failed(format!("the condition gave a {}, not a bool", other.type_of())),
                Err(e) => return failed(describe(&e)),
            }
        }
        Decision::Allow
    }
}

/// Compiles one rule; the error is `(key, message)` with the parser's position.
fn compile(env: &cel::Env, index: usize, rule: &PolicyRule) -> Result<Rule, (String, String)> {
    let key = |field: &str| format!("policies[{index}].{field}");
    let program = env.compile(&rule.condition).map_err(|errors| {
        let message = match errors.errors.first() {
            Some(e) => format!("does not compile: line {}, column {}: {}", e.pos.0, e.pos.1 + 1, e.msg),
            None => "does not compile".to_string(),
        };
        (key("condition"), message)
    })?;
    let reads = Reads::of(&program.references());
    let (at_login, at_request) = match &rule.on {
        None => (!reads.call, true),
        Some(stages) => (
            stages.contains(&PolicyStage::Login),
            stages.contains(&PolicyStage::Request),
        ),
    };
    if at_login && reads.call {
        return Err((
            key("on"),
            "the condition reads `rpc` or `tool`, which exist only per request: use `on: [request]`".into(),
        ));
    }
    Ok(Rule {
        index,
        program,
        action: rule.action,
        reason: rule.reason.clone().unwrap_or_else(|| DEFAULT_REASON.into()),
        at_login,
        at_request,
        reads,
    })
}

/// What went wrong evaluating a rule, without the values involved (they may be user data).
fn describe(error: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    let short = |name: &str| name.chars().take(64).collect::<String>();
    match error {
        E::NoSuchKey(key) => format!("no such key `{}`", short(key)),
        E::UndeclaredReference(name) => format!("unknown name `{}`", short(name)),
        E::NoSuchOverload(overload) => format!(
            "no function `{}` for ({})",
            short(overload.function()),
            overload.argument_types().join(", ")
        ),
        E::UnexpectedType { got, want } => format!("a {got} where a {want} is needed"),
        E::FunctionError { function, .. } => format!("`{}` failed", short(function)),
        E::ValuesNotComparable(..) => "values that cannot be compared".into(),
        E::IndexOutOfBounds(_) => "an index out of bounds".into(),
        E::DivisionByZero(_) | E::RemainderByZero(_) => "a division by zero".into(),
        E::Overflow(..) => "an arithmetic overflow".into(),
        _ => "an evaluation error".into(),
    }
}

#[cfg(test)]
mod tests;
