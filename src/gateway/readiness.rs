//! The answers of `/healthz` (liveness: the process serves) and `/readyz` (readiness: it can do
//! its job), the same on every listener.
//!
//! Ready means: the store (if any) is readable, the core (upstream) accepts a TCP connection,
//! and every OpenID provider's discovery document is loaded (loading it when it is not yet, so
//! the first login does not wait). The body says why not:
//! `{"ready":false,"reasons":["upstream 127.0.0.1:8001 unreachable: connection refused"]}`.
//! The checks run at most once per [`CACHE_FOR`], one at a time (concurrent probes wait for the
//! check under way and share its answer), each bounded by [`PROBE_TIMEOUT`]: a probe never
//! fans out per request. Not ready while the core starts is right for a sidecar: no traffic
//! should come until the core answers; liveness (`/healthz`) stays up meanwhile.

use super::config_reload::LiveAuth;
use super::local_response::json_error;
use crate::store::Store;
use bytes::Bytes;
use http::{Response, StatusCode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long one check's verdict is reused.
const CACHE_FOR: Duration = Duration::from_secs(2);
/// The longest one probe (TCP connect, store read, discovery fetch) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn alive() -> Response<Bytes> {
    json_error(StatusCode::OK, "ok", "alive")
}

/// What `/readyz` checks, and its last verdict.
pub struct Readiness {
    store: Option<Store>,
    upstream: SocketAddr,
    /// The authentication parts in force, whose providers' discovery is checked (a reload's).
    auth: Option<LiveAuth>,
    /// When the last check ran, and the reasons it found (none: ready).
    last: Mutex<Option<(Instant, Vec<String>)>>,
}

// === impl Readiness ===

impl Readiness {
    pub fn new(store: Option<Store>, upstream: SocketAddr, auth: Option<LiveAuth>) -> Self {
        Self {
            store,
            upstream,
            auth,
            last: Mutex::new(None),
        }
    }

    /// The store whose readiness is checked (also what the metrics count sessions in).
    pub fn checked_store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// 200 `{"ready":true}`, or 503 `{"ready":false,"reasons":[…]}`; never cached by clients.
    pub async fn answer(&self) -> Response<Bytes> {
        let reasons = self.reasons().await;
        let (status, body) = if reasons.is_empty() {
            (StatusCode::OK, serde_json::json!({"ready": true}))
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"ready": false, "reasons": reasons}),
            )
        };
        let mut resp = Response::new(Bytes::from(body.to_string()));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
        resp
    }

    /// The reasons of the last check, checking again when it is older than [`CACHE_FOR`].
    async fn reasons(&self) -> Vec<String> {
        let mut last = self.last.lock().await;
        if let Some((at, reasons)) = last.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return reasons.clone();
            }
        }
        let reasons = self.check().await;
        if !reasons.is_empty() {
            tracing::debug!(?reasons, "not ready");
        }
        *last = Some((Instant::now(), reasons.clone()));
        reasons
    }

    async fn check(&self) -> Vec<String> {
        let (store, upstream, providers) = tokio::join!(self.store(), self.upstream(), self.providers());
        store.into_iter().chain(upstream).chain(providers).collect()
    }

    async fn store(&self) -> Option<String> {
        let store = self.store.as_ref()?;
        let read = store.get::<serde_json::Value>(crate::store::Table::Clients, "");
        match tokio::time::timeout(PROBE_TIMEOUT, read).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("the store is not readable: {e}")),
            Err(_) => Some(format!("the store did not answer within {PROBE_TIMEOUT:?}")),
        }
    }

    async fn upstream(&self) -> Option<String> {
        let address = self.upstream;
        match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("upstream {address} unreachable: {}", e.kind())),
            Err(_) => Some(format!(
                "upstream {address} unreachable: no answer within {PROBE_TIMEOUT:?}"
            )),
        }
    }

    async fn providers(&self) -> Vec<String> {
        let Some(auth) = &self.auth else {
            return Vec::new();
        };
        let providers = auth.load().server.providers().clone();
        let checks = providers.iter().map(|entry| async move {
            let name = entry.provider.name();
            match tokio::time::timeout(PROBE_TIMEOUT, entry.provider.ready()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("provider `{name}` discovery not loaded: {e}")),
                Err(_) => Some(format!(
                    "provider `{name}` discovery not loaded: no answer within {PROBE_TIMEOUT:?}"
                )),
            }
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(resp: Response<Bytes>) -> (StatusCode, serde_json::Value) {
        (resp.status(), serde_json::from_slice(resp.body()).unwrap())
    }

    #[tokio::test]
    async fn ready_when_the_upstream_accepts_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let readiness = Readiness::new(None, listener.local_addr().unwrap(), None);
        let (status, body) = body(readiness.answer().await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"ready": true}));
    }

    #[tokio::test]
    async fn not_ready_with_the_reason_while_the_upstream_is_down_and_the_verdict_is_reused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener); // nothing listens there now
        let readiness = Readiness::new(None, address, None);
        let resp = readiness.answer().await;
        assert_eq!(resp.headers()[http::header::CACHE_CONTROL], "no-store");
        let (status, body) = body(resp).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            serde_json::json!({"ready": false, "reasons": [format!("upstream {address} unreachable: connection refused")]})
        );
        // Up again: within CACHE_FOR the last verdict stands (no probe per request)…
        let _listener = tokio::net::TcpListener::bind(address).await.unwrap();
        assert_eq!(readiness.answer().await.status(), StatusCode::SERVICE_UNAVAILABLE);
        // …and after it, the new state is seen.
        tokio::time::sleep(CACHE_FOR).await;
        assert_eq!(readiness.answer().await.status(), StatusCode::OK);
    }
}
