//! Reloading the configuration on SIGHUP without dropping a session or a connection: both
//! files are read again (with their `${ENV}`, `file://` and `vault://` secrets), the reloadable
//! settings (`config::reload`) build a new set of authentication parts — providers and their
//! secrets, static clients, `required_scopes` — and the gateway swaps to it at once; requests
//! already admitted finish with the parts they started with. The token cache, the assertion
//! signer, the MCP session registry and the rate limiter's counts carry over. A configuration
//! that does not load or build is refused: the running one stays, with an error line and an
//! audit record saying why.

use super::admit::AuthParts;
use crate::audit::{AuditEvent, AuditRecord};
use crate::config::{self, Settings};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::{Arc, Mutex};
use tokio::signal::unix::{signal, SignalKind};

/// The authentication parts requests use now.
pub type LiveAuth = Arc<ArcSwap<AuthParts>>;

/// Builds the authentication parts for some settings, keeping what must survive a reload.
pub trait BuildAuth: Send + Sync {
    fn build(&self, settings: Arc<Settings>, running: &AuthParts) -> anyhow::Result<AuthParts>;
}

/// What one reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Reloaded { needs_restart: Vec<String> },
    Refused(String),
}

pub struct ConfigReload {
    live: LiveAuth,
    /// The settings the live parts were built from (the restart-only values of the first start).
    running: Mutex<Arc<Settings>>,
    builder: Box<dyn BuildAuth>,
}

// === impl ConfigReload ===

impl ConfigReload {
    pub fn new(live: LiveAuth, running: Arc<Settings>, builder: Box<dyn BuildAuth>) -> Self {
        Self {
            live,
            running: Mutex::new(running),
            builder,
        }
    }

    /// Reads the configuration again and swaps to it, or keeps the running one.
    pub fn reload(&self) -> Outcome {
        let running = match self.running.lock() {
            Ok(running) => running.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let outcome = match self.load_and_build(&running) {
            Ok((settings, parts, needs_restart)) => {
                self.live.store(Arc::new(parts));
                match self.running.lock() {
                    Ok(mut slot) => *slot = settings,
                    Err(poisoned) => *poisoned.into_inner() = settings,
                }
                Outcome::Reloaded { needs_restart }
            }
            Err(e) => Outcome::Refused(format!("{e:#}")),
        };
        report(&outcome, &running);
        outcome
    }

    #[allow(clippy::type_complexity)]
    fn load_and_build(&self, running: &Settings) -> anyhow::Result<(Arc<Settings>, AuthParts, Vec<String>)> {
        let loaded = config::load(&running.config_file)?;
        let reload = config::reload::apply(running, loaded);
        let settings = Arc::new(reload.settings);
        let parts = self.builder.build(settings.clone(), &self.live.load())?;
        Ok((settings, parts, reload.needs_restart))
    }
}

fn report(outcome: &Outcome, running: &Settings) {
    let file = running.config_file.display();
    match outcome {
        Outcome::Reloaded { needs_restart } => {
            if needs_restart.is_empty() {
                tracing::info!(config = %file, "configuration reloaded");
            } else {
                tracing::warn!(
                    config = %file,
                    needs_restart = %needs_restart.join(", "),
                    "configuration reloaded; these changed settings take effect at the next restart"
                );
            }
            let mut record = AuditRecord::new(AuditEvent::ConfigReloaded);
            if !needs_restart.is_empty() {
                record = record.reason(format!("waiting for a restart: {}", needs_restart.join(", ")));
            }
            crate::audit::record(record);
        }
        Outcome::Refused(reason) => {
            tracing::error!(config = %file, error = %reason, "configuration not reloaded; the running one stays");
            crate::audit::record(AuditRecord::new(AuditEvent::ConfigRejected).reason(reason.clone()));
        }
    }
}

#[async_trait]
impl BackgroundService for ConfigReload {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the configuration will not be reloaded");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = hangups.recv() => {
                    // Loading blocks (files, and Vault through a blocking HTTP client that must
                    // not run inside a runtime): on a thread of its own, while this service waits.
                    let reloaded = std::thread::scope(|scope| scope.spawn(|| self.reload()).join());
                    if reloaded.is_err() {
                        tracing::error!("the configuration reload failed unexpectedly; the running one stays");
                    }
                }
            }
        }
    }
}
