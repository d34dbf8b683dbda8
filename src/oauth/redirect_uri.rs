//! Redirect URIs: what a client may register, and whether a presented URI matches a registered
//! one — exactly, except that a loopback `http` URI may use any port (RFC 8252 §7.3).
//!
//! A registered URI, and a presented one that differs from it, must be an RFC 3986 absolute URI
//! as written: the `url` crate forgives (it drops tabs and newlines, reads `\\` as `/`, adds a
//! missing `//`), and a URI that one parser forgives and another reads differently is where
//! redirects get hijacked.

use url::{Host, Url};

const FORBIDDEN_SCHEMES: [&str; 8] = ["javascript", "data", "file", "vbscript", "blob", "about", "ftp", "ws"];
/// The characters RFC 3986 §2 allows in a URI besides letters and digits: unreserved
/// (`-._~`), reserved (gen-delims and sub-delims) and `%` for percent-encoding.
const URI_PUNCTUATION: &str = "-._~:/?#[]@!$&'()*+,;=%";

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Refuses a character a URI may not contain (controls, space, `\\`, `"`, `<`, non-ASCII, …)
/// and a `%` not followed by two hex digits (RFC 3986 §2).
fn check_uri_characters(uri: &str) -> Result<(), String> {
    let bytes = uri.as_bytes();
    for (i, c) in uri.char_indices() {
        if !(c.is_ascii_alphanumeric() || URI_PUNCTUATION.contains(c)) {
            return Err(format!(
                "{uri:?} contains U+{:04X} at byte {i}, which a URI may not contain (RFC 3986 §2)",
                u32::from(c)
            ));
        }
        let escape_ok = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
        if c == '%' && !(escape_ok(i + 1) && escape_ok(i + 2)) {
            return Err(format!(
                "{uri:?} has a `%` at byte {i} that is not followed by two hex digits"
            ));
        }
    }
    Ok(())
}

/// Parses a URI that must be an RFC 3986 absolute URI as written, not only after the `url`
/// crate's repairs.
fn parse_as_written(uri: &str) -> Result<Url, String> {
    check_uri_characters(uri)?;
    let url = Url::parse(uri).map_err(|e| format!("`{uri}` is not an absolute URI: {e}"))?;
    // `https:host/cb` and `https:/host/cb` parse (the `url` crate adds the `//`), but only
    // `scheme://authority` names a host in RFC 3986; the same for any URI with a host.
    let authority_follows = uri
        .get(url.scheme().len()..)
        .is_some_and(|rest| rest.starts_with("://"));
    if (url.is_special() || url.has_host()) && !authority_follows {
        return Err(format!("`{uri}` must have the form {}://host/path", url.scheme()));
    }
    Ok(url)
}

/// Checks a redirect URI a client wants to register.
pub fn validate_for_registration(uri: &str) -> Result<(), String> {
    let url = parse_as_written(uri)?;
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
    let (Ok(r), Ok(p)) = (Url::parse(registered), parse_as_written(presented)) else {
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
    fn a_presented_loopback_uri_matches_only_as_written() {
        let registered = "http://127.0.0.1/callback";
        assert!(matches(registered, "http://127.0.0.1:5/callback"));
        // Each of these is `http://127.0.0.1:5/callback` once the `url` crate has repaired it.
        for presented in [
            "http://127.0.0.1:5/call\nback",
            "http://127.0.0.1:5/call\tback",
            "http://127.0.0.1:5\\callback",
            "http:127.0.0.1:5/callback",
            "http:/127.0.0.1:5/callback",
        ] {
            assert!(!matches(registered, presented), "{presented:?}");
        }
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

    #[test]
    fn registered_uris_are_rfc_3986_uris_as_written() {
        for good in [
            "http://localhost:33418/callback?state=1&x=%2F",
            "cursor://anysphere.cursor-retrieval/oauth/user-mcp/callback",
            "https://[2001:db8::1]:8443/cb",
        ] {
            assert!(validate_for_registration(good).is_ok(), "{good}");
        }
        // The `url` crate accepts every one of these (dropping tabs and newlines, `\\` read as `/`).
        for bad in [
            "https://app.example/c\nb",
            "https://app.exa\tmple/cb",
            "https://app.example/cb\r",
            "https://app.example/cb\0",
            "https://app.example/cb\x7f",
            "https://app.example/c b",
            "https://app.example\\@evil.example/cb",
            "https:\\\\evil.example/cb",
            "https://app.example/cb?x=\"<script>",
            "https://app.example/caf\u{e9}",
            "https://app.example/cb?x=%zz",
            "https://app.example/cb?x=%4",
            "https:evil.example/cb",
            "https:/evil.example/cb",
            "http:127.0.0.1/cb",
        ] {
            let err = validate_for_registration(bad).expect_err(bad);
            assert!(
                !err.contains('\n') && !err.contains('\0'),
                "control characters are escaped: {err}"
            );
        }
    }
}
