//! Redirect URIs: what a client may register, and whether a presented URI matches a registered
//! one — exactly, except that a loopback `http` URI may use any port (RFC 8252 §7.3).

use url::{Host, Url};

const FORBIDDEN_SCHEMES: [&str; 8] = ["javascript", "data", "file", "vbscript", "blob", "about", "ftp", "ws"];

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks a redirect URI a client wants to register.
pub fn validate_for_registration(uri: &str) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI: {e}"))?;
    if url.fragment().is_some() {
        return Err(format!("`{uri}` must not contain a fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!("`{uri}`: plain http is only allowed for loopback addresses")),
        s if FORBIDDEN_SCHEMES.contains(&s) || s == "wss" => Err(format!("`{uri}`: scheme `{s}` is not allowed")),
        // Private-use schemes of native apps (RFC 8252 §7.1), e.g. `com.example.app:/cb`.
        _ => Ok(()),
    }
}

/// Whether `presented` may be used where `registered` was registered.
pub fn matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(r), Ok(p)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    r.scheme() == "http"
        && p.scheme() == "http"
        && is_loopback(&r)
        && r.host() == p.host()
        && r.path() == p.path()
        && r.query() == p.query()
        && r.username() == p.username()
        && p.password().is_none()
        && p.fragment().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_and_loopback_port_freedom() {
        assert!(matches("https://app.example/cb", "https://app.example/cb"));
        assert!(!matches("https://app.example/cb", "https://app.example/cb/"));
        assert!(!matches("https://app.example/cb", "https://app.example:8443/cb"));
        assert!(matches("http://127.0.0.1/callback", "http://127.0.0.1:51234/callback"));
        assert!(matches(
            "http://localhost:3000/callback",
            "http://localhost:4000/callback"
        ));
        assert!(!matches("http://127.0.0.1/callback", "http://127.0.0.1:5/other"));
        assert!(
            !matches("http://127.0.0.1/callback", "http://localhost:5/callback"),
            "host must be the same literal"
        );
        assert!(!matches("http://evil.example/cb", "http://evil.example:81/cb"));
    }

    #[test]
    fn registration_rules() {
        assert!(validate_for_registration("https://app.example/cb").is_ok());
        assert!(validate_for_registration("http://127.0.0.1:3000/cb").is_ok());
        assert!(validate_for_registration("http://[::1]/cb").is_ok());
        assert!(validate_for_registration("com.example.app:/oauth").is_ok());
        assert!(validate_for_registration("http://app.example/cb").is_err());
        assert!(validate_for_registration("javascript:alert(1)").is_err());
        assert!(validate_for_registration("https://app.example/cb#frag").is_err());
        assert!(validate_for_registration("/relative").is_err());
    }
}
