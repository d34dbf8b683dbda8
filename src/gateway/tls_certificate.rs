//! The certificate the TLS listener serves, and its reloading without a restart: every
//! `tls.reload_interval` (and on SIGHUP) the certificate and key files are looked at, and when
//! either changed (modification time, size or inode — a Kubernetes secret update swaps a
//! symlink) the pair is read again and, if usable, served to every new handshake. Connections
//! already open keep the session they have. A new pair that cannot be used (half written, a key
//! that does not match, no certificate) is logged as an error and the one in use stays.

use crate::config::tls::{load_certified_key, CertificateSummary, TlsSettings};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The certificate handed to each TLS handshake; swapped whole when the files change.
pub struct ReloadingCertificate {
    current: ArcSwap<CertifiedKey>,
}

impl std::fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCertificate").finish_non_exhaustive()
    }
}

// === impl ReloadingCertificate ===

impl ReloadingCertificate {
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(key),
        }
    }

    /// Serves `key` from the next handshake on; `false` when it is the certificate in use.
    fn replace(&self, key: CertifiedKey) -> bool {
        if self.current.load().cert == key.cert {
            return false;
        }
        self.current.store(Arc::new(key));
        true
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What the file system says about a file's current content; a change means a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    device: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        device: meta.dev(),
        inode: meta.ino(),
    })
}

/// The background task that watches the files and reloads the certificate.
pub struct CertificateReloader {
    cert_file: PathBuf,
    key_file: PathBuf,
    every: Duration,
    certificate: Arc<ReloadingCertificate>,
}

// === impl CertificateReloader ===

impl CertificateReloader {
    /// Loads the pair once (an error stops start-up) and sets up its reloading.
    pub fn load(settings: &TlsSettings) -> anyhow::Result<(Arc<ReloadingCertificate>, Self)> {
        let key = settings.load_pair()?;
        log_loaded(&key, "TLS certificate loaded");
        let certificate = Arc::new(ReloadingCertificate::new(key));
        let reloader = Self {
            cert_file: settings.cert_file.clone(),
            key_file: settings.key_file.clone(),
            every: settings.reload_interval,
            certificate: certificate.clone(),
        };
        Ok((certificate, reloader))
    }

    fn stamps(&self) -> (Option<FileStamp>, Option<FileStamp>) {
        (stamp(&self.cert_file), stamp(&self.key_file))
    }

    /// Reads the files again and serves the pair if it is usable and new.
    fn reload(&self, cause: &'static str) {
        match load_certified_key(&self.cert_file, &self.key_file) {
            Ok(key) => {
                let summary = CertificateSummary::of(&key);
                if self.certificate.replace(key) {
                    log_summary(summary, "TLS certificate reloaded");
                } else {
                    tracing::debug!(cause, "TLS certificate files touched; the certificate is the same");
                }
            }
            Err(e) => tracing::error!(
                cause,
                error = %e,
                "TLS certificate not reloaded; the certificate in use stays"
            ),
        }
    }
}

#[async_trait]
impl BackgroundService for CertificateReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Stamps are taken before each read: a file changing during the read is read again.
        let mut seen = self.stamps();
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be watched; the certificate reloads on file changes only");
                None
            }
        };
        let mut interval = tokio::time::interval(self.every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = interval.tick() => {
                    let now = self.stamps();
                    if now != seen {
                        seen = now;
                        self.reload("the files changed");
                    }
                }
                Some(()) = next_hangup(&mut hangup) => {
                    seen = self.stamps();
                    self.reload("SIGHUP");
                }
            }
        }
    }
}

async fn next_hangup(hangup: &mut Option<Signal>) -> Option<()> {
    match hangup {
        Some(signal) => signal.recv().await,
        None => std::future::pending().await,
    }
}

fn log_loaded(key: &CertifiedKey, message: &'static str) {
    log_summary(CertificateSummary::of(key), message);
}

fn log_summary(summary: Option<CertificateSummary>, message: &'static str) {
    let Some(summary) = summary else {
        tracing::info!("{message}");
        return;
    };
    tracing::info!(
        subject = %summary.subject,
        serial = %summary.serial,
        not_after = %summary.not_after,
        "{message}"
    );
    if summary.outside_validity {
        tracing::warn!(
            serial = %summary.serial,
            not_after = %summary.not_after,
            "the TLS certificate is expired or not yet valid; clients will refuse it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> CertifiedKey {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        load_certified_key(&cert, &key).unwrap()
    }

    #[test]
    fn a_new_certificate_replaces_the_one_in_use_and_the_same_one_does_not() {
        let first = pair();
        let first_der = first.cert[0].clone();
        let certificate = ReloadingCertificate::new(first);
        let second = pair();
        let second_der = second.cert[0].clone();
        assert!(certificate.replace(second));
        assert_eq!(certificate.current.load().cert[0], second_der);
        let same = CertifiedKey::new(vec![second_der.clone()], certificate.current.load().key.clone());
        assert!(!certificate.replace(same));
        assert_ne!(first_der, second_der);
    }
}
