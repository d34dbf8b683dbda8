//! The TLS side of the client listener: the rustls server configuration (the oldest version
//! `tls.min_version`, ALPN offering `h2` and `http/1.1`, the certificate from
//! [`ReloadingCertificate`]) and the handshake of an admitted connection, due within
//! `limits.header_timeout`.
//!
//! The listener itself is plain TCP: the handshake runs here, after the connection guard has
//! admitted the connection, so the connection caps hold for connections that never finish a
//! handshake too (Pingora's own TLS listener would shake hands first, for up to 60 s each).

use super::connection_guard::ThrottledLog;
use super::tls_certificate::ReloadingCertificate;
use crate::config::tls::{crypto_provider, TlsSettings, TlsVersion};
use anyhow::Context;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::Stream;
use rustls::version::{TLS12, TLS13};
use rustls::{ServerConfig, SupportedProtocolVersion};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// The protocols offered by ALPN, preferred first.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

pub struct TlsHandshake {
    acceptor: Acceptor,
    timeout: Duration,
    failures: ThrottledLog,
}

// === impl TlsHandshake ===

impl TlsHandshake {
    pub fn new(
        settings: &TlsSettings,
        certificate: Arc<ReloadingCertificate>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let versions: &[&'static SupportedProtocolVersion] = match settings.min_version {
            TlsVersion::Tls12 => &[&TLS13, &TLS12],
            TlsVersion::Tls13 => &[&TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(versions)
            .context("setting up TLS")?
            .with_no_client_auth()
            .with_cert_resolver(certificate);
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            acceptor: Acceptor::from_server_config(Arc::new(config)),
            timeout,
            failures: ThrottledLog::default(),
        })
    }

    /// The connection after a completed handshake; `None` (the connection is closed) when the
    /// handshake fails or takes too long.
    pub async fn handshake(&self, stream: Stream, peer: Option<IpAddr>) -> Option<Stream> {
        let tcp = match stream.into_any().downcast::<TcpStream>() {
            Ok(tcp) => *tcp,
            Err(_) => {
                tracing::error!("TLS listener: the accepted connection is not a TCP stream; closed");
                return None;
            }
        };
        let failure = match tokio::time::timeout(self.timeout, self.acceptor.tls_handshake(tcp)).await {
            Ok(Ok(tls)) => return Some(Box::new(tls)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the TLS handshake did not finish in time (limits.header_timeout)".to_string(),
        };
        tracing::debug!(client = ?peer, error = %failure, "TLS handshake failed");
        self.failures.record(
            |failed| tracing::info!(failed, last_client = ?peer, last_error = %failure, "TLS handshakes failed"),
        );
        None
    }
}
