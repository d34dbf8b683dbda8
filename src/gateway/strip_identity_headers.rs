//! Removes every client-sent copy of the identity headers before a request goes to the core:
//! any header whose name, read as the core's frameworks read it (lower-case, `_` as `-`), starts
//! with `x-mxcp-user` — the assertion, the convenience headers, and look-alikes such as a bare
//! `x-mxcp-user`. Only mxgate may set them.

use super::header_hygiene::{canonical_name, remove_headers_where};
use pingora::http::RequestHeader;

const IDENTITY_HEADER_PREFIX: &str = "x-mxcp-user";

pub fn is_identity_header(name: &str) -> bool {
    canonical_name(name).starts_with(IDENTITY_HEADER_PREFIX)
}

/// Strips the identity headers; returns how many distinct names were removed.
pub fn strip_identity_headers(request: &mut RequestHeader) -> usize {
    let names = remove_headers_where(request, is_identity_header);
    for name in &names {
        tracing::debug!(header = %name, "stripped a client-sent identity header");
    }
    names.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_any_case_underscores_and_look_alikes() {
        for name in [
            "x-mxcp-user-assertion",
            "X-MXCP-USER-ASSERTION",
            "x_mxcp_user_assertion",
            "X_Mxcp-User_email",
            "x-mxcp-user",
            "x_mxcp_user",
            "x-mxcp-username",
        ] {
            assert!(is_identity_header(name), "{name}");
        }
        for name in ["x-mxcp-use", "authorization", "x-mxcp-session", "mxcp-user"] {
            assert!(!is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn removes_every_copy() {
        let mut req = RequestHeader::build("POST", b"/mcp", None).unwrap();
        req.append_header("X-Mxcp-User-Assertion", "forged1").unwrap();
        req.append_header("x-mxcp-user-assertion", "forged2").unwrap();
        req.append_header("x_mxcp_user_email", "forged@example.test").unwrap();
        req.append_header("x-mxcp-user", "bob").unwrap();
        req.append_header("content-type", "application/json").unwrap();
        assert_eq!(strip_identity_headers(&mut req), 3, "three distinct names");
        assert!(req.headers.get("x-mxcp-user-assertion").is_none());
        assert!(req.headers.get("x_mxcp_user_email").is_none());
        assert!(req.headers.get("x-mxcp-user").is_none());
        assert!(req.headers.get("content-type").is_some());
    }
}
