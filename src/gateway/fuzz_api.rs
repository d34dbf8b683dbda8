//! The gateway's entry points for the fuzz targets (`fuzz/`), compiled only with
//! `--cfg fuzzing`: the proxy-trust view of a request, and the cleaning of a request for the core.

use super::forwarded::{apply_forwarded, ForwardedFacts};
pub use super::proxy_trust::{ClientView, ProxyTrust};
use super::strip_gateway_cookies::strip_gateway_cookies;
use super::strip_identity_headers::strip_identity_headers;
pub use pingora::http::RequestHeader;

/// Cleans a client's request for the core the way `upstream_request_filter` does before it adds
/// the assertion, step for step: identity headers out; with authentication on, `Authorization`
/// and mxgate's cookies out; then the forwarded headers and `Host` as mxgate sets them.
pub fn clean_for_upstream(
    request: &mut RequestHeader,
    view: &ClientView,
    auth_enabled: bool,
    public_scheme: &str,
    upstream_host: &str,
) -> pingora::Result<()> {
    strip_identity_headers(request);
    if auth_enabled {
        request.remove_header(&http::header::AUTHORIZATION);
        strip_gateway_cookies(request)?;
    }
    let proto = view.forwarded_proto.as_deref().unwrap_or(public_scheme);
    apply_forwarded(
        request,
        &ForwardedFacts {
            client_ip: view.client_ip,
            forwarded_for: view.forwarded_for.as_deref(),
            proto,
            original_host: view.host.as_deref(),
            upstream_host,
        },
    )
}
