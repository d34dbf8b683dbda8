//! `mxgate keys list|rotate`: through the running mxgate's admin socket when one answers there,
//! else on the key ring where it is kept (the data dir, or the shared store — whose running
//! replicas hear of a rotation on the replica channel, or re-read the ring within 30 s).

use super::client::{self, AdminClientError};
use super::keys::{KEYS_PATH, ROTATE_PATH};
use super::socket_path;
use crate::cli::KeysAction;
use crate::config::gateway_file::AssertionAlgorithm;
use crate::config::{self, Settings, StoreSettings};
use crate::identity::signing_keys::{KeySummary, SigningKeys};
use anyhow::Context as _;
use std::time::{Duration, UNIX_EPOCH};

pub fn run(action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::List { config, json } => {
            let settings = config::load(&config)?;
            let keys: Vec<KeySummary> = match client::request(&socket_path(&settings.data_dir), "GET", KEYS_PATH) {
                Ok(answer) => serde_json::from_value(answer["keys"].clone()).context("the admin socket's answer")?,
                Err(AdminClientError::Connect { .. }) => offline(&settings, |keys| async move { keys.list().await })?,
                Err(e) => return Err(e.into()),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_table(&keys);
            }
            Ok(())
        }
        KeysAction::Rotate { config, now } => {
            let settings = config::load(&config)?;
            if settings.assertion.algorithm == AssertionAlgorithm::HS256 {
                anyhow::bail!(
                    "the assertion algorithm is HS256: there is no key pair to rotate. Rotate the shared \
                     secret instead: change `assertion.secret` in mxgate's config and MXGATE_ASSERTION_SECRET \
                     of the core together, then restart both"
                );
            }
            let path = format!("{ROTATE_PATH}?now={now}");
            let (kid, activate_at) = match client::request(&socket_path(&settings.data_dir), "POST", &path) {
                Ok(answer) => (
                    answer["kid"].as_str().unwrap_or_default().to_string(),
                    answer["activate_at"].as_u64().unwrap_or_default(),
                ),
                Err(AdminClientError::Connect { .. }) => {
                    eprintln!("no mxgate answers on the admin socket: rotating the key ring where it is kept");
                    let added = offline(&settings, |keys| async move { keys.rotate(now).await })?;
                    (added.kid, added.activate_at)
                }
                Err(e) => return Err(e.into()),
            };
            println!("new signing key {kid}: published now, signs from {}", when(activate_at));
            Ok(())
        }
    }
}

/// Runs `f` on the signing keys read where they are kept (no gateway running).
fn offline<T, F, Fut>(settings: &Settings, f: F) -> anyhow::Result<T>
where
    F: FnOnce(std::sync::Arc<SigningKeys>) -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::identity::signing_key::KeyError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    runtime.block_on(async {
        // The embedded store's ring is a file in the data dir; only a shared store is opened.
        let store = match settings.store {
            StoreSettings::Redis(_) => Some(crate::gateway::open_store(settings)?),
            StoreSettings::Redb { .. } => None,
        };
        let keys = SigningKeys::load(&settings.assertion, &settings.data_dir, store.as_ref())
            .await
            .context("loading the signing keys")?;
        Ok(f(std::sync::Arc::new(keys)).await?)
    })
}

fn print_table(keys: &[KeySummary]) {
    println!(
        "{:<45} {:<9} {:<21} {:<21} {:<21}",
        "KID", "STATE", "CREATED", "SIGNS FROM", "RETIRES AT"
    );
    for k in keys {
        let state = serde_json::to_value(k.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "{:<45} {:<9} {:<21} {:<21} {:<21}",
            k.kid,
            state,
            when(k.created_at),
            when(k.activate_at),
            k.retire_at.map(when).unwrap_or_else(|| "-".into())
        );
    }
}

/// A Unix time as RFC 3339 (UTC), `-` for 0.
fn when(unix: u64) -> String {
    if unix == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}
