//! What a reload (SIGHUP) may change in a running gateway, and what waits for a restart.
//!
//! Reloaded: the identity providers and their client ids and secrets, the static clients,
//! `required_scopes`, `role_mappings` and `policies`, dynamic client and client metadata document
//! settings, how long consent is remembered, and (in their own modules) the TLS certificate files. Everything else — where
//! mxgate listens, the upstream, the public URL, the store and its key, token and assertion
//! lifetimes, limits and rate limits, proxy trust, TLS settings other than the files — is what
//! running connections, stored records and issued tokens were made with: a reload keeps the
//! running values and names each changed one as taking effect at the next restart.

use super::mxcp_user::ProviderKind;
use super::Settings;
use serde_json::Value;

/// The settings a reload applies, and the top-level keys that changed but wait for a restart.
#[derive(Debug)]
pub struct Reload {
    pub settings: Settings,
    pub needs_restart: Vec<String>,
}

/// The running settings with the reloadable parts of `loaded` applied.
pub fn apply(running: &Settings, loaded: Settings) -> Reload {
    let mut settings = running.clone();
    let mut needs_restart = Vec::new();
    let running_has_auth = running.auth.provider.kind() != ProviderKind::None;
    let loaded_has_auth = loaded.auth.provider.kind() != ProviderKind::None;
    if running_has_auth == loaded_has_auth {
        settings.auth = loaded.auth.clone();
        // The store's records are sealed with this key: it changes only with the store.
        settings.auth.encryption_key = running.auth.encryption_key.clone();
        settings.dynamic_clients = loaded.dynamic_clients.clone();
        settings.client_documents = loaded.client_documents.clone();
        settings.consent_memory = loaded.consent_memory;
        settings.role_mappings = loaded.role_mappings.clone();
        settings.policies = loaded.policies.clone();
    } else {
        needs_restart.push("auth.provider (turning authentication on or off)".to_string());
    }
    if expose(&running.auth.encryption_key) != expose(&loaded.auth.encryption_key) {
        needs_restart.push("persistence.auth_encryption_key".to_string());
    }
    needs_restart.extend(changed_keys(&settings, &loaded));
    needs_restart.sort();
    needs_restart.dedup();
    Reload {
        settings,
        needs_restart,
    }
}

fn expose(secret: &Option<super::Secret>) -> Option<&str> {
    secret.as_ref().map(|s| s.expose())
}

/// Top-level settings whose effective values differ (secrets compare redacted, so a changed
/// secret outside `auth` is not named; `auth` is reloaded whole).
fn changed_keys(applied: &Settings, loaded: &Settings) -> Vec<String> {
    let (Ok(Value::Object(applied)), Ok(Value::Object(loaded))) =
        (serde_json::to_value(applied), serde_json::to_value(loaded))
    else {
        return Vec::new();
    };
    loaded
        .iter()
        .filter(|(key, value)| key.as_str() != "auth" && applied.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_from_texts;

    const USER: &str = "mxcp: 1\nprojects:\n  p:\n    profiles:\n      dev:\n        auth:\n          provider: github\n          github:\n            client_id: id\n            client_secret: SECRET\n            callback_path: /callback\n            auth_url: https://github.com/login/oauth/authorize\n            token_url: https://github.com/login/oauth/access_token\n          authorization:\n            required_scopes: [REQUIRED]\n";

    fn settings(gateway: &str, user: &str) -> Settings {
        load_from_texts(gateway, user).unwrap()
    }

    fn gateway(listen: &str) -> String {
        format!("project: p\nprofile: dev\nlisten: {listen}\nupstream: http://127.0.0.1:8001\npublic_url: http://127.0.0.1:8000\n")
    }

    #[test]
    fn provider_secrets_and_scopes_are_applied_and_nothing_else_is_named() {
        let running = settings(&gateway("127.0.0.1:8000"), &USER.replace("REQUIRED", "mxcp:access"));
        let loaded = settings(
            &gateway("127.0.0.1:8000"),
            &USER.replace("SECRET", "rotated").replace("REQUIRED", "mxcp:admin"),
        );
        let reload = apply(&running, loaded);
        assert_eq!(reload.settings.auth.required_scopes, vec!["mxcp:admin"]);
        let crate::config::ProviderSettings::Github(github) = &reload.settings.auth.provider else {
            panic!("github expected");
        };
        assert_eq!(github.client_secret.expose(), "rotated");
        assert!(reload.needs_restart.is_empty(), "{:?}", reload.needs_restart);
    }

    #[test]
    fn a_changed_listen_address_is_kept_and_named() {
        let running = settings(&gateway("127.0.0.1:8000"), &USER.replace("REQUIRED", "a"));
        let loaded = settings(&gateway("127.0.0.1:9000"), &USER.replace("REQUIRED", "a"));
        let reload = apply(&running, loaded);
        assert_eq!(reload.settings.listen, running.listen);
        assert_eq!(reload.needs_restart, vec!["listen"]);
    }

    #[test]
    fn turning_authentication_off_waits_for_a_restart() {
        let running = settings(&gateway("127.0.0.1:8000"), &USER.replace("REQUIRED", "a"));
        let off = USER
            .replace("provider: github", "provider: none")
            .replace("REQUIRED", "a");
        let reload = apply(&running, settings(&gateway("127.0.0.1:8000"), &off));
        assert_eq!(reload.settings.auth.provider.kind(), ProviderKind::Github);
        assert!(reload.needs_restart.iter().any(|k| k.starts_with("auth.provider")));
    }
}
