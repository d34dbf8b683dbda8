//! The audit trail: one record per authentication event (login, consent, client registration,
//! token issue/refresh/revoke, refresh-token reuse, logout, request denied, provider refresh
//! failed, configuration reloaded or refused, signing key rotated, back-channel logout).
//!
//! Code anywhere calls [`record`] with an [`AuditRecord`]; where the records go is set once at
//! start-up with [`install`] (the JSON-lines file of `audit:` in `mxgate.yml`). Before that, or
//! when auditing is off, records go to the `mxgate::audit` tracing target only. A record never
//! holds a token or a secret: it has no field that could.

pub mod file_sink;
mod log_files;
pub mod query;
pub mod reader;
mod rotating_file;
pub mod table;

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// What happened. The JSON name (`login_succeeded`, …) is what `mxgate log --event` matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    LoginSucceeded,
    LoginFailed,
    ConsentGiven,
    ConsentDenied,
    ClientRegistered,
    ClientExpired,
    TokenIssued,
    TokenRefreshed,
    TokenRevoked,
    RefreshTokenReuse,
    Logout,
    BackchannelLogout,
    RequestDenied,
    ProviderRefreshFailed,
    ConfigReloaded,
    ConfigRejected,
    SigningKeyRotated,
}

// === impl AuditEvent ===

impl AuditEvent {
    pub const ALL: [AuditEvent; 17] = [
        AuditEvent::LoginSucceeded,
        AuditEvent::LoginFailed,
        AuditEvent::ConsentGiven,
        AuditEvent::ConsentDenied,
        AuditEvent::ClientRegistered,
        AuditEvent::ClientExpired,
        AuditEvent::TokenIssued,
        AuditEvent::TokenRefreshed,
        AuditEvent::TokenRevoked,
        AuditEvent::RefreshTokenReuse,
        AuditEvent::Logout,
        AuditEvent::BackchannelLogout,
        AuditEvent::RequestDenied,
        AuditEvent::ProviderRefreshFailed,
        AuditEvent::ConfigReloaded,
        AuditEvent::ConfigRejected,
        AuditEvent::SigningKeyRotated,
    ];

    /// The name as written in the log (`login_succeeded`).
    pub fn name(self) -> &'static str {
        match self {
            AuditEvent::LoginSucceeded => "login_succeeded",
            AuditEvent::LoginFailed => "login_failed",
            AuditEvent::ConsentGiven => "consent_given",
            AuditEvent::ConsentDenied => "consent_denied",
            AuditEvent::ClientRegistered => "client_registered",
            AuditEvent::ClientExpired => "client_expired",
            AuditEvent::TokenIssued => "token_issued",
            AuditEvent::TokenRefreshed => "token_refreshed",
            AuditEvent::TokenRevoked => "token_revoked",
            AuditEvent::RefreshTokenReuse => "refresh_token_reuse",
            AuditEvent::Logout => "logout",
            AuditEvent::BackchannelLogout => "backchannel_logout",
            AuditEvent::RequestDenied => "request_denied",
            AuditEvent::ProviderRefreshFailed => "provider_refresh_failed",
            AuditEvent::ConfigReloaded => "config_reloaded",
            AuditEvent::ConfigRejected => "config_rejected",
            AuditEvent::SigningKeyRotated => "signing_key_rotated",
        }
    }
}

/// One audit record. Optional fields are left out of the JSON line when unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    pub event: AuditEvent,
    /// `provider:user id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Why (a refusal's reason, a policy's `reason`, an error class). Never a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The request, for `request_denied`: `METHOD /path` and, for MCP, the JSON-RPC method and tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// The longest a free-text field (`reason`, `request`) may be in a record; longer text is cut.
pub const MAX_TEXT_FIELD: usize = 512;

// === impl AuditRecord ===

