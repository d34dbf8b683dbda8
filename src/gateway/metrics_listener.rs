//! The admin listener (`admin_listen`): `GET /metrics` in the Prometheus text format, and
//! `/healthz` and `/readyz` for probes; anything else is 404. A Pingora HTTP service on its own
//! port, never the public one: metrics tell an outsider how busy mxgate is and how its
//! sign-ins go, so the address must stay inside (loopback, or the pod network).

use super::local_response::json_error;
use super::proxy::{HEALTH_PATH, READY_PATH};
use super::readiness::{self, Readiness};
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub const METRICS_PATH: &str = "/metrics";

pub struct MetricsListener {
    /// What `/readyz` checks (the public listener's own), and the store whose sessions are counted.
    readiness: Arc<Readiness>,
}

// === impl MetricsListener ===

impl MetricsListener {
    pub fn new(readiness: Arc<Readiness>) -> Self {
        Self { readiness }
    }

    async fn answer(&self, method: &Method, path: &str) -> Response<Bytes> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "use GET");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        match path {
            METRICS_PATH => {
                let text = crate::metrics::metrics().scrape(self.readiness.checked_store()).await;
                let mut response = Response::new(Bytes::from(text));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            HEALTH_PATH => readiness::alive(),
            READY_PATH => self.readiness.answer().await,
            _ => json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "the admin listener serves /metrics, /healthz and /readyz",
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for MetricsListener {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let (method, path) = (header.method.clone(), header.uri.path().to_string());
        let (mut parts, body) = self.answer(&method, &path).await.into_parts();
        parts.headers.insert(header::CONTENT_LENGTH, body.len().into());
        let body = if method == Method::HEAD {
            Vec::new()
        } else {
            body.to_vec()
        };
        Response::from_parts(parts, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_and_probes_and_nothing_else() {
        // A core that accepts connections, so `/readyz` is ready.
        let core = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let readiness = Readiness::new(None, core.local_addr().unwrap(), None);
        let listener = MetricsListener::new(Arc::new(readiness));
        let metrics = listener.answer(&Method::GET, METRICS_PATH).await;
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = std::str::from_utf8(metrics.body()).unwrap();
        assert!(text.contains("# TYPE mxgate_requests_total counter"), "{text}");
        assert_eq!(
            listener.answer(&Method::GET, HEALTH_PATH).await.status(),
            StatusCode::OK
        );
        assert_eq!(listener.answer(&Method::GET, READY_PATH).await.status(), StatusCode::OK);
        assert_eq!(
            listener.answer(&Method::GET, "/mcp").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            listener.answer(&Method::POST, METRICS_PATH).await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
