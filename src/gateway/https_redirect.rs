//! The plain-HTTP listener of `tls.redirect_listen`: every request is answered with a 308 to the
//! same path and query on the https public URL — never to the `Host` the request names — except
//! `/healthz` and `/readyz`, which it answers itself (so probes need no TLS). Nothing is
//! proxied; a request with a body is answered and its connection closed, unread.

use super::local_response::json_error;
use super::proxy::{HEALTH_PATH, READY_PATH};
use super::readiness;
use async_trait::async_trait;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode, Uri};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

pub struct HttpsRedirect {
    /// `https://host[:port]`, no trailing slash.
    public_url: String,
    readiness: Arc<readiness::Readiness>,
}

// === impl HttpsRedirect ===

impl HttpsRedirect {
    pub fn new(public_url: String, readiness: Arc<readiness::Readiness>) -> Self {
        Self { public_url, readiness }
    }

    async fn answer(&self, uri: &Uri) -> Response<Bytes> {
        match uri.path() {
            HEALTH_PATH => readiness::alive(),
            READY_PATH => self.readiness.answer().await,
            _ => self.redirect(uri),
        }
    }

    fn redirect(&self, uri: &Uri) -> Response<Bytes> {
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| p.starts_with('/'))
            .unwrap_or("/");
        match HeaderValue::from_str(&format!("{}{path}", self.public_url)) {
            Ok(location) => {
                let mut response = Response::new(Bytes::new());
                *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                response.headers_mut().insert(header::LOCATION, location);
                response
            }
            // Cannot happen: a parsed request target holds only header-safe characters.
            Err(_) => json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request target is malformed",
            ),
        }
    }
}

async fn write(session: &mut ServerSession, response: Response<Bytes>, head_only: bool) -> pingora::Result<()> {
    let (parts, body) = response.into_parts();
    let mut header = ResponseHeader::build(parts.status, Some(parts.headers.len() + 1))?;
    for (name, value) in parts.headers.iter() {
        header.append_header(name.clone(), value.clone())?;
    }
    header.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    session.write_response_header(Box::new(header)).await?;
    if !body.is_empty() && !head_only {
        session.write_response_body(body, true).await?;
    }
    Ok(())
}

#[async_trait]
impl HttpServerApp for HttpsRedirect {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "redirect listener: unreadable request");
                return None;
            }
        }
        let head_only = session.req_header().method == Method::HEAD;
        let response = self.answer(&session.req_header().uri).await;
        if *shutdown.borrow() || !session.is_body_empty() {
            session.set_keepalive(None);
        }
        if let Err(e) = write(&mut session, response, head_only).await {
            tracing::debug!(error = %e, "redirect listener: the answer could not be written");
            return None;
        }
        let persistent = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(reusable) => reusable.map(|stream| ReusedHttpStream::from_reusable_stream(stream, persistent)),
            Err(e) => {
                tracing::debug!(error = %e, "redirect listener: finishing the answer failed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The redirect listener of a gateway whose core listens on `upstream`.
    fn redirect(upstream: std::net::SocketAddr) -> HttpsRedirect {
        let readiness = readiness::Readiness::new(None, upstream, None);
        HttpsRedirect::new("https://mcp.example.com:8443".into(), Arc::new(readiness))
    }

    async fn answer(target: &str) -> Response<Bytes> {
        let core = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        redirect(core.local_addr().unwrap())
            .answer(&target.parse::<Uri>().unwrap())
            .await
    }

    #[tokio::test]
    async fn redirects_to_the_same_path_and_query_on_the_public_url() {
        let r = answer("/authorize?client_id=a&state=b").await;
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://mcp.example.com:8443/authorize?client_id=a&state=b"
        );
        // An absolute-form target names another host: only its path is kept.
        let r = answer("http://evil.example/mcp").await;
        assert_eq!(r.headers()[header::LOCATION], "https://mcp.example.com:8443/mcp");
        let r = answer("*").await;
        assert_eq!(r.headers()[header::LOCATION], "https://mcp.example.com:8443/");
    }

    #[tokio::test]
    async fn answers_health_probes_itself() {
        let r = answer("/healthz").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(header::LOCATION).is_none());
        let r = answer("/readyz").await;
        assert_eq!(r.status(), StatusCode::OK);
    }
}
