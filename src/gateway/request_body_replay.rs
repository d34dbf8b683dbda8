//! Reading a request body before the request goes to the core (for policies on `rpc`/`tool`),
//! then sending the very same bytes on: the decision is made before Pingora connects to the
//! core, so a denied request never leaves half a request there.
//!
//! How the bytes reach the core: Pingora starts the upstream body with its *retry buffer* (what
//! it kept of the body for a retry; at most 64 KiB) when the downstream body is already read,
//! handing it to `request_body_filter`, where [`McpGateway`](super::proxy::McpGateway) puts the
//! whole body in its place. So the retry buffer is turned on for the last 64 KiB of the body (a
//! declared `Content-Length` says where they start; without one, from the start, which bounds
//! such bodies to 64 KiB), and the body is refused when it could not be replayed.

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use std::time::Duration;

/// Pingora's retry buffer (`BODY_BUF_LIMIT` of pingora-core's HTTP/1 and HTTP/2 servers).
const RETRY_BUFFER: usize = 64 * 1024;

/// What reading the body gave.
pub enum ReplayBody {
    /// The whole body, to hand to `request_body_filter` (empty: nothing to replay).
    Complete(Bytes),
    /// Over the limit, or over [`RETRY_BUFFER`] without a `Content-Length`.
    TooLarge,
    TimedOut,
    Malformed(Box<pingora::Error>),
}

/// Reads the whole request body (at most `limit` bytes) within `deadline`, so that Pingora
/// will send it to the core again.
pub async fn read_for_replay(session: &mut Session, limit: usize, deadline: Duration) -> ReplayBody {
    let declared: Option<usize> = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if declared.is_some_and(|n| n > limit) {
        return ReplayBody::TooLarge;
    }
    let mut body = BytesMut::new();
    let read_all = async {
        loop {
            let remaining = declared.map_or(0, |n| n.saturating_sub(body.len()));
            if remaining <= RETRY_BUFFER {
                session.as_mut().enable_retry_buffering();
            }
            let Some(chunk) = session.read_request_body().await? else {
                return Ok::<bool, Box<pingora::Error>>(true);
            };
            if body.len() + chunk.len() > limit {
                return Ok(false);
            }
            body.extend_from_slice(&chunk);
        }
    };
    match tokio::time::timeout(deadline, read_all).await {
        Err(_) => return ReplayBody::TimedOut,
        Ok(Err(e)) => return ReplayBody::Malformed(e),
        Ok(Ok(false)) => return ReplayBody::TooLarge,
        Ok(Ok(true)) => {}
    }
    let replayable = body.is_empty() || session.as_ref().get_retry_buffer().is_some();
    if !replayable {
        return ReplayBody::TooLarge;
    }
    ReplayBody::Complete(body.freeze())
}
