//! The browser cookies of the login flow. With an `https` public URL they are
//! `__Host-`-prefixed and `Secure`; on a plain-`http` (loopback, development) public URL they
//! drop the prefix and `Secure`, which browsers would otherwise refuse. Always `HttpOnly`,
//! `SameSite=Lax`, `Path=/`.

use http::HeaderMap;

/// Binds a consent form to the browser that was shown it.
pub const CSRF: &str = "mxgate-csrf";
/// Binds a login at the provider to the browser that started it.
pub const LOGIN: &str = "mxgate-login";
/// A person's browser session with the gateway.
pub const SESSION: &str = "mxgate-session";
/// Remembers that this browser's user approved a client (one cookie per client).
pub const CONSENT_PREFIX: &str = "mxgate-consent-";

#[derive(Clone, Copy)]
pub struct CookiePolicy {
    secure: bool,
}

// === impl CookiePolicy ===

impl CookiePolicy {
    pub fn new(public_url_is_https: bool) -> Self {
        Self {
            secure: public_url_is_https,
        }
    }

    pub fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_string()
        }
    }

    /// A `Set-Cookie` value; `max_age` 0 deletes the cookie.
    pub fn set(&self, base: &str, value: &str, max_age_secs: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}",
            self.name(base)
        )
    }

    pub fn clear(&self, base: &str) -> String {
        self.set(base, "", 0)
    }

    /// The value of a cookie this policy named `base`.
    pub fn get<'a>(&self, headers: &'a HeaderMap, base: &str) -> Option<&'a str> {
        let wanted = self.name(base);
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == wanted)
            .map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_are_host_prefixed_and_secure() {
        let p = CookiePolicy::new(true);
        let c = p.set(CSRF, "abc", 600);
        assert_eq!(
            c,
            "__Host-mxgate-csrf=abc; Path=/; Max-Age=600; HttpOnly; SameSite=Lax; Secure"
        );
        let http = CookiePolicy::new(false).set(CSRF, "abc", 600);
        assert!(!http.contains("Secure") && http.starts_with("mxgate-csrf=abc"));
    }

    #[test]
    fn reads_cookies_by_exact_name() {
        let p = CookiePolicy::new(true);
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            "mxgate-csrf=plain; __Host-mxgate-csrf=good; x=1".parse().unwrap(),
        );
        assert_eq!(p.get(&h, CSRF), Some("good"));
        assert_eq!(CookiePolicy::new(false).get(&h, CSRF), Some("plain"));
        assert_eq!(p.get(&h, LOGIN), None);
    }
}
