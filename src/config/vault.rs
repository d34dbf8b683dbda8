//! `vault://path#key` references: HashiCorp Vault, configured by the MXCP user config's `vault`
//! block (`enabled`, `address`, `token_env` — default `VAULT_TOKEN`), read once at start-up.
//!
//! The path is read the way MXCP 0.12.3 (hvac, default mount `secret`) reads it, and then the way
//! people usually mean it, first hit wins: KV v2 `secret/data/<path>`, KV v2
//! `<first segment>/data/<rest>`, KV v1 `secret/<path>`, KV v1 `<path>`. So `vault://secret/oauth#k`
//! finds the key whether the secret lives at `secret/oauth` on the `secret` mount or at `oauth`.

use super::mxcp_user::VaultConfig;
use super::references::SecretBackend;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

const DEFAULT_TOKEN_ENV: &str = "VAULT_TOKEN";
const DEFAULT_MOUNT: &str = "secret";

pub struct VaultBackend {
    address: String,
    token: String,
    http: reqwest::blocking::Client,
    /// Secrets already read, by path (one request however many keys a config takes from it).
    cache: RefCell<HashMap<String, serde_json::Map<String, Value>>>,
}

// === impl VaultBackend ===

impl VaultBackend {
    /// The backend for an enabled `vault` block; `Err` says what is missing.
    pub fn from_config(config: &VaultConfig) -> Result<Self, String> {
        let address = config
            .address
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or("vault.address is required when vault is enabled")?
            .trim_end_matches('/')
            .to_string();
        let token_env = config.token_env.as_deref().unwrap_or(DEFAULT_TOKEN_ENV);
        let token = std::env::var(token_env)
            .map_err(|_| format!("the Vault token environment variable {token_env} is not set"))?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the Vault HTTP client: {e}"))?;
        Ok(Self {
            address,
            token,
            http,
            cache: RefCell::new(HashMap::new()),
        })
    }

    fn candidates(path: &str) -> Vec<(String, bool)> {
        let mut urls = vec![(format!("{DEFAULT_MOUNT}/data/{path}"), true)];
        if let Some((mount, rest)) = path.split_once('/') {
            urls.push((format!("{mount}/data/{rest}"), true));
        }
        urls.push((format!("{DEFAULT_MOUNT}/{path}"), false));
        if path.contains('/') {
            urls.push((path.to_string(), false));
        }
        urls
    }

    fn read(&self, path: &str) -> Result<serde_json::Map<String, Value>, String> {
        if let Some(found) = self.cache.borrow().get(path) {
            return Ok(found.clone());
        }
        for (api_path, kv2) in Self::candidates(path) {
            let url = format!("{}/v1/{api_path}", self.address);
            let response = self
                .http
                .get(&url)
                .header("X-Vault-Token", &self.token)
                .send()
                .map_err(|e| format!("cannot reach Vault at {}: {e}", self.address))?;
            match response.status().as_u16() {
                200 => {}
                404 => continue,
                403 => {
                    return Err(format!(
                        "Vault refused to read `{path}` (permission denied; check the token)"
                    ))
                }
                status => return Err(format!("Vault answered {status} reading `{path}`")),
            }
            let body: Value = response
                .json()
                .map_err(|e| format!("Vault's answer for `{path}` is not JSON: {e}"))?;
            let data = if kv2 { &body["data"]["data"] } else { &body["data"] };
            if let Some(map) = data.as_object() {
                self.cache.borrow_mut().insert(path.to_string(), map.clone());
                return Ok(map.clone());
            }
        }
        Err(format!("no Vault secret at `{path}` (tried KV v2 and v1)"))
    }
}

impl SecretBackend for VaultBackend {
    fn vault(&self, path: &str, key: &str) -> Result<String, String> {
        let secret = self.read(path)?;
        match secret.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Ok(other.to_string()),
            None => Err(format!("key `{key}` not found in the Vault secret at `{path}`")),
        }
    }

    fn onepassword(&self, reference: &str) -> Result<String, String> {
        super::references::NoSecretBackend.onepassword(reference)
    }
}
