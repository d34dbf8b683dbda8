//! Removes mxgate's own browser cookies (consent, CSRF, login binding) from the `Cookie` header
//! before a request goes to the core: they belong to the gateway, not to the MCP server.

use http::HeaderValue;
use pingora::http::RequestHeader;

/// Whether a `name=value` pair is one of mxgate's cookies (read as bytes: a cookie header may
/// carry bytes that are not UTF-8, and must not hide mxgate's cookies that way).
fn is_gateway_cookie(pair: &[u8]) -> bool {
    let name = pair.trim_ascii_start().split(|b| *b == b'=').next().unwrap_or_default();
    name.strip_prefix(b"__Host-").unwrap_or(name).starts_with(b"mxgate-")
}

pub fn strip_gateway_cookies(request: &mut RequestHeader) -> pingora::Result<()> {
    let pairs: Vec<Vec<u8>> = request
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if !pairs.iter().any(|c| is_gateway_cookie(c)) {
        return Ok(());
    }
    request.remove_header(&http::header::COOKIE);
    let kept: Vec<&[u8]> = pairs
        .iter()
        .map(Vec::as_slice)
        .filter(|c| !is_gateway_cookie(c))
        .collect();
    if !kept.is_empty() {
        let joined = kept.join(&b"; "[..]);
        // The bytes came from a valid header value; joining them with "; " keeps it valid.
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            request.insert_header(http::header::COOKIE, value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_other_cookies_and_drops_ours() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "a=1; mxgate-csrf=x; __Host-mxgate-login=y")
            .unwrap();
        req.append_header("cookie", "b=2").unwrap();
        strip_gateway_cookies(&mut req).unwrap();
        assert_eq!(req.headers["cookie"], "a=1; b=2");

        let mut opaque = RequestHeader::build("GET", b"/", None).unwrap();
        let value = HeaderValue::from_bytes(b"a=\xe9; mxgate-login=y; __Host-mxgate-csrf=x").unwrap();
        opaque.append_header("cookie", value).unwrap();
        strip_gateway_cookies(&mut opaque).unwrap();
        assert_eq!(
            opaque.headers["cookie"].as_bytes(),
            b"a=\xe9",
            "a non-UTF-8 byte hides nothing"
        );

        let mut only_ours = RequestHeader::build("GET", b"/", None).unwrap();
        only_ours.append_header("cookie", "mxgate-consent-ab=z").unwrap();
        strip_gateway_cookies(&mut only_ours).unwrap();
        assert!(only_ours.headers.get("cookie").is_none());
    }
}
