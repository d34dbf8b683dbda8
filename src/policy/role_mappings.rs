//! `role_mappings`: the `role`, `permissions` and `groups` a user gets from the claims of their
//! provider, so that the core's CEL (`user.role != 'admin'`) and mxgate's own policies see them.
//!
//! Keyed by the provider's name as the core sees it, then like MXCP's `claim_mappings`: a claim
//! path, then a claim value, then what that value grants. Claims resolve exactly as
//! `claim_mappings` do ([`claim_values_at`]: exact key, else dot path; each item of a list; each
//! word of a space-separated string; booleans as `true`/`false`). The profile read is the one
//! `claim_mappings` read with `groups` set to the provider's derived groups (GitHub's
//! `org` and `org/team`, Keycloak's groups and `role:<realm role>`).
//!
//! * `role`: the first mapping in file order (claim paths in order, values in order within a
//!   path) that matches and grants a role. It replaces the provider's (none sets one today).
//! * `permissions` and `groups`: the provider's, then every match's, without repeats.
//! * Bounds: at most [`MAX_GRANT_ENTRIES`] of each, each at most [`MAX_GRANT_VALUE`] bytes;
//!   what the provider sent beyond that is cut with a warning (the configuration cannot exceed
//!   them, `config::access_policy` refuses it).

use crate::config::access_policy::{RoleMappingsFile, MAX_GRANT_ENTRIES, MAX_GRANT_VALUE};
use crate::identity::capabilities::claim_values_at;
use crate::identity::user::UserIdentity;
use serde_json::Value;

/// The configured role mappings of every provider.
#[derive(Debug, Default)]
pub struct RoleMappings(RoleMappingsFile);

// === impl RoleMappings ===

impl RoleMappings {
    pub fn new(file: RoleMappingsFile) -> Self {
        Self(file)
    }

    /// Gives `user` (just logged in with `profile`) what their provider's mappings grant, and
    /// bounds their permissions and groups.
    pub fn apply(&self, user: &mut UserIdentity, profile: &Value) {
        let mappings = self.0 .0.iter().find(|(provider, _)| *provider == user.provider);
        if let Some((_, claims)) = mappings {
            let mut profile = profile.clone();
            if let Value::Object(map) = &mut profile {
                map.insert("groups".into(), Value::from(user.groups.clone()));
            }
            let mut role = None;
            for (path, values) in &claims.0 {
                let present = claim_values_at(&profile, path);
                for (value, grant) in values.0.iter().filter(|(v, _)| present.contains(v)) {
                    if role.is_none() {
                        role.clone_from(&grant.role);
                    }
                    user.permissions.extend(grant.permissions.iter().cloned());
                    user.groups.extend(grant.groups.iter().cloned());
                    tracing::debug!(user = %user.key(), claim = %path, %value, "role mapping matched");
                }
            }
            if role.is_some() {
                user.role = role;
            }
        }
        let key = user.key();
        bound(&mut user.permissions, "permissions", &key);
        bound(&mut user.groups, "groups", &key);
        if user.role.as_ref().is_some_and(|r| r.len() > MAX_GRANT_VALUE) {
            tracing::warn!(user = %key, "the provider's role is longer than {MAX_GRANT_VALUE} bytes; left out");
            user.role = None;
        }
    }
}

