//! Admits client connections and runs them: at most `limits.max_connections` open at once and
//! `limits.max_connections_per_address` from one address (trusted proxies, which carry many
//! clients, are not counted per address); each request header due within
//! `limits.header_timeout` ([`HeaderDeadline`]); idle keep-alive connections closed after
//! `limits.idle_timeout`. A connection over a cap is closed at once, before anything is read.
//!
//! This is the HTTP/1 connection loop Pingora's own `ServerApp` runs for an `HttpServerApp`,
//! with those bounds added; mxgate serves no cleartext HTTP/2 (h2c), so the loop does not
//! either.

use super::header_deadline::HeaderDeadline;
use crate::config::limits::Limits;
use async_trait::async_trait;
use ipnet::IpNet;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
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

/// Wraps the proxy application with the connection bounds.
pub struct ConnectionGuard<A> {
    app: Arc<A>,
    limits: ConnectionLimits,
    open: Arc<AtomicUsize>,
    per_address: Inflight,
    over_total: RefusalLog,
    over_per_address: RefusalLog,
}

/// Counts refused connections and logs them at most once per [`REFUSAL_LOG_EVERY_SECS`]: a
/// flood of connections must not become a flood of log lines.
#[derive(Default)]
struct RefusalLog {
    refused: AtomicU64,
    last_logged: AtomicU64,
}

const REFUSAL_LOG_EVERY_SECS: u64 = 10;

// === impl RefusalLog ===

impl RefusalLog {
    fn record(&self, reason: &'static str, limit: usize, client: Option<IpAddr>) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let now = crate::store::now();
        let last = self.last_logged.load(Ordering::Relaxed);
        if now >= last + REFUSAL_LOG_EVERY_SECS
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let refused = self.refused.swap(0, Ordering::Relaxed);
            tracing::warn!(refused, limit, last_client = ?client, "{reason}");
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

// === impl ConnectionGuard ===

impl<A> ConnectionGuard<A> {
    pub fn new(app: A, limits: ConnectionLimits) -> Self {
        Self {
            app: Arc::new(app),
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            per_address: Inflight::new(),
            over_total: RefusalLog::default(),
            over_per_address: RefusalLog::default(),
        }
    }

    fn admit(&self, peer: Option<IpAddr>) -> Option<Admission> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let mut admission = Admission {
            open: self.open.clone(),
            per_address: None,
        };
        if open > self.limits.max_connections {
            self.over_total.record(
                "connections refused: too many open connections (limits.max_connections)",
                self.limits.max_connections,
                peer,
            );
            return None;
        }
        let Some(ip) = peer.filter(|ip| !self.limits.trusted.iter().any(|net| net.contains(ip))) else {
            return Some(admission);
        };
        let (guard, from_address) = self.per_address.incr(ip, 1);
        if from_address > self.limits.max_per_address as isize {
            self.over_per_address.record(
                "connections refused: too many from one address (limits.max_connections_per_address)",
                self.limits.max_per_address,
                Some(ip),
            );
            return None;
        }
        admission.per_address = Some(guard);
        Some(admission)
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
        let _admission = self.admit(peer_ip(&stream))?;
        let deadline = HeaderDeadline::new(stream, self.limits.header_timeout);
        let next_request = deadline.next_request_handle();
        let mut session = ServerSession::new_http1(Box::new(deadline));
        loop {
            if *shutdown.borrow() {
                session.set_keepalive(None);
            } else {
                session.set_keepalive(Some(self.limits.idle_timeout_secs));
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
