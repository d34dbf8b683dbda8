//! How `mxgate log` shows a record to a person: one aligned row per record — the time in
//! RFC 3339 UTC, the event, who (username, else `provider:id`), the client id, the client's
//! address and the reason. Columns have fixed widths so that `--follow` lines up with what came
//! before; a longer value widens its row rather than being cut. Control characters never reach
//! the terminal.

use super::AuditRecord;
use std::time::{Duration, UNIX_EPOCH};

/// The column titles, as a row.
pub fn header() -> String {
    row(["TIME", "EVENT", "USER", "CLIENT", "ADDRESS", "REASON"])
}

/// One record as a row.
pub fn format(record: &AuditRecord) -> String {
    let time = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(record.time_ms)).to_string();
    let user = record.username.as_deref().or(record.user.as_deref()).unwrap_or("-");
    let address = record.client_addr.map(|a| a.to_string());
    let mut reason = record.reason.clone().unwrap_or_default();
    if let Some(request) = &record.request {
        reason = if reason.is_empty() {
            request.clone()
        } else {
            format!("{reason} ({request})")
        };
    }
    row([
        &time,
        record.event.name(),
        user,
        record.client_id.as_deref().unwrap_or("-"),
        address.as_deref().unwrap_or("-"),
        if reason.is_empty() { "-" } else { &reason },
    ])
}

fn row(columns: [&str; 6]) -> String {
    let [time, event, user, client, address, reason] = columns.map(printable);
    format!("{time:<20}  {event:<23}  {user:<24}  {client:<38}  {address:<15}  {reason}")
        .trim_end()
        .to_string()
}

/// Text a client or provider chose (a client name, an IdP's error) as it may reach a terminal:
/// one line, and no control character (an escape sequence could rewrite what the reader sees).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;

    #[test]
    fn rows_line_up_under_the_header_and_show_unknowns_as_dashes() {
        let mut r = AuditRecord::new(AuditEvent::LoginFailed)
            .client_id("mxc_abc")
            .client_addr(Some("203.0.113.7".parse().unwrap()))
            .reason("state mismatch\nsecond line");
        r.time_ms = 1_796_117_400_250;
        r.username = Some("alice".into());
        let line = format(&r);
        assert!(line.starts_with("2026-12-01T09:30:00Z  login_failed "), "{line}");
        assert!(line.ends_with("203.0.113.7      state mismatch second line"), "{line}");
        let head = header();
        for (title, value) in [
            ("EVENT", "login_failed"),
            ("USER", "alice"),
            ("CLIENT", "mxc_abc"),
            ("ADDRESS", "203.0.113.7"),
        ] {
            assert_eq!(head.find(title), line.find(value), "{title} column");
        }
        let mut hostile =
            AuditRecord::new(AuditEvent::ClientRegistered).reason("client_name: \u{1b}[2J\u{1b}]0;pwned\u{7}x");
        hostile.time_ms = 0;
        hostile.client_id = Some("c\u{1b}[1m".into());
        let shown = format(&hostile);
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(
            shown.ends_with("client_name: \u{fffd}[2J\u{fffd}]0;pwned\u{fffd}x"),
            "{shown:?}"
        );
        let mut bare = AuditRecord::new(AuditEvent::ClientExpired);
        bare.time_ms = 0;
        assert_eq!(
            format(&bare).split_whitespace().collect::<Vec<_>>(),
            ["1970-01-01T00:00:00Z", "client_expired", "-", "-", "-", "-"]
        );
    }
}