impl AuditRecord {
    pub fn new(event: AuditEvent) -> Self {
        Self {
            time_ms: crate::support::now_ms(),
            event,
            user: None,
            username: None,
            provider: None,
            email: None,
            client_id: None,
            client_addr: None,
            session_id: None,
            reason: None,
            request: None,
        }
    }

    /// Who: provider, user id, username and email of `user`.
    pub fn user(mut self, user: &crate::identity::user::UserIdentity) -> Self {
        self.user = Some(user.key());
        self.username = Some(user.username.clone());
        self.provider = Some(user.provider.clone());
        self.email = user.email.clone();
        self
    }

    /// [`Self::user`] when the user is known.
    pub fn user_if_known(self, user: Option<&crate::identity::user::UserIdentity>) -> Self {
        match user {
            Some(user) => self.user(user),
            None => self,
        }
    }

    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn client_addr(mut self, addr: Option<IpAddr>) -> Self {
        self.client_addr = addr;
        self
    }

    pub fn session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// Who, when only `provider:user id` is known (a back-channel logout naming a `sub`).
    pub fn user_key(mut self, key: impl Into<String>) -> Self {
        self.user = Some(key.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(cut(reason.into()));
        self
    }

    pub fn request(mut self, request: impl Into<String>) -> Self {
        self.request = Some(cut(request.into()));
        self
    }
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_FIELD {
        let mut end = MAX_TEXT_FIELD;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Where records go once installed.
pub trait AuditSink: Send + Sync {
    fn write(&self, record: &AuditRecord);
}

static SINK: OnceLock<Arc<dyn AuditSink>> = OnceLock::new();

/// Sets where records go, once per process; a second call is ignored (returns false).
pub fn install(sink: Arc<dyn AuditSink>) -> bool {
    SINK.set(sink).is_ok()
}

/// Records one event: to the installed sink, and always as a `mxgate::audit` trace line.
pub fn record(record: AuditRecord) {
    tracing::info!(
        target: "mxgate::audit",
        event = record.event.name(),
        user = record.user.as_deref().unwrap_or(""),
        client_id = record.client_id.as_deref().unwrap_or(""),
        reason = record.reason.as_deref().unwrap_or(""),
        "audit"
    );
    if let Some(sink) = SINK.get() {
        sink.write(&record);
    }
}

/// For tests anywhere in the crate: every record of this process, captured by a sink that is
/// installed on first use (tests run in parallel, so each picks its own records, by client id).
#[cfg(test)]
pub(crate) mod captured {
    use super::{AuditRecord, AuditSink};
    use std::sync::{Arc, Mutex};

    static RECORDS: Mutex<Vec<AuditRecord>> = Mutex::new(Vec::new());

    struct Capture;

    impl AuditSink for Capture {
        fn write(&self, record: &AuditRecord) {
            RECORDS.lock().unwrap().push(record.clone());
        }
    }

    /// Starts capturing (call before the records of interest are made).
    pub fn start() {
        super::install(Arc::new(Capture));
    }

    /// The captured records of `client_id`, in the order they were made.
    pub fn of_client(client_id: &str) -> Vec<AuditRecord> {
        let records = RECORDS.lock().unwrap();
        records
            .iter()
            .filter(|r| r.client_id.as_deref() == Some(client_id))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_json_leaves_out_unknown_fields_and_names_the_event() {
        let line = serde_json::to_string(&AuditRecord::new(AuditEvent::RefreshTokenReuse).client_id("c1")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "refresh_token_reuse");
        assert_eq!(value["client_id"], "c1");
        assert!(value.get("user").is_none() && value.get("reason").is_none());
    }

    #[test]
    fn every_event_name_matches_its_json_name() {
        for event in AuditEvent::ALL {
            assert_eq!(serde_json::to_value(event).unwrap(), event.name());
        }
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let record = AuditRecord::new(AuditEvent::LoginFailed).reason("é".repeat(400));
        let reason = record.reason.unwrap();
        assert!(reason.len() <= MAX_TEXT_FIELD && reason.chars().all(|c| c == 'é'));
    }
}
