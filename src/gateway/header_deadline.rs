//! A client connection that must deliver each request header within `limits.header_timeout`
//! (slow-header clients, "slowloris", are cut off). Pingora only bounds each single read, so a
//! client sending a byte a minute would hold a connection for ever.
//!
//! The deadline starts when the connection is accepted (its first request) or with the first
//! byte of a later request on a kept-alive connection (the idle wait in between is Pingora's
//! keep-alive timeout), and ends at the blank line that ends the header. Past it, a read fails
//! with `TimedOut` and Pingora closes the connection. Bodies are not affected
//! (`limits.body_timeout` bounds them per read).

use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream, TimingDigest,
    UniqueID, UniqueIDType,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Where the connection is in reading a request header.
#[derive(Debug)]
enum Phase {
    /// Between requests: the clock starts with the next byte.
    Idle,
    /// Reading a header; `newlines` is how far into a `\n[\r]\n` header end the last read got.
    Header { newlines: u8 },
    /// The header has ended; the body and the response are not timed here.
    Done,
}

pub struct HeaderDeadline {
    inner: Stream,
    timeout: Duration,
    phase: Phase,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Set by the connection's owner when the connection is kept alive for another request.
    next_request: Arc<AtomicBool>,
}

/// Marks a kept-alive connection as waiting for its next request: the header clock then starts
/// with the first byte of that request.
pub struct NextRequest(Arc<AtomicBool>);

// === impl NextRequest ===

impl NextRequest {
    pub fn expect(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for HeaderDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDeadline")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish()
    }
}

// === impl HeaderDeadline ===

impl HeaderDeadline {
    /// A freshly accepted connection: its first header is due within `timeout` from now.
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            phase: Phase::Header { newlines: 0 },
            sleep: Some(Box::pin(tokio::time::sleep(timeout))),
            next_request: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The handle that tells this connection a new request is awaited (see [`NextRequest`]).
    pub fn next_request_handle(&self) -> NextRequest {
        NextRequest(self.next_request.clone())
    }

    /// Advances the header-end search over freshly read bytes; `true` when the header ended.
    /// The bytes are searched for `\n` with `memchr` (a request header is a few hundred bytes
    /// read on every request); only the first two bytes continue the state of the last read.
    fn header_ended(newlines: &mut u8, bytes: &[u8]) -> bool {
        let head = bytes.len().min(2);
        for &b in &bytes[..head] {
            if Self::step(newlines, b) {
                return true;
            }
        }
        for i in memchr::memchr_iter(b'\n', &bytes[head..]).map(|i| i + head) {
            // `i >= 2` here: both bytes before it are in this read.
            if bytes[i - 1] == b'\n' || (bytes[i - 1] == b'\r' && bytes[i - 2] == b'\n') {
                return true;
            }
        }
        // The state depends on the last two bytes only; none of them ended the header.
        let rest = &bytes[head..];
        if rest.len() >= 2 {
            *newlines = 0;
        }
        for &b in &rest[rest.len().saturating_sub(2)..] {
            Self::step(newlines, b);
        }
        false
    }

    /// One byte of the `\n[\r]\n` search; `true` when it ends the header.
    fn step(newlines: &mut u8, b: u8) -> bool {
        *newlines = match (b, *newlines) {
            (b'\n', 1 | 2) => return true,
            (b'\n', _) => 1,
            (b'\r', 1) => 2,
            _ => 0,
        };
        false
    }
}

impl AsyncRead for HeaderDeadline {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.next_request.swap(false, Ordering::AcqRel) {
            this.phase = Phase::Idle;
            this.sleep = None;
        }
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request header did not arrive in time",
                )));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                if matches!(this.phase, Phase::Idle) {
                    this.phase = Phase::Header { newlines: 0 };
                    this.sleep = Some(Box::pin(tokio::time::sleep(this.timeout)));
                }
                if let Phase::Header { newlines } = &mut this.phase {
                    if Self::header_ended(newlines, fresh) {
                        this.phase = Phase::Done;
                        this.sleep = None;
                    }
                }
            }
        }
        result
    }
}

impl AsyncWrite for HeaderDeadline {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait::async_trait]
impl Shutdown for HeaderDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeaderDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeaderDeadline {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeaderDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for HeaderDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for HeaderDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait::async_trait]
impl Peek for HeaderDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_header_ends_across_reads_and_line_endings() {
        let mut n = 0;
        assert!(!HeaderDeadline::header_ended(&mut n, b"GET / HTTP/1.1\r\nHost: a\r"));
        assert!(HeaderDeadline::header_ended(&mut n, b"\n\r\n"));
        let mut n = 0;
        assert!(HeaderDeadline::header_ended(&mut n, b"GET / HTTP/1.1\nHost: a\n\n"));
        let mut n = 0;
        assert!(!HeaderDeadline::header_ended(
            &mut n,
            b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\r\n"
        ));
    }

    /// The byte-at-a-time search, the reference the memchr search must agree with.
    fn ended_byte_by_byte(newlines: &mut u8, bytes: &[u8]) -> bool {
        bytes.iter().any(|&b| HeaderDeadline::step(newlines, b))
    }

    #[test]
    fn the_search_agrees_with_the_byte_at_a_time_one_for_every_split() {
        let streams: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"GET / HTTP/1.1\r\nX: \r\r\nY: \n\r\r\n\r\n",
            b"\n\n",
            b"\r\n\r",
            b"POST /mcp HTTP/1.1\r\nA: b\r\nC: \n\rd\r\n\r\n",
        ];
        for stream in streams {
            // Every way of cutting the stream into up to three reads.
            for a in 0..=stream.len() {
                for b in a..=stream.len() {
                    let reads = [&stream[..a], &stream[a..b], &stream[b..]];
                    let (mut fast, mut slow) = (0, 0);
                    for read in reads {
                        let ended = HeaderDeadline::header_ended(&mut fast, read);
                        assert_eq!(ended, ended_byte_by_byte(&mut slow, read), "{stream:?} cut at {a}, {b}");
                        if ended {
                            break;
                        }
                        assert_eq!(fast, slow, "{stream:?} cut at {a}, {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_http2_connection_preface_ends_like_a_header() {
        // The connection guard bounds an HTTP/2 connection's preface with this deadline.
        let mut n = 0;
        assert!(HeaderDeadline::header_ended(
            &mut n,
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        ));
    }
}
