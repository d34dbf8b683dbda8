//! What `mxgate log` asks of the audit log: a time window (`--since`, `--until`: a duration
//! back from now like `24h`, or an RFC 3339 time), event names, a user (`provider:id`,
//! username or email) and a client id. Parsing the command line's words into a [`Query`] and
//! deciding whether a record matches; reading the files is [`super::reader`]'s.

use super::{AuditEvent, AuditRecord};

/// Which records to show. Empty lists and `None` match everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// Unix ms, inclusive.
    pub since_ms: Option<u64>,
    /// Unix ms, inclusive.
    pub until_ms: Option<u64>,
    pub events: Vec<AuditEvent>,
    pub user: Option<String>,
    pub client: Option<String>,
}

// === impl Query ===

impl Query {
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.since_ms.is_none_or(|since| record.time_ms >= since)
            && self.until_ms.is_none_or(|until| record.time_ms <= until)
            && (self.events.is_empty() || self.events.contains(&record.event))
            && self.user.as_deref().is_none_or(|u| is_user(record, u))
            && self
                .client
                .as_deref()
                .is_none_or(|c| record.client_id.as_deref() == Some(c))
    }
}

/// `user` is the record's `provider:id`, its username, or its email (any case).
fn is_user(record: &AuditRecord, user: &str) -> bool {
    record.user.as_deref() == Some(user)
        || record.username.as_deref() == Some(user)
        || record.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(user))
}

/// An event by its log name (`login_failed`); the error lists every known name.
pub fn parse_event(name: &str) -> Result<AuditEvent, String> {
    AuditEvent::ALL
        .into_iter()
        .find(|e| e.name() == name.trim())
        .ok_or_else(|| {
            let known: Vec<&str> = AuditEvent::ALL.iter().map(|e| e.name()).collect();
            format!("unknown event `{name}`; known events: {}", known.join(", "))
        })
}

/// A point in time as Unix ms, `now_ms` being now: a duration back from now (`24h`, `90m`,
/// `7d`), an RFC 3339 time (`2026-12-01T09:30:00Z`, `…+02:00`), or a date (`2026-12-01`,
/// midnight UTC).
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now_ms.saturating_sub(ago.as_millis() as u64));
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return u64::try_from(time.timestamp_millis()).map_err(|_| format!("`{text}` is before 1970"));
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = date.and_time(chrono::NaiveTime::MIN).and_utc();
        return u64::try_from(midnight.timestamp_millis()).map_err(|_| format!("`{text}` is before 1970"));
    }
    Err(format!(
        "`{text}` is neither a duration (24h, 30m, 7d) nor an RFC 3339 time (2026-12-01T09:30:00Z) or a date (2026-12-01)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::user::UserIdentity;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn since_takes_durations_times_with_offsets_and_dates() {
        assert_eq!(parse_time("24h", NOW), Ok(NOW - 86_400_000));
        assert_eq!(parse_time(" 90s ", NOW), Ok(NOW - 90_000));
        assert_eq!(parse_time("2026-12-01T09:30:00Z", NOW), Ok(1_796_117_400_000));
        assert_eq!(parse_time("2026-12-01T11:30:00.250+02:00", NOW), Ok(1_796_117_400_250));
        assert_eq!(parse_time("2026-12-01", NOW), Ok(1_796_083_200_000));
        assert_eq!(parse_time("1000000d", NOW), Ok(0), "far back is the beginning");
        for bad in ["yesterday", "24", "2026-13-01", "12:00", ""] {
            let e = parse_time(bad, NOW).unwrap_err();
            assert!(e.contains("neither a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_event_names_list_the_known_ones() {
        assert_eq!(parse_event("login_failed"), Ok(AuditEvent::LoginFailed));
        let e = parse_event("login").unwrap_err();
        assert!(
            e.contains("unknown event `login`") && e.contains("login_succeeded") && e.contains("signing_key_rotated")
        );
    }

    fn alice() -> AuditRecord {
        let user = UserIdentity {
            provider: "github".into(),
            user_id: "42".into(),
            username: "alice".into(),
            email: Some("Alice@Example.com".into()),
            ..UserIdentity::default()
        };
        let mut r = AuditRecord::new(AuditEvent::TokenIssued).user(&user).client_id("c1");
        r.time_ms = NOW;
        r
    }

    #[test]
    fn filters_combine_and_match_users_by_key_name_or_email() {
        let r = alice();
        assert!(Query::default().matches(&r));
        for user in ["github:42", "alice", "alice@example.com"] {
            let q = Query {
                user: Some(user.into()),
                ..Query::default()
            };
            assert!(q.matches(&r), "{user}");
        }
        for user in ["42", "github:4", "Alice", "bob"] {
            let q = Query {
                user: Some(user.into()),
                ..Query::default()
            };
            assert!(!q.matches(&r), "{user}");
        }
        let q = |since, until, events: &[AuditEvent], client: &str| Query {
            since_ms: since,
            until_ms: until,
            events: events.to_vec(),
            user: None,
            client: Some(client.into()),
        };
        assert!(q(
            Some(NOW),
            Some(NOW),
            &[AuditEvent::LoginFailed, AuditEvent::TokenIssued],
            "c1"
        )
        .matches(&r));
        assert!(!q(Some(NOW + 1), None, &[], "c1").matches(&r), "before since");
        assert!(!q(None, Some(NOW - 1), &[], "c1").matches(&r), "after until");
        assert!(
            !q(None, None, &[AuditEvent::LoginFailed], "c1").matches(&r),
            "other event"
        );
        assert!(!q(None, None, &[], "c2").matches(&r), "other client");
    }
}
