//! Administration of a running mxgate — what `mxgate sessions list|revoke` and `mxgate keys` do. A running mxgate serves it
//! on a Unix socket in its data directory (mode 0600: only the owner of the data may use it;
//! nothing is exposed on the network). Handlers work on plain values; the socket is in
//! `gateway::admin_socket`, the command-line client in [`client`].

pub mod client;
pub mod keys;
pub mod keys_cli;

use crate::audit::{AuditEvent, AuditRecord};
use crate::session::Sessions;
use crate::store::{Store, StoreError, Table};
use crate::support::now;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

pub const SOCKET_FILE: &str = "admin.sock";
pub const SESSIONS_PATH: &str = "/sessions";
pub const REVOKE_PATH: &str = "/sessions/revoke";
pub const STORE_PATH: &str = "/store";

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}

/// One live session, as listed (no tokens).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionSummary {
    pub session_id: String,
    /// `provider:user id`.
    pub user: String,
    pub username: String,
    pub email: Option<String>,
    pub client_id: String,
    pub created_at: u64,
    pub expires_at: u64,
}

/// Which sessions a request is about: a user (matched against `provider:id`, username or
/// email), one session, or all.
#[derive(Debug, Default, Deserialize)]
pub struct Selector {
    pub user: Option<String>,
    pub session: Option<String>,
}

pub struct SessionAdmin {
    store: Store,
    sessions: Sessions,
}

// === impl SessionAdmin ===

impl SessionAdmin {
    pub fn new(store: Store, sessions: Sessions) -> Self {
        Self { store, sessions }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Answers one admin request: `GET /sessions?user=…` or `POST /sessions/revoke?user=…|session=…`.
    pub async fn handle(&self, method: &http::Method, path: &str, query: &str) -> (StatusCode, serde_json::Value) {
        let selector: Selector = match parse_selector(query) {
            Ok(s) => s,
            Err(e) => return (StatusCode::BAD_REQUEST, json!({"error": e})),
        };
        let result = match (method.as_str(), path) {
            ("GET", SESSIONS_PATH) => self.list(&selector).await.map(|s| json!({"sessions": s})),
            ("POST", REVOKE_PATH) if selector.user.is_none() && selector.session.is_none() => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({"error": "say which sessions: user=… or session=…"}),
                )
            }
            ("POST", REVOKE_PATH) => self.revoke(&selector).await.map(|n| json!({"revoked_sessions": n})),
            ("GET", STORE_PATH) => self.store_entries().await.map(|t| json!({"entries": t})),
            _ => return (StatusCode::NOT_FOUND, json!({"error": "unknown admin request"})),
        };
        match result {
            Ok(body) => (StatusCode::OK, body),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e.to_string()})),
        }
    }

    /// Live sessions matching the selector, oldest first.
    pub async fn list(&self, selector: &Selector) -> Result<Vec<SessionSummary>, StoreError> {
        let mut out = Vec::new();
        let exact_user = selector.user.as_deref().filter(|u| u.contains(':'));
        for (user, session_id) in self.sessions.indexed(exact_user).await? {
            if selector.session.as_ref().is_some_and(|s| *s != session_id) {
                continue;
            }
            let Some(record) = self.sessions.live(&session_id, now()).await? else {
                continue; // revoked meanwhile, or ended
            };
            let matches_user = selector.user.as_ref().is_none_or(|u| {
                *u == user || *u == record.user.username || record.user.email.as_deref() == Some(u.as_str())
            });
            if matches_user {
                out.push(SessionSummary {
                    session_id,
                    user,
                    username: record.user.username,
                    email: record.user.email,
                    client_id: record.client_id,
                    created_at: record.created_at,
                    expires_at: record.expires_at,
                });
            }
        }
        out.sort_by_key(|s| s.created_at);
        Ok(out)
    }

    /// Entries per store table (expired ones not yet purged included).
    pub async fn store_entries(&self) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        let mut out = serde_json::Map::new();
        for table in Table::ALL {
            out.insert(table.name().into(), self.store.kv().stored_entries(table).await?.into());
        }
        Ok(out)
    }

    /// Ends the selected sessions; returns how many.
    pub async fn revoke(&self, selector: &Selector) -> Result<usize, StoreError> {
        let mut revoked = 0;
        for session in self.list(selector).await? {
            if let Some(user) = self.sessions.revoke_session_of_user(&session.session_id).await {
                tracing::info!(user = %session.username, session = %session.session_id, "session revoked by an administrator");
                crate::audit::record(
                    AuditRecord::new(AuditEvent::TokenRevoked)
                        .user(&user)
                        .client_id(&session.client_id)
                        .session_id(&session.session_id)
                        .reason("session revoked by an administrator (mxgate sessions revoke)"),
                );
                revoked += 1;
            }
        }
        Ok(revoked)
    }
}

fn parse_selector(query: &str) -> Result<Selector, String> {
    let mut selector = Selector::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "user" => selector.user = Some(value.into_owned()),
            "session" => selector.session = Some(value.into_owned()),
            other => return Err(format!("unknown parameter `{other}` (user, session)")),
        }
    }
    Ok(selector)
}
