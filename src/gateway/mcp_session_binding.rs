//! Ties each MCP session (`mcp-session-id`) to the user who opened it. The core itself does
//! not: anyone holding a session id could read that session's server-to-client stream.
//!
//! Only ids the core itself issued are bound: the `mcp-session-id` of a successful answer to a
//! request that carried none (`initialize`). A request presenting an id that is not bound to its
//! user — another user's, one mxgate never saw (forged, or from before a restart), or one that is
//! not a valid id (1–[`MAX_SESSION_ID_LEN`] visible ASCII characters) — gets `404`, which MCP
//! clients answer by starting a new session. So the table grows only with what the core
//! creates, and it is bounded: `limits.mcp_sessions_per_user` per user and
//! `limits.max_mcp_sessions` in all, the oldest binding dropped first (its client gets `404`
//! and starts again). A dropped session is also closed at the core (see
//! [`super::mcp_session_closer`]): MXCP keeps a session until it is deleted, so otherwise one
//! user opening sessions in a loop would grow the core without bound.
//!
//! Behind a proxy that forwards to the core itself (forward auth), mxgate never sees the core
//! issue an id; there an id is bound to the first signed-in user who presents it
//! ([`McpSessionBindings::claim`]), within the same bounds.
//!
//! In memory, per replica.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

pub const MCP_SESSION_HEADER: &str = "mcp-session-id";
/// Longest session id accepted (the MCP transport spec asks for visible ASCII; MXCP issues 32
/// hex characters).
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Whether a value can be an MCP session id: 1–128 visible ASCII characters (0x21–0x7E).
pub fn is_valid_session_id(id: &str) -> bool {
    (1..=MAX_SESSION_ID_LEN).contains(&id.len()) && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

struct Binding {
    user: Arc<str>,
    /// Bind order, to recognise stale entries in the eviction queue.
    seq: u64,
}

#[derive(Default)]
struct Bindings {
    by_id: HashMap<Arc<str>, Binding>,
    /// Each user's session ids, oldest first.
    by_user: HashMap<Arc<str>, VecDeque<Arc<str>>>,
    /// Every binding in bind order (entries of forgotten ids are skipped when met).
    order: VecDeque<(u64, Arc<str>)>,
    next_seq: u64,
}

pub struct McpSessionBindings {
    bindings: RwLock<Bindings>,
    per_user: usize,
    total: usize,
}

/// Whether a request may use the MCP session it names.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCheck {
    Allowed,
    /// Bound to another user.
    OtherUser,
    /// Not bound (never issued through mxgate, dropped, or not a valid id).
    Unknown,
}

// === impl Bindings ===

impl Bindings {
    fn remove(&mut self, id: &str) -> bool {
        let Some((id, binding)) = self.by_id.remove_entry(id) else {
            return false;
        };
        if let Some(ids) = self.by_user.get_mut(&binding.user) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_user.remove(&binding.user);
            }
        }
        true
    }

    /// Drops the oldest live binding; returns its id.
    fn evict_oldest(&mut self) -> Option<Arc<str>> {
        while let Some((seq, id)) = self.order.pop_front() {
            if self.by_id.get(&id).is_some_and(|b| b.seq == seq) {
                self.remove(&id);
                return Some(id);
            }
        }
        None
    }

    /// Keeps the eviction queue from growing with forgotten ids.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.by_id.len() + 64 {
            let by_id = &self.by_id;
            self.order
                .retain(|(seq, id)| by_id.get(id).is_some_and(|b| b.seq == *seq));
        }
    }
}

// === impl McpSessionBindings ===

impl McpSessionBindings {
    pub fn new(per_user: usize, total: usize) -> Self {
        Self {
            bindings: RwLock::new(Bindings::default()),
            per_user: per_user.max(1),
            total: total.max(1),
        }
    }

