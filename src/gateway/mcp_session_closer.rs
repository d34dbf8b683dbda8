//! Closes at the core the MCP sessions mxgate drops from its bounded table (see
//! `mcp_session_binding`): a `DELETE <mcp_path>` with that `mcp-session-id`, as the MCP
//! transport spec has a client end a session. MXCP keeps a session until it is deleted, so
//! without this one signed-in user opening sessions in a loop would grow the core without bound.
//!
//! Requests go from one background task, fed through a bounded queue; when the queue is full
//! (the core is slow or down) the id is dropped and counted in a throttled warning.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

use super::mcp_session_binding::MCP_SESSION_HEADER;

/// Session ids waiting to be closed at most.
const QUEUE: usize = 4096;
const DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// The sending side: hand dropped session ids to the background task.
#[derive(Clone)]
pub struct McpSessionCloser {
    queue: mpsc::Sender<Arc<str>>,
    lost: Arc<AtomicU64>,
}

/// The background task that sends the `DELETE`s.
pub struct McpSessionCloserService {
    queue: Mutex<Option<mpsc::Receiver<Arc<str>>>>,
    url: String,
    lost: Arc<AtomicU64>,
}

/// A closer and its background service, for the MCP endpoint `mcp_url` of the core.
pub fn mcp_session_closer(mcp_url: String) -> (McpSessionCloser, McpSessionCloserService) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let lost = Arc::new(AtomicU64::new(0));
    (
        McpSessionCloser {
            queue: tx,
            lost: lost.clone(),
        },
        McpSessionCloserService {
            queue: Mutex::new(Some(rx)),
            url: mcp_url,
            lost,
        },
    )
}

// === impl McpSessionCloser ===

impl McpSessionCloser {
    pub fn close(&self, session_ids: Vec<Arc<str>>) {
        for id in session_ids {
            if self.queue.try_send(id).is_err() {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// === impl McpSessionCloserService ===

impl McpSessionCloserService {
    async fn delete(&self, http: &reqwest::Client, session_id: &str) {
        let result = http
            .delete(&self.url)
            .header(MCP_SESSION_HEADER, session_id)
            .timeout(DELETE_TIMEOUT)
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::NOT_FOUND => {
                tracing::debug!(status = %r.status(), "closed a dropped MCP session at the core");
            }
            Ok(r) => tracing::debug!(status = %r.status(), "the core refused to close a dropped MCP session"),
            Err(e) => tracing::debug!(error = %e, "could not close a dropped MCP session at the core"),
        }
    }
}

#[async_trait]
impl BackgroundService for McpSessionCloserService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut queue) = self.queue.lock().ok().and_then(|mut q| q.take()) else {
            return;
        };
        let http = match reqwest::Client::builder().no_proxy().build() {
            Ok(http) => http,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the HTTP client that closes MCP sessions");
                return;
            }
        };
        let mut report = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = report.tick() => {
                    let lost = self.lost.swap(0, Ordering::Relaxed);
                    if lost > 0 {
                        tracing::warn!(lost, "dropped MCP sessions not closed at the core (queue full)");
                    }
                }
                next = queue.recv() => match next {
                    Some(id) => self.delete(&http, &id).await,
                    None => return,
                },
            }
        }
    }
}
