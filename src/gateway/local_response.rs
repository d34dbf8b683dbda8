//! The bridge between Pingora sessions and the `http`-typed handlers: reading a whole request
//! (bounded) into `http::Request<Bytes>`, and writing an `http::Response<Bytes>` with a
//! `Content-Length`, which locally written Pingora responses need to finish cleanly.

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::time::Duration;

/// Bodies of OAuth requests are small; anything bigger is refused with 413.
pub const MAX_LOCAL_BODY: usize = 64 * 1024;

/// What reading a request to a local endpoint gave.
pub enum LocalBody {
    Complete(Box<Request<Bytes>>),
    /// Larger than [`MAX_LOCAL_BODY`].
    TooLarge,
    /// Not complete within the body timeout.
    TimedOut,
    /// Broken framing (a malformed chunk, a connection closed mid-body).
    Malformed(Box<pingora::Error>),
}

/// The whole request, read within `deadline`.
pub async fn read_request(session: &mut Session, deadline: Duration) -> LocalBody {
    let mut body = BytesMut::new();
    let read_all = async {
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > MAX_LOCAL_BODY {
                return Ok(false);
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<bool, Box<pingora::Error>>(true)
    };
    match tokio::time::timeout(deadline, read_all).await {
        Err(_) => return LocalBody::TimedOut,
        Ok(Err(e)) => return LocalBody::Malformed(e),
        Ok(Ok(false)) => return LocalBody::TooLarge,
        Ok(Ok(true)) => {}
    }
    let header = session.req_header();
    let mut builder = Request::builder()
        .method(header.method.clone())
        .uri(header.uri.clone())
        .version(header.version);
    if let Some(headers) = builder.headers_mut() {
        headers.extend(header.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    match builder.body(body.freeze()) {
        Ok(request) => LocalBody::Complete(Box::new(request)),
        Err(e) => LocalBody::Malformed(pingora::Error::because(
            pingora::ErrorType::InvalidHTTPHeader,
            "building request",
            e,
        )),
    }
}

pub async fn write_response(session: &mut Session, response: Response<Bytes>) -> pingora::Result<()> {
    let (parts, body) = response.into_parts();
    let head_only = session.req_header().method == http::Method::HEAD;
    let mut header = ResponseHeader::build(parts.status, Some(parts.headers.len() + 1))?;
    for (name, value) in parts.headers.iter() {
        header.append_header(name.clone(), value.clone())?;
    }
    header.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    let empty = body.is_empty() || head_only;
    session.write_response_header(Box::new(header), empty).await?;
    if !empty {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// A small JSON error written by the gateway itself (502, 413, 503…).
pub fn json_error(status: StatusCode, error: &str, description: &str) -> Response<Bytes> {
    let body = serde_json::json!({"error": error, "error_description": description});
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    resp
}
