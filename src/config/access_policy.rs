//! `role_mappings` and `policies` of `mxgate.yml` as written, with their bounds checked here.
//! What they mean, and the compiling of the CEL conditions, is `policy::PolicySet`'s (built by
//! `mxgate check` and `serve`, so a condition that does not compile stops both).
//!
//! Both keep file order: the first matching role mapping and the first matching rule decide.

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;

/// Most permissions (or groups) one grant may list, and that a user may hold after mapping.
pub const MAX_GRANT_ENTRIES: usize = 256;
/// Longest role, permission or group name, in bytes.
pub const MAX_GRANT_VALUE: usize = 256;
/// Most claim values all role mappings together may list.
pub const MAX_MAPPED_VALUES: usize = 4096;
/// Most policy rules.
pub const MAX_RULES: usize = 256;
/// Longest CEL condition, in bytes.
pub const MAX_CONDITION: usize = 4096;
/// Longest `reason`, in bytes.
pub const MAX_REASON: usize = 512;

/// Entries of a YAML mapping in file order (a map type would sort or hash them away).
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

/// `role_mappings:` provider name (as the core sees it) → claim path → claim value → grant.
pub type RoleMappingsFile = Ordered<Ordered<Ordered<Grant>>>;

/// What a matching claim value grants; each part optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What a rule does when its condition is true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    Deny,
    Allow,
}

/// When a rule is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyStage {
    /// At the provider callback, before a session exists.
    Login,
    /// On every request for the core, after the token and `required_scopes`.
    Request,
}

/// One entry of `policies:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// A CEL expression over `user`, `request`, `rpc` and `tool`.
    pub condition: String,
    pub action: PolicyAction,
    /// What a denied user is told (and the audit record says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Default `[login, request]`; `[request]` for a rule that names `rpc` or `tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<PolicyStage>>,
}

/// Checks the bounds of both settings; the error is `(key, message)`.
pub fn validate(role_mappings: &RoleMappingsFile, rules: &[PolicyRule]) -> Result<(), (String, String)> {
    let mut mapped = 0;
    for (provider, claims) in &role_mappings.0 {
        for (path, values) in &claims.0 {
            for (value, grant) in &values.0 {
                mapped += 1;
                check_grant(grant).map_err(|m| (format!("role_mappings.{provider}.{path}.{value}"), m))?;
            }
        }
    }
    if mapped > MAX_MAPPED_VALUES {
        return Err((
            "role_mappings".into(),
            format!("{mapped} claim values are mapped; at most {MAX_MAPPED_VALUES}"),
        ));
    }
    if rules.len() > MAX_RULES {
        return Err(("policies".into(), format!("{} rules; at most {MAX_RULES}", rules.len())));
    }
    for (index, rule) in rules.iter().enumerate() {
        let key = |field: &str| format!("policies[{index}].{field}");
        if rule.condition.trim().is_empty() {
            return Err((key("condition"), "must not be empty".into()));
        }
        if rule.condition.len() > MAX_CONDITION {
            return Err((
                key("condition"),
                format!("{} bytes; at most {MAX_CONDITION}", rule.condition.len()),
            ));
        }
        if rule.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
            return Err((key("reason"), format!("at most {MAX_REASON} bytes")));
        }
        if rule.on.as_ref().is_some_and(Vec::is_empty) {
            return Err((key("on"), "must name `login`, `request` or both".into()));
        }
    }
    Ok(())
}

fn check_grant(grant: &Grant) -> Result<(), String> {
    if grant
        .role
        .as_ref()
        .is_some_and(|r| r.is_empty() || r.len() > MAX_GRANT_VALUE)
    {
        return Err(format!("`role` must be 1 to {MAX_GRANT_VALUE} bytes"));
    }
    for (name, list) in [("permissions", &grant.permissions), ("groups", &grant.groups)] {
        if list.len() > MAX_GRANT_ENTRIES {
            return Err(format!("`{name}` lists {}; at most {MAX_GRANT_ENTRIES}", list.len()));
        }
        if let Some(bad) = list.iter().find(|v| v.is_empty() || v.len() > MAX_GRANT_VALUE) {
            let shown: String = bad.chars().take(40).collect();
            return Err(format!("`{name}` entry `{shown}` must be 1 to {MAX_GRANT_VALUE} bytes"));
        }
    }
    Ok(())
}

