//! Prometheus metrics: the one registry and every metric handle, created at start-up with every
//! label combination they will ever have (closed enums; the provider names of the
//! configuration), so recording is an atomic add on a handle held here — no lock, no
//! allocation, no label lookup on the request path. Code anywhere records through
//! [`metrics()`]; the gateway serves [`Metrics::scrape`] at `GET /metrics` on the admin listener
//! (`admin_listen`), never on the public port.
//!
//! Labels never carry a user, a client id, a path or an address: a request must not be able to
//! add a series.

mod histogram;
mod labels;

pub use histogram::DurationHistogram;
pub use labels::{status_index, AuthReason, LoginResult, RefreshResult, Revoked, RouteClass, StoreOp};

use crate::rate_limit::{Endpoint, LimitScope};
use arc_swap::ArcSwap;
use labels::{status_label, STATUS_LABELS};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The `Content-Type` of `/metrics` (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Prefix of every metric name.
const PREFIX: &str = "mxgate";

/// The `provider` label of an event whose provider is not one of the configuration's.
const OTHER_PROVIDER: &str = "other";

/// Provider names counted by their own label at most (the rest are `other`).
const MAX_PROVIDERS: usize = 32;

/// How long a scrape waits for the store to count the sessions.
const SESSION_COUNT_TIMEOUT: Duration = Duration::from_secs(2);

type Labels<const N: usize> = [(&'static str, &'static str); N];

/// The labels of the per-provider counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
    result: &'static str,
}

/// The resolved per-provider handles of one provider name.
struct ProviderRow {
    name: String,
    logins: [Counter; LoginResult::ALL.len()],
    refreshes: [Counter; RefreshResult::ALL.len()],
}

/// Every metric mxgate exports.
pub struct Metrics {
    registry: Registry,
    /// `route × status`, flat: `route as usize * STATUS_LABELS + status_index`.
    requests: Vec<Counter>,
    authentications: [Counter; AuthReason::ALL.len()],
    logins: Family<ProviderLabels, Counter>,
    provider_refreshes: Family<ProviderLabels, Counter>,
    /// The configuration's providers, then `other` (swapped whole at start-up).
    providers: ArcSwap<Vec<ProviderRow>>,
    active_sessions: Gauge,
    upstream_duration: DurationHistogram,
    store_duration: [DurationHistogram; StoreOp::ALL.len()],
    /// `[endpoint][scope]`.
    rate_limited: [[Counter; 2]; Endpoint::ALL.len()],
    assertions_minted: Counter,
    /// `[hit, miss]`.
    token_cache_lookups: [Counter; 2],
    token_cache_entries: Gauge,
    token_cache_bytes: Gauge,
    tokens_issued: Counter,
    tokens_refreshed: Counter,
    tokens_revoked: [Counter; Revoked::ALL.len()],
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// A counter of `family` for `labels`, created now (so it is exported from start-up, at 0).
fn resolved<const N: usize>(family: &Family<Labels<N>, Counter>, labels: Labels<N>) -> Counter {
    family.get_or_create_owned(&labels)
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);

        let requests_family = Family::<Labels<2>, Counter>::default();
        let requests = RouteClass::ALL
            .iter()
            .flat_map(|route| (0..STATUS_LABELS).map(move |status| (*route, status)))
            .map(|(route, status)| {
                resolved(
                    &requests_family,
                    [("route", route.as_str()), ("status", status_label(status))],
                )
            })
            .collect();
        registry.register(
            "requests",
            "Requests answered, by route class and status code (or class: 2xx, …; none: no answer)",
            requests_family,
        );

        let auth_family = Family::<Labels<2>, Counter>::default();
        let authentications = AuthReason::ALL.map(|reason| {
            resolved(
                &auth_family,
                [("outcome", reason.outcome()), ("reason", reason.as_str())],
            )
        });
        registry.register(
            "authentications",
            "Admission decisions on requests for the core (and forward-auth checks), by outcome and reason",
            auth_family,
        );

