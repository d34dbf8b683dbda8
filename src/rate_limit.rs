//! Request rates to the OAuth endpoints: per client address and per OAuth client, per minute
//! (`rate_limits` in mxgate.yml). Counting uses Pingora's `pingora-limits` estimator — a
//! fixed-size count-min sketch, so the table cannot be grown by a flood of distinct keys — over
//! a sliding minute (the previous minute's count weighted by how much of it still overlaps).
//! Only admitted requests count, so a client that keeps going over its limit still gets its
//! share each minute.
//! A refused request gets `429` with `Retry-After` and an OAuth JSON error (built where every
//! OAuth error is: `oauth::error`). No Pingora here.

use crate::config::limits::RateLimits;
use pingora_limits::rate::Rate;
use std::net::IpAddr;
use std::time::Duration;

const WINDOW: Duration = Duration::from_secs(60);

/// The endpoints with their own limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Register,
    Authorize,
    Consent,
    Login,
    Callback,
    Token,
    Revoke,
    Logout,
    BackchannelLogout,
}

// === impl Endpoint ===

impl Endpoint {
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Register,
        Endpoint::Authorize,
        Endpoint::Consent,
        Endpoint::Login,
        Endpoint::Callback,
        Endpoint::Token,
        Endpoint::Revoke,
        Endpoint::Logout,
        Endpoint::BackchannelLogout,
    ];

    /// The key of its limit under `rate_limits.per_address` (and `per_client`).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Register => "register",
            Endpoint::Authorize => "authorize",
            Endpoint::Consent => "consent",
            Endpoint::Login => "login",
            Endpoint::Callback => "callback",
            Endpoint::Token => "token",
            Endpoint::Revoke => "revoke",
            Endpoint::Logout => "logout",
            Endpoint::BackchannelLogout => "backchannel_logout",
        }
    }

    /// Whether it also has a limit per OAuth client (`rate_limits.per_client`).
    pub fn limited_per_client(self) -> bool {
        matches!(self, Endpoint::Authorize | Endpoint::Token | Endpoint::Revoke)
    }
}

/// Which count a refused request went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitScope {
    PerAddress,
    PerClient,
}

/// A refusal: how long to wait.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after_secs: u64,
}

pub struct RateLimiter {
    config: RateLimits,
    by_address: Rate,
    by_client: Rate,
}

// === impl RateLimiter ===

impl RateLimiter {
    pub fn new(config: RateLimits) -> Self {
        Self {
            config,
            by_address: Rate::new(WINDOW),
            by_client: Rate::new(WINDOW),
        }
    }

    fn per_address_limit(&self, endpoint: Endpoint) -> u32 {
        let r = &self.config.per_address;
        match endpoint {
            Endpoint::Register => r.register,
            Endpoint::Authorize => r.authorize,
            Endpoint::Consent => r.consent,
            Endpoint::Login => r.login,
            Endpoint::Callback => r.callback,
            Endpoint::Token => r.token,
            Endpoint::Revoke => r.revoke,
            Endpoint::Logout => r.logout,
            Endpoint::BackchannelLogout => r.backchannel_logout,
        }
    }

    fn per_client_limit(&self, endpoint: Endpoint) -> u32 {
        let r = &self.config.per_client;
        match endpoint {
            Endpoint::Authorize => r.authorize,
            Endpoint::Token => r.token,
            Endpoint::Revoke => r.revoke,
            Endpoint::Register
            | Endpoint::Consent
            | Endpoint::Login
            | Endpoint::Callback
            | Endpoint::Logout
            | Endpoint::BackchannelLogout => 0,
        }
    }

    /// Counts a request from `address` to `endpoint`; `Err` when it is over the limit.
    pub fn check_address(&self, endpoint: Endpoint, address: IpAddr) -> Result<(), Limited> {
        check(&self.by_address, &(endpoint, address), self.per_address_limit(endpoint))
            .inspect_err(|_| crate::metrics::metrics().rate_limited(endpoint, LimitScope::PerAddress))
    }

    /// Counts a request naming OAuth client `client_id` at `endpoint`; `Err` when over the limit.
    pub fn check_client(&self, endpoint: Endpoint, client_id: &str) -> Result<(), Limited> {
        check(&self.by_client, &(endpoint, client_id), self.per_client_limit(endpoint))
            .inspect_err(|_| crate::metrics::metrics().rate_limited(endpoint, LimitScope::PerClient))
    }
}

/// Admits a request when the sliding-minute count of admitted ones is under `limit`, and counts
/// it then: refused requests are not counted, so a client over its limit is slowed to it, not
/// shut out while it keeps trying.
fn check<K: std::hash::Hash>(rate: &Rate, key: &K, limit: u32) -> Result<(), Limited> {
    if limit == 0 {
        return Ok(());
    }
    let (count, left_in_window) = rate.rate_with(key, |c| {
        let weighted = c.prev_samples as f64 * (1.0 - c.current_interval_fraction) + c.curr_samples as f64;
        (weighted, (1.0 - c.current_interval_fraction) * c.interval.as_secs_f64())
    });
    if count + 1.0 <= f64::from(limit) {
        rate.observe(key, 1);
        return Ok(());
    }
    Err(Limited {
        retry_after_secs: left_in_window.ceil().clamp(1.0, WINDOW.as_secs_f64()) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::{AddressRates, ClientRates};

    fn limiter(register: u32, token_per_client: u32) -> RateLimiter {
        RateLimiter::new(RateLimits {
            per_address: AddressRates {
                register,
                ..Default::default()
            },
            per_client: ClientRates {
                token: token_per_client,
                ..Default::default()
            },
        })
    }

    #[test]
    fn an_address_is_limited_per_endpoint_and_others_are_not() {
        let l = limiter(3, 0);
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        let b: IpAddr = "203.0.113.10".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check_address(Endpoint::Register, a).is_ok());
        }
        let refused = l.check_address(Endpoint::Register, a).unwrap_err();
        assert!((1..=60).contains(&refused.retry_after_secs));
        assert!(l.check_address(Endpoint::Register, b).is_ok(), "another address");
        assert!(l.check_address(Endpoint::Token, a).is_ok(), "another endpoint");
        let resp = crate::oauth::error::OAuthError::from(refused).into_response();
        assert_eq!(resp.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert!(resp.headers().contains_key(http::header::RETRY_AFTER));
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["error"], "temporarily_unavailable");
    }

    #[test]
    fn refused_requests_do_not_count() {
        let l = limiter(2, 0);
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(l.check_address(Endpoint::Register, a).is_ok());
        assert!(l.check_address(Endpoint::Register, a).is_ok());
        for _ in 0..100 {
            assert!(l.check_address(Endpoint::Register, a).is_err());
        }
        let counted = l.by_address.rate_with(&(Endpoint::Register, a), |c| c.curr_samples);
        assert_eq!(counted, 2, "only the admitted requests are in the window");
    }

    #[test]
    fn a_client_is_limited_and_zero_means_no_limit() {
        let l = limiter(0, 2);
        assert!(l.check_client(Endpoint::Token, "c1").is_ok());
        assert!(l.check_client(Endpoint::Token, "c1").is_ok());
        assert!(l.check_client(Endpoint::Token, "c1").is_err());
        assert!(l.check_client(Endpoint::Token, "c2").is_ok());
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..1000 {
            assert!(l.check_address(Endpoint::Register, a).is_ok());
        }
    }
}
