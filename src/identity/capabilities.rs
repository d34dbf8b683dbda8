//! `claim_mappings` → capabilities, with the rules of MXCP's `CapabilityMapper`: a claim path
//! is an exact key first (URI-style keys), else a dot path; a list claim matches each item, a
//! string with spaces matches each word, booleans compare as `true`/`false`.
//! [`claim_values_at`] is that resolution on its own, shared with `policy::role_mappings`.

use crate::config::mxcp_user::ClaimMappings;
use serde_json::Value;
use std::collections::BTreeSet;

pub fn derive_capabilities(mappings: &ClaimMappings, profile: &Value) -> Vec<String> {
    let mut out = BTreeSet::new();
    for (path, value_map) in mappings {
        for value in claim_values_at(profile, path) {
            if let Some(caps) = value_map.get(&value) {
                out.extend(caps.iter().cloned());
            }
        }
    }
    out.into_iter().collect()
}

/// The values a claim mapping compares at `path` of `profile` (none when the claim is absent).
pub fn claim_values_at(profile: &Value, path: &str) -> Vec<String> {
    resolve_path(profile, path).map(claim_values).unwrap_or_default()
}

fn resolve_path<'a>(profile: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = profile.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(profile, |current, part| current.get(part))
}

fn claim_values(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().map(scalar).collect(),
        Value::String(s) if s.contains(' ') => s.split_whitespace().map(str::to_string).collect(),
        other => vec![scalar(other)],
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mappings(yaml: &str) -> ClaimMappings {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn maps_nested_list_uri_and_space_separated_claims() {
        let m = mappings(
            "realm_access.roles: {admin: [tools.admin], mcp-user: [tools.read]}\n\
             'https://corp.example/roles': {ops: [ops]}\n\
             scope: {write: [tools.write]}\n\
             email_verified: {'true': [verified]}\n",
        );
        let profile = json!({
            "realm_access": {"roles": ["mcp-user", "admin"]},
            "https://corp.example/roles": "ops",
            "scope": "read write",
            "email_verified": true
        });
        assert_eq!(
            derive_capabilities(&m, &profile),
            vec!["ops", "tools.admin", "tools.read", "tools.write", "verified"]
        );
    }

    #[test]
    fn missing_claims_give_nothing() {
        let m = mappings("groups: {eng: [x]}\n");
        assert!(derive_capabilities(&m, &json!({"sub": "a"})).is_empty());
    }
}