/// Removes repeats, values longer than [`MAX_GRANT_VALUE`] and entries past
/// [`MAX_GRANT_ENTRIES`], keeping the first of each in order; warns when it cut anything.
fn bound(values: &mut Vec<String>, what: &str, user: &str) {
    let before = values.len();
    let mut kept: Vec<String> = Vec::with_capacity(before.min(MAX_GRANT_ENTRIES));
    let mut too_long = 0;
    for value in values.drain(..) {
        if value.len() > MAX_GRANT_VALUE {
            too_long += 1;
        } else if kept.len() < MAX_GRANT_ENTRIES && !kept.contains(&value) {
            kept.push(value);
        }
    }
    let dropped = before - kept.len();
    *values = kept;
    let repeats_only = too_long == 0 && values.len() < MAX_GRANT_ENTRIES;
    if dropped > 0 && !repeats_only {
        tracing::warn!(
            user,
            too_long,
            kept = values.len(),
            "{what} cut to at most {MAX_GRANT_ENTRIES} values of at most {MAX_GRANT_VALUE} bytes"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mappings(yaml: &str) -> RoleMappings {
        RoleMappings::new(serde_yaml::from_str(yaml).unwrap())
    }

    fn user(provider: &str, groups: &[&str]) -> UserIdentity {
        UserIdentity {
            provider: provider.into(),
            user_id: "u1".into(),
            username: "u1".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn first_role_in_file_order_wins_and_lists_are_a_union() {
        let m = mappings(
            "github:\n  groups:\n    acme/ops: {permissions: [deploy]}\n    acme/admins: {role: admin, permissions: [deploy, reports:read]}\n    acme: {role: member, groups: [staff]}\n",
        );
        let mut alice = user("github", &["acme", "acme/admins", "acme/ops"]);
        alice.permissions = vec!["from-idp".into()];
        m.apply(&mut alice, &json!({"login": "alice"}));
        assert_eq!(
            alice.role.as_deref(),
            Some("admin"),
            "acme/admins comes first in the file"
        );
        assert_eq!(alice.permissions, vec!["from-idp", "deploy", "reports:read"]);
        assert_eq!(alice.groups, vec!["acme", "acme/admins", "acme/ops", "staff"]);

        let mut bob = user("github", &["other"]);
        m.apply(&mut bob, &json!({}));
        assert_eq!(bob.role, None);
        assert!(bob.permissions.is_empty());
    }

    #[test]
    fn claims_resolve_like_claim_mappings_and_only_for_their_provider() {
        let m = mappings(
            "keycloak:\n  realm_access.roles: {admin: {role: admin}}\n\
             oidc:\n  'https://corp.example/tier': {gold: {permissions: [fast]}}\n  scope: {write: {permissions: [tools.write]}}\n  email_verified: {true: {groups: [verified]}}\n",
        );
        let mut kc = user("keycloak", &[]);
        m.apply(&mut kc, &json!({"realm_access": {"roles": ["mcp-user", "admin"]}}));
        assert_eq!(kc.role.as_deref(), Some("admin"));

        let mut oidc = user("oidc", &[]);
        let profile = json!({"https://corp.example/tier": "gold", "scope": "read write", "email_verified": true,
                             "realm_access": {"roles": ["admin"]}});
        m.apply(&mut oidc, &profile);
        assert_eq!(oidc.role, None, "keycloak's mappings do not apply to oidc users");
        assert_eq!(oidc.permissions, vec!["fast", "tools.write"]);
        assert_eq!(oidc.groups, vec!["verified"]);
    }

    #[test]
    fn derived_groups_are_what_a_groups_mapping_reads() {
        // Keycloak's derived groups include `role:<realm role>`, which the raw claim does not.
        let m = mappings("keycloak:\n  groups: {'role:admin': {role: admin}}\n");
        let mut kc = user("keycloak", &["/engineering", "role:admin"]);
        m.apply(&mut kc, &json!({"groups": ["/engineering"]}));
        assert_eq!(kc.role.as_deref(), Some("admin"));
    }

    #[test]
    fn what_the_provider_sends_beyond_the_bounds_is_cut() {
        let mut u = user("github", &[]);
        u.groups = (0..300).map(|i| format!("g{i}")).collect();
        u.groups.insert(0, "x".repeat(MAX_GRANT_VALUE + 1));
        u.groups.push("g1".into());
        u.permissions = vec!["p".into(), "p".into()];
        RoleMappings::default().apply(&mut u, &json!({}));
        assert_eq!(u.groups.len(), MAX_GRANT_ENTRIES);
        assert_eq!(u.groups[0], "g0", "the overlong value is dropped, not truncated");
        assert_eq!(u.groups[255], "g255");
        assert_eq!(u.permissions, vec!["p"]);
    }
}
