//! The browser cookies of the login flow. With an `https` public URL they are
//! `__Host-`-prefixed and `Secure`; on a plain-`http` (loopback, development) public URL they
//! drop the prefix and `Secure`, which browsers would otherwise refuse. Always `HttpOnly`,
//! `SameSite=Lax`, `Path=/`.

use crate::support::hex;
use http::HeaderMap;
use sha2::{Digest, Sha256};

/// Binds a consent form to the browser that was shown it.
pub const CSRF: &str = "mxgate-csrf";
/// Binds a login at the provider to the browser that started it.
pub const LOGIN: &str = "mxgate-login";
/// A person's browser session with the gateway.
pub const SESSION: &str = "mxgate-session";
/// Remembers that this browser's user approved a client (one cookie per client, see [`consent`]).
const CONSENT_PREFIX: &str = "mxgate-consent-";
/// Hex digits of the client id's SHA-256 in a consent cookie's name.
const CONSENT_ID_LEN: usize = 16;
/// At most this many consent cookies are cleared at once (a browser sends a handful).
const MAX_CONSENT_COOKIES: usize = 64;

/// The name of the cookie that remembers an approval of `client_id`.
pub fn consent(client_id: &str) -> String {
    let digest = hex(&Sha256::digest(client_id.as_bytes()));
    format!("{CONSENT_PREFIX}{}", &digest[..CONSENT_ID_LEN])
}

/// Whether `base` is a name [`consent`] makes (and so safe to send back in a `Set-Cookie`).
fn is_consent(base: &str) -> bool {
    base.strip_prefix(CONSENT_PREFIX)
        .is_some_and(|id| id.len() == CONSENT_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// `(name, value)` of every cookie a request carries.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

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
        pairs(headers).find(|(name, _)| *name == wanted).map(|(_, value)| value)
    }

    /// The base names of the consent cookies (of any client) a request carries under this
    /// policy, each once, at most [`MAX_CONSENT_COOKIES`].
    pub fn consent_cookies(&self, headers: &HeaderMap) -> Vec<String> {
        let prefix = self.name("");
        let mut found: Vec<String> = Vec::new();
        for (name, _) in pairs(headers) {
            let Some(base) = name.strip_prefix(prefix.as_str()).filter(|b| is_consent(b)) else {
                continue;
            };
            if found.len() == MAX_CONSENT_COOKIES {
                break;
            }
            if !found.iter().any(|f| f == base) {
                found.push(base.to_string());
            }
        }
        found
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

    #[test]
    fn finds_every_consent_cookie_of_its_own_prefix_and_nothing_forged() {
        let (one, two) = (consent("client-1"), consent("https://app.example/client.json"));
        assert!(one.starts_with("mxgate-consent-") && one.len() == "mxgate-consent-".len() + 16);
        let mut h = HeaderMap::new();
        let header = format!(
            "__Host-{one}=a; __Host-{two}=b; {one}=plain; __Host-{one}=dup; __Host-mxgate-consent-x=c; \
             __Host-{one}0=e; __Host-mxgate-csrf=d"
        );
        h.insert("cookie", header.parse().unwrap());
        assert_eq!(CookiePolicy::new(true).consent_cookies(&h), vec![one.clone(), two]);
        assert_eq!(CookiePolicy::new(false).consent_cookies(&h), vec![one]);
    }
}
