//! Ties each MCP session (`mcp-session-id`, issued by the core on `initialize`) to the user who
//! opened it. The core itself does not: anyone holding a session id could read that session's
//! server-to-client stream. A request that presents another user's session id gets `404`, which
//! MCP clients answer by starting a new session.
//!
//! In memory, per replica. A session id first seen after a restart is bound to the first user
//! who presents it.

use std::collections::HashMap;
use std::sync::RwLock;

pub const MCP_SESSION_HEADER: &str = "mcp-session-id";
/// Bindings kept before the oldest are swept.
const SOFT_CAPACITY: usize = 100_000;

struct Binding {
    user: String,
    bound_at: u64,
}

#[derive(Default)]
pub struct McpSessionBindings {
    bindings: RwLock<HashMap<String, Binding>>,
}

/// Whether a request may use the MCP session it names.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCheck {
    Allowed,
    OtherUser,
}

// === impl McpSessionBindings ===

impl McpSessionBindings {
    /// Checks a presented session id; binds it to `user` when it is not bound yet.
    pub fn check(&self, session_id: &str, user: &str, now: u64) -> SessionCheck {
        if let Ok(map) = self.bindings.read() {
            match map.get(session_id) {
                Some(b) if b.user == user => return SessionCheck::Allowed,
                Some(_) => return SessionCheck::OtherUser,
                None => {}
            }
        }
        self.bind(session_id, user, now);
        SessionCheck::Allowed
    }

    /// Binds a session id the core just issued (or first saw) to a user.
    pub fn bind(&self, session_id: &str, user: &str, now: u64) {
        let Ok(mut map) = self.bindings.write() else {
            return;
        };
        if map.len() >= SOFT_CAPACITY && !map.contains_key(session_id) {
            let mut ages: Vec<u64> = map.values().map(|b| b.bound_at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            map.retain(|_, b| b.bound_at > cutoff);
        }
        map.entry(session_id.to_string()).or_insert_with(|| Binding {
            user: user.to_string(),
            bound_at: now,
        });
    }

    pub fn forget(&self, session_id: &str) {
        if let Ok(mut map) = self.bindings.write() {
            map.remove(session_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_the_user_who_opened_it() {
        let b = McpSessionBindings::default();
        b.bind("s1", "oidc:alice", 1);
        assert_eq!(b.check("s1", "oidc:alice", 2), SessionCheck::Allowed);
        assert_eq!(b.check("s1", "oidc:bob", 2), SessionCheck::OtherUser);
        assert_eq!(
            b.check("s2", "oidc:bob", 2),
            SessionCheck::Allowed,
            "unknown ids bind on first use"
        );
        assert_eq!(b.check("s2", "oidc:alice", 3), SessionCheck::OtherUser);
        b.forget("s1");
        assert_eq!(b.check("s1", "oidc:bob", 4), SessionCheck::Allowed);
    }
}