        let logins = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "logins",
            "Sign-ins at an identity provider, by provider and result",
            logins.clone(),
        );
        let provider_refreshes = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "provider_refreshes",
            "Refreshes of a session's provider tokens, by provider and result",
            provider_refreshes.clone(),
        );

        let active_sessions = Gauge::default();
        registry.register(
            "active_sessions",
            "Sessions in the store, counted at scrape time (the embedded store also counts expired ones until its next purge)",
            active_sessions.clone(),
        );

        let upstream_duration = DurationHistogram::new(histogram::UPSTREAM_BUCKETS);
        registry.register_with_unit(
            "upstream_duration",
            "Time from sending a request to the core to its response head",
            Unit::Seconds,
            upstream_duration.clone(),
        );

        let store_family = Family::<Labels<1>, DurationHistogram>::new_with_constructor(|| {
            DurationHistogram::new(histogram::STORE_BUCKETS)
        });
        let store_duration = StoreOp::ALL.map(|op| store_family.get_or_create_owned(&[("op", op.as_str())]));
        registry.register_with_unit(
            "store_duration",
            "Time of one store operation, by operation",
            Unit::Seconds,
            store_family,
        );

        let limited_family = Family::<[(&'static str, String); 1], Counter>::default();
        let limit = |endpoint: Endpoint, scope: &str| {
            limited_family.get_or_create_owned(&[("limit", format!("{}_{scope}", endpoint.name()))])
        };
        let rate_limited = Endpoint::ALL.map(|endpoint| {
            let address = limit(endpoint, "per_address");
            // An endpoint without a per-client limit never refuses per client: no series.
            let client = if endpoint.limited_per_client() {
                limit(endpoint, "per_client")
            } else {
                Counter::default()
            };
            [address, client]
        });
        registry.register(
            "rate_limited",
            "Requests refused for going over a rate limit, by limit (endpoint and per_address or per_client)",
            limited_family,
        );

        let assertions_minted = Counter::default();
        registry.register(
            "assertions_minted",
            "User assertions signed for the core (cached per session in between)",
            assertions_minted.clone(),
        );
        let lookups_family = Family::<Labels<1>, Counter>::default();
        let token_cache_lookups = ["hit", "miss"].map(|result| resolved(&lookups_family, [("result", result)]));
        registry.register(
            "token_cache_lookups",
            "Bearer tokens looked up in the request-path cache, by result (a miss reads the store and mints an assertion)",
            lookups_family,
        );
        let token_cache_entries = Gauge::default();
        registry.register(
            "token_cache_entries",
            "Access tokens in the request-path cache",
            token_cache_entries.clone(),
        );
        let token_cache_bytes = Gauge::default();
        registry.register_with_unit(
            "token_cache",
            "Memory the request-path cache counts against limits.token_cache_memory (approximate)",
            Unit::Bytes,
            token_cache_bytes.clone(),
        );
        let tokens_issued = Counter::default();
        registry.register(
            "tokens_issued",
            "Access tokens issued for an authorization code",
            tokens_issued.clone(),
        );
        let tokens_refreshed = Counter::default();
        registry.register(
            "tokens_refreshed",
            "Access tokens issued for a refresh token",
            tokens_refreshed.clone(),
        );
        let revoked_family = Family::<Labels<1>, Counter>::default();
        let tokens_revoked = Revoked::ALL.map(|kind| resolved(&revoked_family, [("kind", kind.as_str())]));
        registry.register(
            "tokens_revoked",
            "Revocations, by what they ended: one access token, or a session with all its tokens",
            revoked_family,
        );

        let build_info = Family::<Labels<1>, Gauge>::default();
        build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register("build_info", "The running mxgate's version (always 1)", build_info);

        let metrics = Self {
            registry,
            requests,
            authentications,
            providers: ArcSwap::from_pointee(Vec::new()),
            logins,
            provider_refreshes,
            active_sessions,
            upstream_duration,
            store_duration,
            rate_limited,
            assertions_minted,
            token_cache_lookups,
            token_cache_entries,
            token_cache_bytes,
            tokens_issued,
            tokens_refreshed,
            tokens_revoked,
        };
        metrics.register_providers(std::iter::empty::<&str>());
        metrics
    }

    /// Creates the per-provider series of the configuration's providers (at start-up). Events
    /// of any other provider name are counted as `other`.
    pub fn register_providers<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut rows: Vec<ProviderRow> = Vec::new();
        for name in names.into_iter().chain([OTHER_PROVIDER]) {
            if rows.iter().any(|r| r.name == name) || (rows.len() >= MAX_PROVIDERS && name != OTHER_PROVIDER) {
                continue;
            }
            let labels = |result| ProviderLabels {
                provider: name.to_string(),
                result,
            };
            rows.push(ProviderRow {
                name: name.to_string(),
                logins: LoginResult::ALL.map(|r| self.logins.get_or_create_owned(&labels(r.as_str()))),
                refreshes: RefreshResult::ALL.map(|r| self.provider_refreshes.get_or_create_owned(&labels(r.as_str()))),
            });
        }
        self.providers.store(Arc::new(rows));
    }

    /// Runs `f` on the row of `provider` (or `other`).
    fn with_provider(&self, provider: &str, f: impl FnOnce(&ProviderRow)) {
        let rows = self.providers.load();
        let row = rows
            .iter()
            .find(|r| r.name == provider)
            .or_else(|| rows.iter().find(|r| r.name == OTHER_PROVIDER));
        if let Some(row) = row {
            f(row);
        }
    }

    /// One answered request.
    pub fn request(&self, route: RouteClass, status: u16) {
        let index = route as usize * STATUS_LABELS + status_index(status);
        if let Some(counter) = self.requests.get(index) {
            counter.inc();
        }
    }

    /// One admission decision.
    pub fn authentication(&self, reason: AuthReason) {
        self.authentications[reason as usize].inc();
    }

    pub fn login(&self, provider: &str, result: LoginResult) {
        self.with_provider(provider, |row| {
            row.logins[result as usize].inc();
        });
    }

    pub fn provider_refresh(&self, provider: &str, result: RefreshResult) {
        self.with_provider(provider, |row| {
            row.refreshes[result as usize].inc();
        });
    }

    /// The refreshes counted for `provider` (or `other`) with `result`.
    #[cfg(test)]
    pub fn provider_refreshes(&self, provider: &str, result: RefreshResult) -> u64 {
        let mut count = 0;
        self.with_provider(provider, |row| count = row.refreshes[result as usize].get());
        count
    }

    pub fn upstream_duration(&self, elapsed: Duration) {
        self.upstream_duration.observe(elapsed);
    }

    pub fn store_duration(&self, op: StoreOp, elapsed: Duration) {
        self.store_duration[op as usize].observe(elapsed);
    }

    pub fn rate_limited(&self, endpoint: Endpoint, scope: LimitScope) {
        self.rate_limited[endpoint as usize][scope as usize].inc();
    }

    pub fn assertion_minted(&self) {
        self.assertions_minted.inc();
    }

    /// A bearer token looked up in the request-path cache: found there or not.
    pub fn token_cache_lookup(&self, hit: bool) {
        self.token_cache_lookups[usize::from(!hit)].inc();
    }

    /// The request-path cache's size now.
    pub fn set_token_cache(&self, entries: usize, bytes: usize) {
        self.token_cache_entries.set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.token_cache_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    pub fn token_refreshed(&self) {
        self.tokens_refreshed.inc();
    }

    pub fn revoked(&self, kind: Revoked) {
        self.tokens_revoked[kind as usize].inc();
    }

    pub fn set_active_sessions(&self, count: u64) {
        self.active_sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Every metric in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
    }

    /// What `/metrics` answers: the session count read now from `store` (one bounded query:
    /// a table length on redb, one `ZCOUNT` on Redis — never a scan of keys), then every metric.
    pub async fn scrape(&self, store: Option<&crate::store::Store>) -> String {
        if let Some(store) = store {
            let count = store.kv().stored_entries(crate::store::Table::Sessions);
            match tokio::time::timeout(SESSION_COUNT_TIMEOUT, count).await {
                Ok(Ok(count)) => self.set_active_sessions(count),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot count the sessions for /metrics"),
                Err(_) => tracing::warn!("counting the sessions for /metrics timed out"),
            }
        }
        self.encode()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests;
