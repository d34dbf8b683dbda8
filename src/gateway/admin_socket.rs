//! The admin socket: a Pingora HTTP service on a Unix socket in the data directory (mode 0600)
//! that answers [`crate::admin::SessionAdmin`] and [`crate::admin::keys::KeyAdmin`] requests.

use crate::admin::keys::KeyAdmin;
use crate::admin::SessionAdmin;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

pub struct AdminSocket {
    pub sessions: SessionAdmin,
    pub keys: KeyAdmin,
}

#[async_trait]
impl ServeHttp for AdminSocket {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let (method, path) = (header.method.clone(), header.uri.path().to_string());
        let query = header.uri.query().unwrap_or_default().to_string();
        let (status, body) = if KeyAdmin::owns(&path) {
            self.keys.handle(&method, &path, &query).await
        } else {
            self.sessions.handle(&method, &path, &query).await
        };
        let body = body.to_string().into_bytes();
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let length = resp.body().len();
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, length.into());
        resp
    }
}