    /// Checks a presented session id against the user presenting it.
    pub fn check(&self, session_id: &str, user: &str) -> SessionCheck {
        if !is_valid_session_id(session_id) {
            return SessionCheck::Unknown;
        }
        let Ok(map) = self.bindings.read() else {
            return SessionCheck::Unknown;
        };
        match map.by_id.get(session_id) {
            Some(b) if &*b.user == user => SessionCheck::Allowed,
            Some(_) => SessionCheck::OtherUser,
            None => SessionCheck::Unknown,
        }
    }

    /// Binds a session id the core just issued to `user`. Invalid ids and ids already bound are
    /// ignored. Returns the ids of the sessions dropped to make room (to close at the core).
    pub fn bind(&self, session_id: &str, user: &str) -> Vec<Arc<str>> {
        if !is_valid_session_id(session_id) {
            tracing::warn!(
                len = session_id.len(),
                "the core issued an MCP session id that is not a valid one; not bound"
            );
            return Vec::new();
        }
        let Ok(mut map) = self.bindings.write() else {
            return Vec::new();
        };
        if map.by_id.contains_key(session_id) {
            return Vec::new();
        }
        self.bind_locked(&mut map, session_id, user)
    }

    /// Checks a presented id and binds it to `user` when no one holds it yet (forward auth,
    /// where mxgate cannot see the core issue ids). Invalid ids are `Unknown` and never bound.
    /// Also returns the ids dropped to make room (to close at the core).
    pub fn claim(&self, session_id: &str, user: &str) -> (SessionCheck, Vec<Arc<str>>) {
        if !is_valid_session_id(session_id) {
            return (SessionCheck::Unknown, Vec::new());
        }
        let Ok(mut map) = self.bindings.write() else {
            return (SessionCheck::Unknown, Vec::new());
        };
        match map.by_id.get(session_id) {
            Some(b) if &*b.user == user => (SessionCheck::Allowed, Vec::new()),
            Some(_) => (SessionCheck::OtherUser, Vec::new()),
            None => (SessionCheck::Allowed, self.bind_locked(&mut map, session_id, user)),
        }
    }

    fn bind_locked(&self, map: &mut Bindings, session_id: &str, user: &str) -> Vec<Arc<str>> {
        let mut dropped = Vec::new();
        let user: Arc<str> = match map.by_user.get_key_value(user) {
            Some((existing, _)) => existing.clone(),
            None => Arc::from(user),
        };
        let id: Arc<str> = Arc::from(session_id);
        let seq = map.next_seq;
        map.next_seq += 1;
        map.by_id.insert(
            id.clone(),
            Binding {
                user: user.clone(),
                seq,
            },
        );
        map.order.push_back((seq, id.clone()));
        let ids = map.by_user.entry(user).or_default();
        ids.push_back(id);
        let over_user_cap = (ids.len() > self.per_user).then(|| ids.front().cloned()).flatten();
        if let Some(oldest) = over_user_cap {
            map.remove(&oldest);
            dropped.push(oldest);
        }
        while map.by_id.len() > self.total {
            match map.evict_oldest() {
                Some(id) => dropped.push(id),
                None => break,
            }
        }
        map.compact();
        dropped
    }

    pub fn forget(&self, session_id: &str) {
        if let Ok(mut map) = self.bindings.write() {
            map.remove(session_id);
            map.compact();
        }
    }

