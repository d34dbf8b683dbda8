//! Removes every client-sent copy of the identity headers before a request goes to the core:
//! any header whose name, lower-cased and with `_` read as `-`, starts with `x-mxcp-user-`
//! (the assertion and the convenience headers). Only mxgate may set them.

use pingora::http::RequestHeader;

const IDENTITY_HEADER_PREFIX: &str = "x-mxcp-user-";

fn is_identity_header(name: &str) -> bool {
    name.len() >= IDENTITY_HEADER_PREFIX.len()
        && name
            .bytes()
            .zip(IDENTITY_HEADER_PREFIX.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

/// Strips the identity headers; returns how many were removed.
pub fn strip_identity_headers(request: &mut RequestHeader) -> usize {
    let names: Vec<String> = request
        .headers
        .keys()
        .map(|n| n.as_str())
        .filter(|n| is_identity_header(n))
        .map(str::to_string)
        .collect();
    for name in &names {
        tracing::debug!(header = %name, "stripped a client-sent identity header");
        request.remove_header(name.as_str());
    }
    names.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_any_case_and_underscores() {
        for name in [
            "x-mxcp-user-assertion",
            "X-MXCP-USER-ASSERTION",
            "x_mxcp_user_assertion",
            "X_Mxcp-User_email",
        ] {
            assert!(is_identity_header(name), "{name}");
        }
        for name in ["x-mxcp-username", "x-mxcp-user", "authorization", "x-mxcp-session"] {
            assert!(!is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn removes_every_copy() {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        req.append_header("X-Mxcp-User-Assertion", "forged1").unwrap();
        req.append_header("x-mxcp-user-assertion", "forged2").unwrap();
        req.append_header("x_mxcp_user_email", "forged@example.test").unwrap();
        req.append_header("content-type", "application/json").unwrap();
        assert_eq!(strip_identity_headers(&mut req), 2, "two distinct names");
        assert!(req.headers.get("x-mxcp-user-assertion").is_none());
        assert!(req.headers.get("x_mxcp_user_email").is_none());
        assert!(req.headers.get("content-type").is_some());
    }
}
