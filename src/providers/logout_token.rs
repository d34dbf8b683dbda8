//! The rules of an OpenID Connect Back-Channel Logout 1.0 logout token (§2.4, validated as §2.6
//! says) beyond its signature, `iss`, `aud` and `exp`, which [`super::id_token`] checks: `iat`
//! present and recent, the back-channel logout event in `events`, `sub` and/or `sid`, no `nonce`
//! (so an ID token cannot pass for a logout token), a `jti` for replay detection. Every claim
//! kept is size-bounded. Pure: the caller remembers `jti`s and ends the sessions.

use super::id_token::LEEWAY_SECS;
use serde_json::Value;

/// The member of `events` that makes a JWT a logout token.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How old (by `iat`) a logout token may be. The spec leaves the window to the RP; the IdP sends
/// the token as soon as the user logs out.
pub const MAX_AGE_SECS: u64 = 300;

/// The longest `sub`, `sid` or `jti` accepted (they are stored as index keys).
pub const MAX_CLAIM_LEN: usize = 255;

/// The largest logout token read (compact JWS; real ones are under 2 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// What a verified logout token says: whose sessions end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// The user at the provider (`sub`), when given.
    pub subject: Option<String>,
    /// The provider's session (`sid`), when given.
    pub session: Option<String>,
    /// The token's id, remembered until [`Self::replay_window_end`] so it is used once.
    pub jti: String,
    pub issued_at: u64,
}

// === impl LogoutToken ===

impl LogoutToken {
    /// Checks the logout-specific claims of a token whose signature and `iss`/`aud`/`exp`
    /// verified; the error says which rule failed.
    pub fn from_claims(claims: &Value, now: u64) -> Result<Self, String> {
        let Value::Object(claims) = claims else {
            return Err("the claims are not a JSON object".into());
        };
        let issued_at = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or("`iat` is missing or not a number")?;
        if issued_at > now + LEEWAY_SECS {
            return Err("`iat` is in the future".into());
        }
        if issued_at + MAX_AGE_SECS + LEEWAY_SECS < now {
            return Err(format!("the token is older than {MAX_AGE_SECS} s (`iat`)"));
        }
        match claims.get("events").and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT)) {
            Some(Value::Object(_)) => {}
            Some(_) => return Err(format!("`events.{BACKCHANNEL_LOGOUT_EVENT}` is not a JSON object")),
            None => return Err(format!("`events` has no `{BACKCHANNEL_LOGOUT_EVENT}` member")),
        }
        if claims.contains_key("nonce") {
            return Err("a logout token must not have a `nonce`".into());
        }
        let subject = bounded_text(claims.get("sub"), "sub")?;
        let session = bounded_text(claims.get("sid"), "sid")?;
        if subject.is_none() && session.is_none() {
            return Err("neither `sub` nor `sid` is present".into());
        }
        let jti = bounded_text(claims.get("jti"), "jti")?.ok_or("`jti` is missing")?;
        Ok(Self {
            subject,
            session,
            jti,
            issued_at,
        })
    }

    /// Until when the `jti` must be remembered: a token issued earlier is refused by age anyway.
    pub fn replay_window_end(&self) -> u64 {
        self.issued_at + MAX_AGE_SECS + 2 * LEEWAY_SECS
    }
}

/// A non-empty string claim of at most [`MAX_CLAIM_LEN`] bytes, or `None` when absent.
fn bounded_text(value: Option<&Value>, name: &str) -> Result<Option<String>, String> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(format!("`{name}` is empty")),
        Some(Value::String(s)) if s.len() > MAX_CLAIM_LEN => {
            Err(format!("`{name}` is longer than {MAX_CLAIM_LEN} bytes"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn claims() -> Value {
        json!({"iss": "https://idp", "aud": "mxgate", "iat": NOW - 5, "jti": "j-1",
               "sub": "alice", "sid": "s-1", "events": {BACKCHANNEL_LOGOUT_EVENT: {}}})
    }

    fn with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Result<LogoutToken, String> {
        let mut c = claims();
        change(c.as_object_mut().unwrap());
        LogoutToken::from_claims(&c, NOW)
    }

    #[test]
    fn a_well_formed_logout_token_names_the_user_and_the_session() {
        let token = LogoutToken::from_claims(&claims(), NOW).unwrap();
        assert_eq!(token.subject.as_deref(), Some("alice"));
        assert_eq!(token.session.as_deref(), Some("s-1"));
        assert_eq!(token.jti, "j-1");
        assert!(token.replay_window_end() > NOW + MAX_AGE_SECS - 5);
        let only_sid = with(|c| {
            c.remove("sub");
        })
        .unwrap();
        assert_eq!((only_sid.subject, only_sid.session.as_deref()), (None, Some("s-1")));
    }

    #[test]
    fn a_nonce_makes_it_an_id_token_not_a_logout_token() {
        let err = with(|c| {
            c.insert("nonce".into(), json!("n"));
        })
        .unwrap_err();
        assert!(err.contains("nonce"), "{err}");
    }

    #[test]
    fn the_logout_event_must_be_there_as_an_object() {
        let err = with(|c| {
            c.remove("events");
        })
        .unwrap_err();
        assert!(err.contains("events"), "{err}");
        let err = with(|c| {
            c.insert("events".into(), json!({BACKCHANNEL_LOGOUT_EVENT: "yes"}));
        })
        .unwrap_err();
        assert!(err.contains("not a JSON object"), "{err}");
        let err = with(|c| {
            c.insert("events".into(), json!({"http://other/event": {}}));
        })
        .unwrap_err();
        assert!(err.contains("no `http://schemas.openid.net"), "{err}");
    }

    #[test]
    fn without_sub_and_sid_nothing_says_whose_sessions_end() {
        let err = with(|c| {
            c.remove("sub");
            c.remove("sid");
        })
        .unwrap_err();
        assert!(err.contains("neither `sub` nor `sid`"), "{err}");
    }

    #[test]
    fn iat_must_be_present_and_recent_and_jti_present() {
        for (claim, value, expected) in [
            ("iat", None, "`iat` is missing"),
            ("iat", Some(json!(NOW - MAX_AGE_SECS - LEEWAY_SECS - 1)), "older than"),
            ("iat", Some(json!(NOW + LEEWAY_SECS + 1)), "in the future"),
            ("iat", Some(json!("yesterday")), "not a number"),
            ("jti", None, "`jti` is missing"),
            ("sid", Some(json!(7)), "`sid` is not a string"),
            ("sub", Some(json!("")), "`sub` is empty"),
        ] {
            let err = with(|c| match value {
                Some(v) => {
                    c.insert(claim.into(), v);
                }
                None => {
                    c.remove(claim);
                }
            })
            .unwrap_err();
            assert!(err.contains(expected), "{claim}: {err}");
        }
    }

    #[test]
    fn oversized_claims_are_refused() {
        let err = with(|c| {
            c.insert("sid".into(), json!("s".repeat(MAX_CLAIM_LEN + 1)));
        })
        .unwrap_err();
        assert!(err.contains("longer than"), "{err}");
    }
}