// === impl Ordered ===

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = Ordered<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Ordered::default())
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(ScalarKey(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Ordered(entries))
            }
        }

        deserializer.deserialize_any(OrderedVisitor(PhantomData))
    }
}

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// A mapping key written as a string, number or boolean (`true:` is a claim value too), as text.
struct ScalarKey(String);

impl<'de> Deserialize<'de> for ScalarKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(deserializer)? {
            serde_yaml::Value::String(s) => Ok(Self(s)),
            serde_yaml::Value::Bool(b) => Ok(Self(b.to_string())),
            serde_yaml::Value::Number(n) => Ok(Self(n.to_string())),
            _ => Err(de::Error::custom("a key must be a string, a number or a boolean")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_keep_file_order_and_read_scalar_keys() {
        let parsed: RoleMappingsFile = serde_yaml::from_str(
            "github:\n  groups:\n    zeta/admins: {role: admin}\n    acme/ops: {role: ops, permissions: [deploy]}\n\
             oidc:\n  email_verified:\n    true: {groups: [verified]}\n",
        )
        .unwrap();
        let github = &parsed.0[0].1 .0[0].1 .0;
        assert_eq!(github[0].0, "zeta/admins", "file order, not sorted");
        assert_eq!(github[1].1.permissions, vec!["deploy"]);
        assert_eq!(parsed.0[1].1 .0[0].1 .0[0].0, "true");
        let printed = serde_yaml::to_string(&parsed).unwrap();
        assert!(
            printed.find("zeta/admins").unwrap() < printed.find("acme/ops").unwrap(),
            "{printed}"
        );
    }

    #[test]
    fn bounds_are_checked_with_the_key_named() {
        let too_many: RoleMappingsFile = Ordered(vec![(
            "github".into(),
            Ordered(vec![(
                "groups".into(),
                Ordered(vec![(
                    "acme".into(),
                    Grant {
                        permissions: (0..=MAX_GRANT_ENTRIES).map(|i| format!("p{i}")).collect(),
                        ..Default::default()
                    },
                )]),
            )]),
        )]);
        let (key, message) = validate(&too_many, &[]).unwrap_err();
        assert_eq!(key, "role_mappings.github.groups.acme");
        assert!(message.contains("257") && message.contains("256"), "{message}");

        let long_value: RoleMappingsFile =
            serde_yaml::from_str(&format!("oidc: {{groups: {{x: {{groups: [{}]}}}}}}", "g".repeat(257))).unwrap();
        assert!(validate(&long_value, &[]).unwrap_err().1.contains("1 to 256 bytes"));

        let rule = |condition: String| PolicyRule {
            condition,
            action: PolicyAction::Deny,
            reason: None,
            on: None,
        };
        let (key, _) = validate(
            &RoleMappingsFile::default(),
            &[rule("true".into()), rule("x".repeat(4097))],
        )
        .unwrap_err();
        assert_eq!(key, "policies[1].condition");
        let many: Vec<_> = (0..=MAX_RULES).map(|_| rule("true".into())).collect();
        assert_eq!(validate(&RoleMappingsFile::default(), &many).unwrap_err().0, "policies");
    }

    #[test]
    fn unknown_actions_and_stages_are_refused() {
        assert!(serde_yaml::from_str::<PolicyRule>("{condition: 'true', action: block}").is_err());
        assert!(serde_yaml::from_str::<PolicyRule>("{condition: 'true', action: deny, on: [logon]}").is_err());
        let rule: PolicyRule = serde_yaml::from_str("{condition: 'true', action: deny, on: [login]}").unwrap();
        assert_eq!(rule.on, Some(vec![PolicyStage::Login]));
    }
}
