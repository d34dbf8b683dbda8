//! The `tls` block of `mxgate.yml`: mxgate terminates TLS itself on `listen` (no nginx or
//! Traefik in front). Owns the block's schema, its validation into [`TlsSettings`], and reading
//! a PEM certificate chain and private key into a rustls [`CertifiedKey`] — used both when the
//! config is loaded (so `mxgate check` and start-up refuse bad files, naming the key) and when
//! the gateway reloads changed files.

use super::gateway_file::duration;
use super::settings::as_humantime;
use super::{relative_to, ConfigError};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::{de::Error as _, Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// PEM files larger than this are refused (a chain of a few certificates is a few KiB).
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// `tls:` as written in mxgate.yml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of the first certificate.
    pub key_file: String,
    /// Oldest TLS version accepted: `1.2` or `1.3`.
    #[serde(default, deserialize_with = "tls_version")]
    pub min_version: TlsVersion,
    /// A plain-HTTP listener that redirects to the https public URL (and answers health probes).
    #[serde(default)]
    pub redirect_listen: Option<String>,
    /// How often the certificate and key files are checked for changes.
    #[serde(default = "default_reload_interval", deserialize_with = "duration")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(5)
}

/// The shortest `tls.reload_interval` accepted.
const MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// `1.2` / `1.3`, written as a number or a string (`${VAR}` references resolve to strings).
fn tls_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TlsVersion, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    let text = match Raw::deserialize(deserializer)? {
        Raw::Number(n) => format!("{n:.1}"),
        Raw::Text(t) => t.trim().to_string(),
    };
    match text.trim_start_matches("TLSv").trim_start_matches("TLS") {
        "1.2" => Ok(TlsVersion::Tls12),
        "1.3" => Ok(TlsVersion::Tls13),
        _ => Err(D::Error::custom(format!(
            "`{text}` is not a TLS version mxgate accepts (1.2 or 1.3)"
        ))),
    }
}

/// The validated `tls` block.
#[derive(Debug, Clone, Serialize)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub min_version: TlsVersion,
    pub redirect_listen: Option<SocketAddr>,
    #[serde(serialize_with = "as_humantime")]
    pub reload_interval: Duration,
}

/// Why a certificate/key pair could not be used; names the `tls.*` key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairError {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for PairError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tls.{}: {}", self.key, self.message)
    }
}

impl std::error::Error for PairError {}

// === impl TlsSettings ===

impl TlsSettings {
    /// Validates the block: paths from the config file's folder, a usable certificate and key
    /// that belong together, a `redirect_listen` other than `listen`.
    pub(super) fn build(
        file: TlsFile,
        base_dir: &Path,
        listen: SocketAddr,
        gateway_path: &Path,
    ) -> Result<Self, ConfigError> {
        let settings = Self {
            cert_file: relative_to(base_dir, &file.cert_file),
            key_file: relative_to(base_dir, &file.key_file),
            min_version: file.min_version,
            redirect_listen: None,
            reload_interval: file.reload_interval,
        };
        settings
            .load_pair()
            .map_err(|e| ConfigError::invalid(gateway_path, format!("tls.{}", e.key), e.message))?;
        if file.reload_interval < MIN_RELOAD_INTERVAL {
            return Err(ConfigError::invalid(
                gateway_path,
                "tls.reload_interval",
                "must be at least 1s",
            ));
        }
        let redirect_listen = match file.redirect_listen.as_deref() {
            None => None,
            Some(value) => {
                let address = super::settings::parse_listen(value, true)
                    .map_err(|m| ConfigError::invalid(gateway_path, "tls.redirect_listen", m))?;
                if address == listen {
                    return Err(ConfigError::invalid(
                        gateway_path,
                        "tls.redirect_listen",
                        format!("`{value}` is `listen` itself; the redirect listener needs its own port"),
                    ));
                }
                Some(address)
            }
        };
        Ok(Self {
            redirect_listen,
            ..settings
        })
    }

    /// Reads the certificate chain and key files into the key rustls serves.
    pub fn load_pair(&self) -> Result<CertifiedKey, PairError> {
        load_certified_key(&self.cert_file, &self.key_file)
    }
}

/// The cryptography mxgate's TLS uses (rustls with *ring*, as Pingora's rustls build).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain and the PEM private key of its first certificate, and checks
/// that they belong together.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, PairError> {
    let cert_err = |message: String| PairError {
        key: "cert_file",
        message,
    };
    let key_err = |message: String| PairError {
        key: "key_file",
        message,
    };
    let cert_pem = read_pem(cert_file).map_err(cert_err)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("`{}` is not valid PEM: {e}", cert_file.display())))?;
    if chain.is_empty() {
        return Err(cert_err(format!(
            "`{}` holds no certificate (expected a PEM `-----BEGIN CERTIFICATE-----` block)",
            cert_file.display()
        )));
    }
    let end_entity = chain[0].clone();
    x509_parser::parse_x509_certificate(&end_entity).map_err(|e| {
        cert_err(format!(
            "the first certificate in `{}` cannot be parsed: {e}",
            cert_file.display()
        ))
    })?;

    let key_pem = read_pem(key_file).map_err(key_err)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => key_err(format!(
            "`{}` holds no private key (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)",
            key_file.display()
        )),
        other => key_err(format!("`{}` is not valid PEM: {other}", key_file.display())),
    })?;
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_err(format!("the key in `{}` is not usable: {e}", key_file.display())))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => Err(key_err(format!(
            "the key in `{}` does not belong to the first certificate in `{}`",
            key_file.display(),
            cert_file.display()
        ))),
        Err(e) => Err(cert_err(format!(
            "the first certificate in `{}` is not usable: {e}",
            cert_file.display()
        ))),
    }
}

/// The bytes of a PEM file, bounded in size.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let cannot_read = |e: std::io::Error| format!("cannot read `{}`: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(cannot_read)?;
    if !meta.is_file() {
        return Err(format!("`{}` is not a file", path.display()));
    }
    if meta.len() > MAX_PEM_FILE_BYTES {
        return Err(format!(
            "`{}` is larger than {} KiB; that is no PEM certificate or key",
            path.display(),
            MAX_PEM_FILE_BYTES / 1024
        ));
    }
    std::fs::read(path).map_err(cannot_read)
}

/// What a log line says about a certificate: subject, serial and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    pub subject: String,
    /// Hexadecimal, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_after: String,
    /// Not yet valid or already expired at the time of the summary.
    pub outside_validity: bool,
}

// === impl CertificateSummary ===

impl CertificateSummary {
    /// The summary of the first certificate of `key`'s chain (`None` if it cannot be parsed,
    /// which [`load_certified_key`] has already ruled out).
    pub fn of(key: &CertifiedKey) -> Option<Self> {
        let der = key.cert.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(Self {
            subject: cert.subject().to_string(),
            serial: format!("{:X}", cert.tbs_certificate.serial),
            not_after: cert.validity().not_after.to_string(),
            outside_validity: !cert.validity().is_valid(),
        })
    }
}

#[cfg(test)]
mod tests;
