//! The gateway's entry points for the fuzz targets (`fuzz/`), compiled only with
//! `--cfg fuzzing`: the proxy-trust view of a request, and the cleaning of a request for the core.

use super::forwarded::ForwardedFacts;
pub use super::proxy_trust::{ClientView, ProxyTrust};
pub use pingora::http::RequestHeader;

/// Cleans a client's request for the core exactly as `upstream_request_filter` does (the one
/// function both call), without an assertion.
pub fn clean_for_upstream(
    request: &mut RequestHeader,
    view: &ClientView,
    auth_enabled: bool,
    public_scheme: &str,
    upstream_host: &str,
) -> pingora::Result<()> {
    let proto = view.forwarded_proto.as_deref().unwrap_or(public_scheme);
    let facts = ForwardedFacts {
        client_ip: view.client_ip,
        forwarded_for: view.forwarded_for.as_deref(),
        proto,
        original_host: view.host.as_deref(),
        upstream_host,
    };
    super::header_hygiene::clean_for_upstream(request, auth_enabled, &facts, None)
}
