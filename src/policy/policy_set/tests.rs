use super::*;
use crate::identity::user::UserIdentity;
use serde_json::json;

fn set(yaml: &str) -> Result<PolicySet, (String, String)> {
    let rules: Vec<PolicyRule> = serde_yaml::from_str(yaml).unwrap();
    PolicySet::build(&rules, RoleMappings::default(), false)
}

fn alice() -> UserIdentity {
    UserIdentity {
        provider: "oidc".into(),
        user_id: "alice".into(),
        username: "alice".into(),
        email: Some("alice@corp.test".into()),
        groups: vec!["engineering".into()],
        role: Some("admin".into()),
        ..Default::default()
    }
}

fn bob() -> UserIdentity {
    UserIdentity {
        provider: "oidc".into(),
        user_id: "bob".into(),
        username: "bob".into(),
        email: None,
        ..Default::default()
    }
}

const SCOPES: &[String] = &[];
const POST_MCP: RequestFacts<'static> = RequestFacts {
    method: "POST",
    path: "/mcp",
};

fn login(set: &PolicySet, user: &UserIdentity) -> Decision {
    set.check_login(UserFacts { user, scopes: SCOPES }, POST_MCP)
}

fn tool_call(name: &str, arguments: serde_json::Value) -> RpcCall {
    RpcCall {
        method: "tools/call".into(),
        id: json!(1),
        tool: Some(ToolCall {
            name: name.into(),
            arguments,
        }),
    }
}

fn request(set: &PolicySet, user: &UserIdentity, calls: &[RpcCall]) -> Decision {
    set.check_request(UserFacts { user, scopes: SCOPES }, POST_MCP, calls)
}

fn denied_by(decision: Decision) -> Option<(usize, String, bool)> {
    match decision {
        Decision::Allow => None,
        Decision::Deny(d) => Some((d.rule, d.reason, d.error.is_some())),
    }
}

#[test]
fn a_condition_that_does_not_compile_names_the_rule_and_the_position() {
    let (key, message) = set(
        "- {condition: \"user.role == 'admin'\", action: allow}\n- {condition: 'user.email.endsWith(', action: deny}\n",
    )
    .err()
    .unwrap();
    assert_eq!(key, "policies[1].condition");
    assert!(message.starts_with("does not compile: line 1, column "), "{message}");
    assert!(
        message.len() > "does not compile: line 1, column 1: ".len(),
        "the parser's message: {message}"
    );
}

#[test]
fn the_first_true_rule_decides_and_none_true_allows() {
    let rules = set("- {condition: \"user.role == 'admin'\", action: allow}\n\
         - {condition: \"'engineering' in user.groups\", action: deny, reason: engineering only via admin}\n\
         - {condition: 'true', action: deny, reason: everyone else}\n")
    .unwrap();
    assert_eq!(
        login(&rules, &alice()),
        Decision::Allow,
        "rule 0 allows before rule 1 denies"
    );
    let mut engineer = alice();
    engineer.role = None;
    assert_eq!(
        denied_by(login(&rules, &engineer)),
        Some((1, "engineering only via admin".into(), false))
    );
    assert_eq!(
        denied_by(login(&rules, &bob())),
        Some((2, "everyone else".into(), false))
    );
    assert_eq!(login(&set("[]").unwrap(), &bob()), Decision::Allow);
    let none_true = set("- {condition: \"user.username == 'carol'\", action: deny}\n").unwrap();
    assert_eq!(login(&none_true, &bob()), Decision::Allow);
}

#[test]
fn missing_optional_values_are_empty_so_a_domain_rule_denies_users_without_email() {
    let rules =
        set("- {condition: \"!user.email.endsWith('@corp.test')\", action: deny, reason: corp accounts only}\n")
            .unwrap();
    assert_eq!(login(&rules, &alice()), Decision::Allow);
    assert_eq!(
        denied_by(login(&rules, &bob())),
        Some((0, "corp accounts only".into(), false))
    );
    let lists = set("- {condition: \"user.role == '' && size(user.permissions) == 0 && user.name == '' && size(user.scopes) == 0\", action: deny}\n").unwrap();
    assert!(denied_by(login(&lists, &bob())).is_some());
}

#[test]
fn a_rule_that_fails_to_evaluate_denies() {
    for condition in [
        "user.no_such_field == 'x'",
        "user.email",
        "user.groups > 3",
        "tool.arguments.table == 'x'",
    ] {
        let rules = set(&format!("- {{condition: \"{condition}\", action: allow}}\n")).unwrap();
        let calls = [tool_call("t", json!({}))];
        let (rule, reason, failed) = denied_by(request(&rules, &alice(), &calls)).expect(condition);
        assert_eq!((rule, failed), (0, true), "{condition}");
        assert_eq!(reason, FAILED_REASON);
    }
}