    /// Bound sessions now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bindings.read().map(|m| m.by_id.len()).unwrap_or(0)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_the_user_who_opened_it() {
        let b = McpSessionBindings::new(8, 100);
        b.bind("s1", "oidc:alice");
        assert_eq!(b.check("s1", "oidc:alice"), SessionCheck::Allowed);
        assert_eq!(b.check("s1", "oidc:bob"), SessionCheck::OtherUser);
        b.forget("s1");
        assert_eq!(b.check("s1", "oidc:alice"), SessionCheck::Unknown);
    }

    #[test]
    fn ids_the_core_never_issued_are_unknown_and_never_bound_by_use() {
        let b = McpSessionBindings::new(8, 100);
        assert_eq!(b.check("made-up", "oidc:alice"), SessionCheck::Unknown);
        assert_eq!(
            b.check("made-up", "oidc:alice"),
            SessionCheck::Unknown,
            "checking binds nothing"
        );
        assert!(b.is_empty());
    }

    #[test]
    fn a_claimed_session_belongs_to_its_first_presenter_within_the_same_bounds() {
        let b = McpSessionBindings::new(2, 100);
        assert_eq!(b.claim("s1", "oidc:alice"), (SessionCheck::Allowed, vec![]));
        assert_eq!(b.claim("s1", "oidc:alice").0, SessionCheck::Allowed);
        assert_eq!(b.claim("s1", "oidc:bob").0, SessionCheck::OtherUser);
        assert_eq!(b.check("s1", "oidc:bob"), SessionCheck::OtherUser);
        assert_eq!(b.claim("has space", "oidc:bob").0, SessionCheck::Unknown);
        assert_eq!(
            b.claim(&"a".repeat(MAX_SESSION_ID_LEN + 1), "oidc:bob").0,
            SessionCheck::Unknown
        );
        b.claim("s2", "oidc:alice");
        let (check, dropped) = b.claim("s3", "oidc:alice");
        assert_eq!(check, SessionCheck::Allowed);
        assert_eq!(
            dropped,
            vec![Arc::<str>::from("s1")],
            "the oldest, to be closed at the core"
        );
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn session_ids_are_bounded_in_length_and_charset() {
        let b = McpSessionBindings::new(8, 100);
        let huge = "a".repeat(900 * 1024);
        b.bind(&huge, "oidc:alice");
        b.bind("has space", "oidc:alice");
        b.bind("", "oidc:alice");
        b.bind("ctl\u{7}", "oidc:alice");
        assert!(b.is_empty(), "invalid ids are never stored");
        assert_eq!(b.check(&huge, "oidc:alice"), SessionCheck::Unknown);
        let longest = "x".repeat(MAX_SESSION_ID_LEN);
        b.bind(&longest, "oidc:alice");
        assert_eq!(b.check(&longest, "oidc:alice"), SessionCheck::Allowed);
    }

    #[test]
    fn a_user_holds_at_most_per_user_sessions_oldest_dropped() {
        let b = McpSessionBindings::new(3, 100);
        let dropped: Vec<Vec<Arc<str>>> = (0..5).map(|i| b.bind(&format!("s{i}"), "oidc:alice")).collect();
        assert!(dropped[..3].iter().all(Vec::is_empty));
        assert_eq!(
            dropped[3],
            vec![Arc::<str>::from("s0")],
            "dropped to make room, to be closed at the core"
        );
        assert_eq!(dropped[4], vec![Arc::<str>::from("s1")]);
        assert!(b.bind("other", "oidc:bob").is_empty());
        assert_eq!(b.len(), 4);
        assert_eq!(b.check("s0", "oidc:alice"), SessionCheck::Unknown);
        assert_eq!(b.check("s1", "oidc:alice"), SessionCheck::Unknown);
        for i in 2..5 {
            assert_eq!(b.check(&format!("s{i}"), "oidc:alice"), SessionCheck::Allowed);
        }
        assert_eq!(b.check("other", "oidc:bob"), SessionCheck::Allowed);
    }

    #[test]
    fn the_table_is_bounded_in_total_and_its_queue_stays_small() {
        let b = McpSessionBindings::new(1_000, 50);
        for i in 0..10_000 {
            b.bind(&format!("s{i}"), &format!("user{}", i % 7));
            if i % 3 == 0 {
                b.forget(&format!("s{i}"));
            }
        }
        assert!(b.len() <= 50, "{}", b.len());
        assert_eq!(b.check("s9998", "user2"), SessionCheck::Allowed);
        let map = b.bindings.read().unwrap();
        assert!(map.order.len() <= 2 * map.by_id.len() + 64 + 1, "{}", map.order.len());
        let per_user: usize = map.by_user.values().map(VecDeque::len).sum();
        assert_eq!(per_user, map.by_id.len(), "indexes agree");
    }
}
