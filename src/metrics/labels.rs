//! The label values of mxgate's metrics: small closed enums, so every series exists from
//! start-up and no request can add one (never a user, client id, path or address).

/// What a request was for, as `mxgate_requests_total{route}` counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteClass {
    /// Bound for the core (MCP): proxied, or refused on the way.
    Mcp,
    /// An OAuth endpoint: register, authorize, consent, callback, token, revoke.
    OAuth,
    /// Discovery documents and JWKS under `/.well-known/`.
    WellKnown,
    /// A person's browser sign-in and sign-out (`/login`, `/logout`).
    Login,
    /// A proxy's forward-auth check.
    ForwardAuth,
    /// `/healthz`, `/readyz`.
    Health,
    /// Anything else (a CORS preflight, a request refused before it was routed).
    #[default]
    Other,
}

impl RouteClass {
    pub const ALL: [RouteClass; 7] = [
        RouteClass::Mcp,
        RouteClass::OAuth,
        RouteClass::WellKnown,
        RouteClass::Login,
        RouteClass::ForwardAuth,
        RouteClass::Health,
        RouteClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Mcp => "mcp",
            RouteClass::OAuth => "oauth",
            RouteClass::WellKnown => "well_known",
            RouteClass::Login => "login",
            RouteClass::ForwardAuth => "forward_auth",
            RouteClass::Health => "health",
            RouteClass::Other => "other",
        }
    }
}

/// The status codes counted by their own label; any other is counted by its class (`2xx`…),
/// and a request that got no response (the client went away) as `none`.
pub const STATUS_CODES: [u16; 24] = [
    200, 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 415, 421, 429, 500, 502, 503,
    504,
];

const STATUS_NAMES: [&str; 24] = [
    "200", "201", "202", "204", "301", "302", "303", "304", "307", "308", "400", "401", "403", "404", "405", "408",
    "413", "415", "421", "429", "500", "502", "503", "504",
];

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// How many `status` label values there are.
pub const STATUS_LABELS: usize = STATUS_CODES.len() + STATUS_CLASSES.len();

/// The `status` label value at `index` (`0..STATUS_LABELS`).
pub fn status_label(index: usize) -> &'static str {
    STATUS_NAMES
        .get(index)
        .or_else(|| STATUS_CLASSES.get(index - STATUS_NAMES.len()))
        .copied()
        .unwrap_or("none")
}

/// The index of `status`'s label (0: no response written).
pub fn status_index(status: u16) -> usize {
    if let Ok(i) = STATUS_CODES.binary_search(&status) {
        return i;
    }
    let class = match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    };
    STATUS_CODES.len() + class
}

/// What admission decided about a request for the core, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthReason {
    /// Admitted.
    Ok,
    /// No bearer token and no browser session.
    MissingToken,
    /// A token that is unknown, revoked, of the wrong kind, or of an ended session.
    InvalidToken,
    /// An access token past its expiry.
    Expired,
    /// The sign-in at the identity provider ended (its refresh was refused).
    SessionEnded,
    /// A valid token without every required scope.
    InsufficientScope,
    /// An MCP session id this user may not use.
    UnknownMcpSession,
    /// Refused by an admission policy.
    PolicyDenied,
    /// Refused by a request-rate limit.
    RateLimited,
    /// The store could not be read.
    StoreUnavailable,
    /// The assertion for the core could not be signed.
    AssertionFailed,
}

impl AuthReason {
    pub const ALL: [AuthReason; 11] = [
        AuthReason::Ok,
        AuthReason::MissingToken,
        AuthReason::InvalidToken,
        AuthReason::Expired,
        AuthReason::SessionEnded,
        AuthReason::InsufficientScope,
        AuthReason::UnknownMcpSession,
        AuthReason::PolicyDenied,
        AuthReason::RateLimited,
        AuthReason::StoreUnavailable,
        AuthReason::AssertionFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthReason::Ok => "ok",
            AuthReason::MissingToken => "missing_token",
            AuthReason::InvalidToken => "invalid_token",
            AuthReason::Expired => "expired",
            AuthReason::SessionEnded => "session_ended",
            AuthReason::InsufficientScope => "insufficient_scope",
            AuthReason::UnknownMcpSession => "unknown_mcp_session",
            AuthReason::PolicyDenied => "policy_denied",
            AuthReason::RateLimited => "rate_limited",
            AuthReason::StoreUnavailable => "store_unavailable",
            AuthReason::AssertionFailed => "assertion_failed",
        }
    }

    /// `ok`, `denied` (the client's request), or `error` (mxgate could not decide).
    pub fn outcome(self) -> &'static str {
        match self {
            AuthReason::Ok => "ok",
            AuthReason::StoreUnavailable | AuthReason::AssertionFailed => "error",
            _ => "denied",
        }
    }
}

/// How a sign-in at an identity provider ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginResult {
    Ok,
    /// The person or the provider said no (`access_denied`, a rejected code, another account).
    Denied,
    /// The provider failed or could not be reached, or the session could not be stored.
    Failed,
}

impl LoginResult {
    pub const ALL: [LoginResult; 3] = [LoginResult::Ok, LoginResult::Denied, LoginResult::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            LoginResult::Ok => "ok",
            LoginResult::Denied => "denied",
            LoginResult::Failed => "failed",
        }
    }
}

/// How a refresh of a session's provider tokens ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshResult {
    Ok,
    /// The provider refused: the session ends.
    Rejected,
    /// The provider failed or could not be reached: the current token is kept.
    Failed,
}

impl RefreshResult {
    pub const ALL: [RefreshResult; 3] = [RefreshResult::Ok, RefreshResult::Rejected, RefreshResult::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RefreshResult::Ok => "ok",
            RefreshResult::Rejected => "rejected",
            RefreshResult::Failed => "failed",
        }
    }
}

/// One kind of store operation (`mxgate_store_duration_seconds{op}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Get,
    Put,
    /// Several records written together (a new session and its index entries; a token pair).
    PutAll,
    InsertNew,
    Delete,
    Take,
    Replace,
    CompareAndSwap,
    Count,
    ListPrefix,
    Purge,
    Publish,
}

impl StoreOp {
    pub const ALL: [StoreOp; 12] = [
        StoreOp::Get,
        StoreOp::Put,
        StoreOp::PutAll,
        StoreOp::InsertNew,
        StoreOp::Delete,
        StoreOp::Take,
        StoreOp::Replace,
        StoreOp::CompareAndSwap,
        StoreOp::Count,
        StoreOp::ListPrefix,
        StoreOp::Purge,
        StoreOp::Publish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Put => "put",
            StoreOp::PutAll => "put_all",
            StoreOp::InsertNew => "insert_new",
            StoreOp::Delete => "delete",
            StoreOp::Take => "take",
            StoreOp::Replace => "replace",
            StoreOp::CompareAndSwap => "compare_and_swap",
            StoreOp::Count => "count",
            StoreOp::ListPrefix => "list_prefix",
            StoreOp::Purge => "purge",
            StoreOp::Publish => "publish",
        }
    }
}

/// What a revocation ended (`mxgate_tokens_revoked_total{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// One access token; its session goes on.
    AccessToken,
    /// A session, and with it every token of it.
    Session,
}

impl Revoked {
    pub const ALL: [Revoked; 2] = [Revoked::AccessToken, Revoked::Session];

    pub fn as_str(self) -> &'static str {
        match self {
            Revoked::AccessToken => "access_token",
            Revoked::Session => "session",
        }
    }
}
