//! `config_loader`: `mxgate.yml` and the MXCP user config, from their text to effective settings
//! (`mxgate::config::load_from_texts`, the path `mxgate serve` and `mxgate check` take).
//!
//! Input: the mxgate.yml text, a NUL byte, the MXCP user config text (no NUL: an empty MXCP
//! config). Invariant: loading never panics — a bad config is an error — and accepted settings
//! can be printed as `mxgate check` prints them. Nothing outside the text is read: `file://` and
//! `vault://` references are refused and host names are not looked up (`load_from_texts`); the
//! `${ENV}` variables of the seed configs are set to fixed values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Once;

/// The variables the seed configs (demo/, tests/config_parity/) reference.
const ENV: &[(&str, &str)] = &[
    ("DEMO_OIDC_CLIENT_SECRET", "demo-secret"),
    ("GITHUB_CLIENT_ID", "github-client-id"),
    ("GITHUB_CLIENT_SECRET", "github-client-secret"),
    ("ATLASSIAN_CLIENT_ID", "atlassian-client-id"),
    ("ATLASSIAN_CLIENT_SECRET", "atlassian-client-secret"),
    ("SALESFORCE_CLIENT_ID", "salesforce-client-id"),
    ("SALESFORCE_CLIENT_SECRET", "salesforce-client-secret"),
    ("GOOGLE_CLIENT_ID", "google-client-id"),
    ("GOOGLE_CLIENT_SECRET", "google-client-secret"),
    ("KEYCLOAK_CLIENT_ID", "keycloak-client-id"),
    ("KEYCLOAK_CLIENT_SECRET", "keycloak-client-secret"),
    ("CLIENT_SECRET", "static-client-secret"),
    ("VAULT_ADDR", "http://127.0.0.1:1"),
    ("VAULT_TOKEN", "vault-token"),
    ("PORT", "8123"),
];

static SET_ENV: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    SET_ENV.call_once(|| {
        for (name, value) in ENV {
            std::env::set_var(name, value);
        }
    });
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (gateway, mxcp) = text.split_once('\0').unwrap_or((text, ""));
    if let Ok(settings) = mxgate::config::load_from_texts(gateway, mxcp) {
        serde_yaml::to_string(&settings).expect("accepted settings print");
        let _ = settings.resource_url();
    }
});
