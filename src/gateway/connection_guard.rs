//! Admits client connections and runs them: at most `limits.max_connections` open at once and
//! `limits.max_connections_per_address` from one address (trusted proxies, which carry many
//! clients, are not counted per address), counted over every listener that shares one
//! [`Admissions`]; with `tls`, the TLS handshake of an admitted connection
//! ([`TlsHandshake`], due within `limits.header_timeout`); each request header due within
//! `limits.header_timeout` ([`HeaderDeadline`]); idle keep-alive connections closed after
//! `limits.idle_timeout`. A connection over a cap is closed at once, before anything is read
//! (and before any TLS work).
//!
//! HTTP/1 runs in the connection loop Pingora's own `ServerApp` runs for an `HttpServerApp`,
//! with those bounds added. HTTP/2 (only by ALPN over TLS; mxgate serves no cleartext h2c) is
//! handed to Pingora's own HTTP/2 server once admitted; the deadline bounds its connection
//! preface, which ends like an HTTP/1 header, and the HTTP/2 limits of [`super::h2`] the rest.

use super::header_deadline::HeaderDeadline;
use super::tls_handshake::TlsHandshake;
use crate::config::limits::Limits;
use async_trait::async_trait;
use ipnet::IpNet;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Ssl, Stream, ALPN};
use pingora::server::ShutdownWatch;
use pingora_limits::inflight::{Guard as InflightGuard, Inflight};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The bounds the guard enforces (from `limits`).
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
    pub header_timeout: std::time::Duration,
    pub idle_timeout_secs: u64,
    /// Addresses whose connections are not counted per address (`trusted_proxies`).
    pub trusted: Vec<IpNet>,
}

// === impl ConnectionLimits ===

impl ConnectionLimits {
    pub fn new(limits: &Limits, trusted: Vec<IpNet>) -> Self {
        Self {
            max_connections: limits.max_connections,
            max_per_address: limits.max_connections_per_address,
            header_timeout: limits.header_timeout,
            idle_timeout_secs: limits.idle_timeout.as_secs().max(1),
            trusted,
        }
    }
}

/// The connection counts and caps, shared by every listener of the process.
pub struct Admissions {
    limits: ConnectionLimits,
    open: Arc<AtomicUsize>,
    per_address: Inflight,
    over_total: ThrottledLog,
    over_per_address: ThrottledLog,
}

/// Wraps an HTTP application with the connection bounds (and, for the TLS listener, the TLS
/// handshake).
pub struct ConnectionGuard<A> {
    app: Arc<A>,
    admissions: Arc<Admissions>,
    tls: Option<TlsHandshake>,
}

/// Counts events (refused connections, failed handshakes) and logs them at most once per
/// [`LOG_EVERY_SECS`]: a flood of connections must not become a flood of log lines.
#[derive(Default)]
pub struct ThrottledLog {
    count: AtomicU64,
    last_logged: AtomicU64,
}

const LOG_EVERY_SECS: u64 = 10;

// === impl ThrottledLog ===

impl ThrottledLog {
    /// Counts one event; when a log line is due, `log` writes it with the count since the last.
    pub fn record(&self, log: impl FnOnce(u64)) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let now = crate::support::now();
        let last = self.last_logged.load(Ordering::Relaxed);
        if now >= last + LOG_EVERY_SECS
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            log(self.count.swap(0, Ordering::Relaxed));
        }
    }
}

/// Holds one admitted connection's places; they are given back when it closes.
struct Admission {
    open: Arc<AtomicUsize>,
    per_address: Option<InflightGuard>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Admissions ===

impl Admissions {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            per_address: Inflight::new(),
            over_total: ThrottledLog::default(),
            over_per_address: ThrottledLog::default(),
        }
    }

    fn admit(&self, peer: Option<IpAddr>) -> Option<Admission> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let mut admission = Admission {
            open: self.open.clone(),
            per_address: None,
        };
        if open > self.limits.max_connections {
            let limit = self.limits.max_connections;
            self.over_total.record(|refused| {
                tracing::warn!(refused, limit, last_client = ?peer,
                    "connections refused: too many open connections (limits.max_connections)")
            });
            return None;
        }
        let Some(ip) = peer.filter(|ip| !self.limits.trusted.iter().any(|net| net.contains(ip))) else {
            return Some(admission);
        };
        let (guard, from_address) = self.per_address.incr(ip, 1);
        if from_address > self.limits.max_per_address as isize {
            let limit = self.limits.max_per_address;
            self.over_per_address.record(|refused| {
                tracing::warn!(refused, limit, last_client = %ip,
                    "connections refused: too many from one address (limits.max_connections_per_address)")
            });
            return None;
        }
        admission.per_address = Some(guard);
        Some(admission)
    }
}

// === impl ConnectionGuard ===

impl<A> ConnectionGuard<A> {
    /// `app` behind `admissions`; `tls`: the connections speak TLS.
    pub fn new(app: A, admissions: Arc<Admissions>, tls: Option<TlsHandshake>) -> Self {
        Self {
            app: Arc::new(app),
            admissions,
            tls,
        }
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|a| a.ip())
}

#[async_trait]
impl<A> ServerApp for ConnectionGuard<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let limits = &self.admissions.limits;
        let peer = peer_ip(&stream);
        let _admission = self.admissions.admit(peer)?;
        let stream = match &self.tls {
            Some(tls) => tls.handshake(stream, peer).await?,
            None => stream,
        };
        let deadline = HeaderDeadline::new(stream, limits.header_timeout);
        if deadline.selected_alpn_proto() == Some(ALPN::H2) {
            // Pingora's HTTP/2 server (the `ServerApp` every `HttpServerApp` has), holding the
            // admission until the connection ends.
            ServerApp::process_new(&self.app, Box::new(deadline), shutdown).await;
            return None;
        }
        let next_request = deadline.next_request_handle();
        let mut session = ServerSession::new_http1(Box::new(deadline));
        loop {
            if *shutdown.borrow() {
                session.set_keepalive(None);
            } else {
                session.set_keepalive(Some(limits.idle_timeout_secs));
            }
            let reused = self.app.process_new_http(session, shutdown).await?;
            let (stream, persistent) = reused.consume();
            next_request.expect();
            session = ServerSession::new_http1(stream);
            if let Some(persistent) = persistent {
                persistent.apply_to_session(&mut session);
            }
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }
}
