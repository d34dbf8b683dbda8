//! The signing key ring: which assertion signing keys exist, which one signs and which ones
//! the JWKS publishes, at any moment. Pure bookkeeping on timestamps (Unix seconds): every
//! function takes `now`, so the state machine is tested with any clock; no crypto, no I/O
//! (keys are opaque PEM text here; `signing_keys` turns them into signers, `key_ring_home`
//! keeps the ring).
//!
//! A key is `next` (published, not yet signing) until its `activate_at`, then `current`
//! (signing) until a successor activates, then `retiring` (published, not signing) until its
//! `retire_at`, then removed. A rotation adds a `next` key and sets the current key's
//! `retire_at`; the ring holds at most [`MAX_KEYS`] keys that are not yet removed.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Keys the ring holds at once (removed ones not counted): enough for a key retiring from the
/// rotation before last, the one retiring now, the current key and a `next` one.
pub const MAX_KEYS: usize = 4;

/// A stored ring with more entries than this is refused as damaged.
const MAX_STORED_KEYS: usize = 16;

/// Longest `kid` accepted from a stored ring (an RFC 7638 SHA-256 thumbprint is 43).
const MAX_KID_LEN: usize = 128;

/// Longest private key PEM accepted from a stored ring (an Ed25519 PKCS#8 PEM is ~120 bytes).
const MAX_PEM_LEN: usize = 4096;

/// Where a key is in its life at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published in the JWKS, not signing yet.
    Next,
    /// Signing (and published).
    Current,
    /// Published, no longer signing, until `retire_at`.
    Retiring,
    /// Past `retire_at`: neither published nor signing; dropped at the next write.
    Removed,
}

/// How a rotation is timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationTiming {
    /// How long a new key is published before it signs.
    pub publish_before: Duration,
    /// How long the old key stays published after the new one signs.
    pub overlap: Duration,
}

/// One key of the ring. `Debug` leaves the private key out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingKey {
    pub kid: String,
    /// PKCS#8 PEM of the private key.
    pub private_key_pem: String,
    pub created_at: u64,
    /// From when it signs.
    pub activate_at: u64,
    /// Until when it stays published once a successor signs (set by the rotation that adds
    /// the successor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<u64>,
}

/// The ring, oldest key first. Keys activate in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

/// Why a rotation was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RotateError {
    #[error("a rotation is already under way: key {kid} starts signing at {activate_at} (Unix time); rotate again after that")]
    UnderWay { kid: String, activate_at: u64 },
    #[error("the key ring is full ({MAX_KEYS} keys); the oldest retiring key is removed at {retire_at} (Unix time): rotate again after that")]
    Full { retire_at: u64 },
    #[error("`{0}` is already in the key ring")]
    DuplicateKid(String),
}

/// Why a stored ring was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RingError {
    #[error("the key ring holds no key")]
    Empty,
    #[error("the key ring holds {0} keys (at most {MAX_STORED_KEYS})")]
    TooMany(usize),
    #[error("a key of the ring has an empty or oversized kid or private key")]
    Oversized,
    #[error("the keys of the ring do not activate in the order they were added")]
    OutOfOrder,
}

/// Of `keys` in the order they activate, the one that signs at `now`: the newest one already
/// activated, or the oldest one if the clock went back before every activation.
pub fn signing_at<T>(keys: &[T], activate_at: impl Fn(&T) -> u64, now: u64) -> Option<&T> {
    keys.iter()
        .rev()
        .find(|k| activate_at(k) <= now)
        .or_else(|| keys.first())
}

// === impl RingKey ===

impl RingKey {
    /// A key that signs from `now` (a new ring's first key, or a migrated single key).
    pub fn signing_from(kid: String, private_key_pem: String, now: u64) -> Self {
        Self {
            kid,
            private_key_pem,
            created_at: now,
            activate_at: now,
            retire_at: None,
        }
    }
}

impl std::fmt::Debug for RingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("activate_at", &self.activate_at)
            .field("retire_at", &self.retire_at)
            .finish_non_exhaustive()
    }
}

// === impl KeyRing ===

impl KeyRing {
    /// A ring of one key that signs from `now`.
    pub fn starting_with(key: RingKey) -> Self {
        Self { keys: vec![key] }
    }

    /// Checks a ring read back from a file or the store.
    pub fn validate(&self) -> Result<(), RingError> {
        if self.keys.is_empty() {
            return Err(RingError::Empty);
        }
        if self.keys.len() > MAX_STORED_KEYS {
            return Err(RingError::TooMany(self.keys.len()));
        }
        let sane = |k: &RingKey| {
            !k.kid.is_empty()
                && k.kid.len() <= MAX_KID_LEN
                && !k.private_key_pem.is_empty()
                && k.private_key_pem.len() <= MAX_PEM_LEN
        };
        if !self.keys.iter().all(sane) {
            return Err(RingError::Oversized);
        }
        if self.keys.windows(2).any(|w| w[0].activate_at > w[1].activate_at) {
            return Err(RingError::OutOfOrder);
        }
        Ok(())
    }