#[test]
fn on_defaults_to_both_stages_except_for_rules_on_rpc_or_tool() {
    let rules = set("- {condition: \"tool.name == 'drop_table'\", action: deny}\n\
         - {condition: \"user.username == 'bob'\", action: deny}\n\
         - {condition: \"user.username == 'alice'\", action: deny, on: [request]}\n")
    .unwrap();
    let stages: Vec<(bool, bool)> = rules.rules.iter().map(|r| (r.at_login, r.at_request)).collect();
    assert_eq!(stages, vec![(false, true), (true, true), (false, true)]);
    assert!(rules.reads_calls());
    assert_eq!(
        login(&rules, &alice()),
        Decision::Allow,
        "alice's rule is per request only"
    );
    assert!(denied_by(login(&rules, &bob())).is_some());

    let (key, _) = set("- {condition: \"rpc.method == 'x'\", action: deny, on: [login]}\n")
        .err()
        .unwrap();
    assert_eq!(key, "policies[0].on");
    let only_user = set("- {condition: \"user.username == 'bob'\", action: deny}\n").unwrap();
    assert!(
        !only_user.reads_calls(),
        "no body is read for rules that do not need it"
    );
}

#[test]
fn rules_on_rpc_or_tool_are_refused_with_forward_auth() {
    let rules: Vec<PolicyRule> = serde_yaml::from_str("- {condition: \"tool.name == 'x'\", action: deny}\n").unwrap();
    let (key, message) = PolicySet::build(&rules, RoleMappings::default(), true).err().unwrap();
    assert_eq!(key, "policies[0].condition");
    assert!(message.contains("forward auth"), "{message}");
    let user_only: Vec<PolicyRule> =
        serde_yaml::from_str("- {condition: \"user.role == ''\", action: deny}\n").unwrap();
    assert!(PolicySet::build(&user_only, RoleMappings::default(), true).is_ok());
}

#[test]
fn every_message_of_a_batch_is_decided_and_any_denial_denies() {
    let rules = set("- {condition: \"tool.name == 'drop_table'\", action: deny, reason: no dropping}\n").unwrap();
    let list = RpcCall {
        method: "tools/list".into(),
        id: json!(1),
        tool: None,
    };
    assert_eq!(request(&rules, &alice(), std::slice::from_ref(&list)), Decision::Allow);
    assert_eq!(
        request(&rules, &alice(), &[]),
        Decision::Allow,
        "not an RPC: rpc.method is ''"
    );
    let batch = [list, tool_call("whoami", json!({})), tool_call("drop_table", json!({}))];
    assert_eq!(
        denied_by(request(&rules, &alice(), &batch)),
        Some((0, "no dropping".into(), false))
    );
}

#[test]
fn tools_are_hidden_when_a_call_with_no_arguments_would_be_denied() {
    let rules = set(
        "- {condition: \"tool.name == 'drop_table' && user.role != 'admin'\", action: deny}\n\
         - {condition: \"tool.name == 'export' && tool.arguments.format == 'csv'\", action: deny}\n\
         - {condition: \"tool.name == 'report' && has(tool.arguments.format) && tool.arguments.format == 'csv'\", action: deny}\n",
    )
    .unwrap();
    let bob = bob();
    let mut hides = rules.tool_filter(
        UserFacts {
            user: &bob,
            scopes: SCOPES,
        },
        POST_MCP,
    );
    assert!(hides("drop_table"));
    assert!(!hides("whoami"));
    assert!(
        hides("export"),
        "reading a missing argument fails, which hides the tool"
    );
    assert!(!hides("report"), "has() guards the missing argument");
    let alice = alice();
    let mut for_alice = rules.tool_filter(
        UserFacts {
            user: &alice,
            scopes: SCOPES,
        },
        POST_MCP,
    );
    assert!(!for_alice("drop_table"));
}

#[test]
fn request_variables_and_scopes_are_visible() {
    let rules = set(
        "- {condition: \"request.method == 'POST' && request.path == '/mcp' && 'mxcp:admin' in user.scopes && rpc.id == 1\", action: deny}\n",
    )
    .unwrap();
    let scopes = vec!["mxcp:admin".to_string()];
    let alice = alice();
    let decision = rules.check_request(
        UserFacts {
            user: &alice,
            scopes: &scopes,
        },
        POST_MCP,
        &[tool_call("x", json!({}))],
    );
    assert!(denied_by(decision).is_some());
}
