//! Which MCP sessions a user may use, as one service: the bindings in memory
//! ([`super::mcp_session_binding`]), closing at the core the sessions dropped to stay within
//! bounds ([`super::mcp_session_closer`]), and — with a store shared by several replicas — the
//! bindings every replica sees.
//!
//! Shared: a binding is written to the store (`mcp_sessions`, id → user, until the mxgate
//! session that opened it ends) before the core's answer that issued the id reaches the client,
//! so the client's next request finds it on any replica. A replica that does not know an id
//! reads its owner from the store once and then binds it in memory. Forward auth claims an id
//! in the store with insert-if-absent, so the first user wins across replicas too. The memory
//! bounds hold per replica; the store's entries end with their sessions and are deleted when a
//! replica drops or closes them.

use super::admit::Admission;
use super::mcp_session_binding::{is_valid_session_id, McpSessionBindings, SessionCheck};
use super::mcp_session_closer::McpSessionCloser;
use crate::store::{Store, Table};
use std::sync::Arc;

pub struct McpSessionRegistry {
    local: McpSessionBindings,
    closer: McpSessionCloser,
    /// The store, when other replicas share it.
    shared: Option<Store>,
}

// === impl McpSessionRegistry ===

impl McpSessionRegistry {
    pub fn new(local: McpSessionBindings, closer: McpSessionCloser, store: &Store) -> Self {
        Self {
            local,
            closer,
            shared: store.kv().is_shared().then(|| store.clone()),
        }
    }

    /// Whether `user` may use the MCP session `id`. With forward auth, an id no one holds is
    /// bound to `user` (until `session_ends`).
    pub async fn check(&self, id: &str, user: &str, mode: Admission, session_ends: u64) -> SessionCheck {
        let Some(store) = &self.shared else {
            return match mode {
                Admission::Proxied => self.local.check(id, user),
                Admission::ForwardAuth => {
                    let (check, dropped) = self.local.claim(id, user);
                    self.drop_sessions(dropped).await;
                    check
                }
            };
        };
        // Known here: owners never change, so memory answers.
        match self.local.check(id, user) {
            SessionCheck::Unknown if is_valid_session_id(id) => {}
            known => return known,
        }
        if mode == Admission::ForwardAuth {
            match store.insert_new(Table::McpSessions, id, &user, session_ends).await {
                Ok(true) => return self.adopt(id, user).await,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim an MCP session in the shared store");
                    return SessionCheck::Unknown;
                }
            }
        }
        match store.get::<String>(Table::McpSessions, id).await {
            Ok(Some(owner)) if owner == user => self.adopt(id, user).await,
            Ok(Some(_)) => SessionCheck::OtherUser,
            Ok(None) => SessionCheck::Unknown,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an MCP session's owner from the shared store");
                SessionCheck::Unknown
            }
        }
    }

    /// Binds in memory a session the store says is `user`'s.
    async fn adopt(&self, id: &str, user: &str) -> SessionCheck {
        let dropped = self.local.bind(id, user);
        self.drop_sessions(dropped).await;
        SessionCheck::Allowed
    }

    /// The core issued `id` to `user` (whose mxgate session ends at `session_ends`).
    pub async fn opened(&self, id: &str, user: &str, session_ends: u64) {
        let dropped = self.local.bind(id, user);
        self.drop_sessions(dropped).await;
        if let (Some(store), true) = (&self.shared, is_valid_session_id(id)) {
            if let Err(e) = store.put(Table::McpSessions, id, &user, session_ends).await {
                tracing::warn!(error = %e, "cannot share an MCP session binding; other replicas will refuse it");
            }
        }
    }

    /// The client closed `id` at the core (`DELETE`).
    pub async fn closed(&self, id: &str) {
        self.local.forget(id);
        self.forget_shared(id).await;
    }

    /// Sessions dropped from memory to stay within bounds: closed at the core, and forgotten by
    /// every replica.
    async fn drop_sessions(&self, dropped: Vec<Arc<str>>) {
        for id in &dropped {
            self.forget_shared(id).await;
        }
        self.closer.close(dropped);
    }

    async fn forget_shared(&self, id: &str) {
        if let Some(store) = &self.shared {
            if let Err(e) = store.delete(Table::McpSessions, id).await {
                tracing::warn!(error = %e, "cannot remove an MCP session binding from the shared store");
            }
        }
    }
}