    pub fn keys(&self) -> &[RingKey] {
        &self.keys
    }

    /// The key that signs at `now`: the newest one already activated (the oldest one if the
    /// clock went back before every activation).
    pub fn current(&self, now: u64) -> Option<&RingKey> {
        signing_at(&self.keys, |k| k.activate_at, now)
    }

    /// Where `key` is in its life at `now`.
    pub fn state(&self, key: &RingKey, now: u64) -> KeyState {
        if self.current(now).is_some_and(|c| c.kid == key.kid) {
            KeyState::Current
        } else if key.activate_at > now {
            KeyState::Next
        } else if key.retire_at.is_some_and(|r| now < r) {
            KeyState::Retiring
        } else {
            KeyState::Removed
        }
    }

    /// Keys the JWKS publishes at `now`: every key not yet removed.
    pub fn published(&self, now: u64) -> impl Iterator<Item = &RingKey> {
        self.keys
            .iter()
            .filter(move |k| self.state(k, now) != KeyState::Removed)
    }

    /// The next moment after `now` at which a key changes state, if any.
    pub fn next_change(&self, now: u64) -> Option<u64> {
        self.keys
            .iter()
            .flat_map(|k| [Some(k.activate_at), k.retire_at])
            .flatten()
            .filter(|t| *t > now)
            .min()
    }

    /// Drops removed keys; true when one was dropped.
    pub fn prune(&mut self, now: u64) -> bool {
        let removed: Vec<String> = self
            .keys
            .iter()
            .filter(|k| self.state(k, now) == KeyState::Removed)
            .map(|k| k.kid.clone())
            .collect();
        self.keys.retain(|k| !removed.contains(&k.kid));
        !removed.is_empty()
    }

