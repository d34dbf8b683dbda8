//! Removes mxgate's own browser cookies (consent, CSRF, login binding) from the `Cookie` header
//! before a request goes to the core: they belong to the gateway, not to the MCP server.

use pingora::http::RequestHeader;

fn is_gateway_cookie(pair: &str) -> bool {
    let name = pair.trim_start().split('=').next().unwrap_or_default();
    name.strip_prefix("__Host-").unwrap_or(name).starts_with("mxgate-")
}

pub fn strip_gateway_cookies(request: &mut RequestHeader) -> pingora::Result<()> {
    let cookies: Vec<String> = request
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(str::to_string)
        .collect();
    if !cookies.iter().any(|c| is_gateway_cookie(c)) {
        return Ok(());
    }
    request.remove_header(&http::header::COOKIE);
    let kept: Vec<&str> = cookies
        .iter()
        .map(String::as_str)
        .filter(|c| !is_gateway_cookie(c))
        .collect();
    if !kept.is_empty() {
        request.insert_header(http::header::COOKIE, kept.join("; "))?;
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

        let mut only_ours = RequestHeader::build("GET", b"/", None).unwrap();
        only_ours.append_header("cookie", "mxgate-consent-ab=z").unwrap();
        strip_gateway_cookies(&mut only_ours).unwrap();
        assert!(only_ours.headers.get("cookie").is_none());
    }
}