    /// Adds `new` as the next key: published from now, signing after `publish_before` (or at
    /// once when `immediate`), the current key then published for `overlap` more. Removed
    /// keys are dropped first. Refused while another rotation is under way, or when the ring
    /// is full. Returns the added key.
    pub fn rotate(
        &mut self,
        kid: String,
        private_key_pem: String,
        now: u64,
        timing: RotationTiming,
        immediate: bool,
    ) -> Result<RingKey, RotateError> {
        self.prune(now);
        if let Some(pending) = self.keys.iter().find(|k| k.activate_at > now) {
            return Err(RotateError::UnderWay {
                kid: pending.kid.clone(),
                activate_at: pending.activate_at,
            });
        }
        if self.keys.iter().any(|k| k.kid == kid) {
            return Err(RotateError::DuplicateKid(kid));
        }
        if self.keys.len() >= MAX_KEYS {
            let retire_at = self.keys.iter().filter_map(|k| k.retire_at).min().unwrap_or(now);
            return Err(RotateError::Full { retire_at });
        }
        let activate_at = if immediate {
            now
        } else {
            now + timing.publish_before.as_secs()
        };
        let retire_at = activate_at + timing.overlap.as_secs();
        if let Some(index) = self.keys.iter().rposition(|k| k.activate_at <= now) {
            self.keys[index].retire_at = Some(retire_at);
        }
        let added = RingKey {
            kid,
            private_key_pem,
            created_at: now,
            activate_at,
            retire_at: None,
        };
        self.keys.push(added.clone());
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn timing() -> RotationTiming {
        RotationTiming {
            publish_before: Duration::from_secs(300),
            overlap: Duration::from_secs(600),
        }
    }

    fn ring() -> KeyRing {
        KeyRing::starting_with(RingKey::signing_from("a".into(), "pem-a".into(), T0))
    }

    fn states(ring: &KeyRing, now: u64) -> Vec<(String, KeyState)> {
        ring.keys()
            .iter()
            .map(|k| (k.kid.clone(), ring.state(k, now)))
            .collect()
    }

    fn s(kid: &str, state: KeyState) -> (String, KeyState) {
        (kid.to_string(), state)
    }

    #[test]
    fn a_rotation_publishes_first_then_signs_then_retires_the_old_key() {
        let mut ring = ring();
        let t = T0 + 1000;
        let added = ring.rotate("b".into(), "pem-b".into(), t, timing(), false).unwrap();
        assert_eq!(added.activate_at, t + 300);

        use KeyState::*;
        assert_eq!(states(&ring, t), vec![s("a", Current), s("b", Next)]);
        assert_eq!(ring.current(t).unwrap().kid, "a", "the new key does not sign yet");
        assert_eq!(ring.published(t).count(), 2, "but it is published at once");
        assert_eq!(ring.next_change(t), Some(t + 300));

        assert_eq!(states(&ring, t + 299), vec![s("a", Current), s("b", Next)]);
        assert_eq!(states(&ring, t + 300), vec![s("a", Retiring), s("b", Current)]);
        assert_eq!(ring.current(t + 300).unwrap().kid, "b");
        assert_eq!(ring.next_change(t + 300), Some(t + 900));
        assert_eq!(states(&ring, t + 899), vec![s("a", Retiring), s("b", Current)]);
        assert_eq!(states(&ring, t + 900), vec![s("a", Removed), s("b", Current)]);
        let published: Vec<_> = ring.published(t + 900).map(|k| k.kid.as_str()).collect();
        assert_eq!(published, ["b"], "the old key leaves the JWKS after the overlap");
        assert_eq!(ring.next_change(t + 900), None);

        assert!(ring.prune(t + 900));
        assert_eq!(ring.keys().len(), 1);
        assert!(!ring.prune(t + 900));
    }

    #[test]
    fn an_immediate_rotation_signs_with_the_new_key_at_once() {
        let mut ring = ring();
        let t = T0 + 10;
        ring.rotate("b".into(), "pem-b".into(), t, timing(), true).unwrap();
        use KeyState::*;
        assert_eq!(states(&ring, t), vec![s("a", Retiring), s("b", Current)]);
        assert_eq!(ring.keys()[0].retire_at, Some(t + 600));
        // Two rotations within the same second: the newest one signs.
        ring.rotate("c".into(), "pem-c".into(), t, timing(), true).unwrap();
        assert_eq!(ring.current(t).unwrap().kid, "c");
        assert_eq!(
            states(&ring, t),
            vec![s("a", Retiring), s("b", Retiring), s("c", Current)]
        );
    }

    #[test]
    fn a_second_rotation_waits_for_the_first_to_activate() {
        let mut ring = ring();
        ring.rotate("b".into(), "pem-b".into(), T0, timing(), false).unwrap();
        let refused = ring.rotate("c".into(), "pem-c".into(), T0 + 1, timing(), true);
        assert_eq!(
            refused.unwrap_err(),
            RotateError::UnderWay {
                kid: "b".into(),
                activate_at: T0 + 300
            }
        );
        assert_eq!(ring.keys().len(), 2, "nothing changed");
        ring.rotate("c".into(), "pem-c".into(), T0 + 300, timing(), false)
            .unwrap();
        assert_eq!(ring.current(T0 + 300).unwrap().kid, "b");
    }

    #[test]
    fn the_ring_is_bounded_and_frees_room_as_keys_retire() {
        let mut ring = ring();
        let t = T0 + 5;
        for kid in ["b", "c", "d"] {
            ring.rotate(kid.into(), format!("pem-{kid}"), t, timing(), true)
                .unwrap();
        }
        assert_eq!(ring.keys().len(), MAX_KEYS);
        assert_eq!(
            ring.rotate("e".into(), "pem-e".into(), t, timing(), true).unwrap_err(),
            RotateError::Full { retire_at: t + 600 }
        );
        // Once the retiring keys are past the overlap they are dropped and a rotation fits.
        ring.rotate("e".into(), "pem-e".into(), t + 600, timing(), true)
            .unwrap();
        let kids: Vec<_> = ring.keys().iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["d", "e"]);
    }

    #[test]
    fn a_kid_is_never_added_twice() {
        let mut ring = ring();
        assert_eq!(
            ring.rotate("a".into(), "pem".into(), T0, timing(), true).unwrap_err(),
            RotateError::DuplicateKid("a".into())
        );
    }

    #[test]
    fn the_oldest_key_signs_if_the_clock_goes_back() {
        let ring = ring();
        assert_eq!(ring.current(T0 - 100).unwrap().kid, "a");
        assert_eq!(ring.state(&ring.keys()[0], T0 - 100), KeyState::Current);
    }

    #[test]
    fn stored_rings_are_checked() {
        assert_eq!(KeyRing::default().validate(), Err(RingError::Empty));
        assert_eq!(ring().validate(), Ok(()));
        let mut damaged = ring();
        damaged.keys[0].kid = "k".repeat(MAX_KID_LEN + 1);
        assert_eq!(damaged.validate(), Err(RingError::Oversized));
        let mut many = ring();
        many.keys = (0..=MAX_STORED_KEYS)
            .map(|i| RingKey::signing_from(format!("k{i}"), "pem".into(), T0))
            .collect();
        assert_eq!(many.validate(), Err(RingError::TooMany(MAX_STORED_KEYS + 1)));
        let mut reordered = ring();
        reordered.rotate("b".into(), "pem".into(), T0, timing(), false).unwrap();
        reordered.keys.reverse();
        assert_eq!(reordered.validate(), Err(RingError::OutOfOrder));
    }

    #[test]
    fn debug_leaves_out_the_private_key() {
        let shown = format!("{:?}", ring());
        assert!(shown.contains("\"a\""));
        assert!(!shown.contains("pem-a"));
    }
}
