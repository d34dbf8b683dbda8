//! Forward authentication: for deployments that keep their proxy (nginx `auth_request`, Traefik
//! `ForwardAuth`) forwarding to the core itself, mxgate answers the proxy's question "may this
//! request through?" at `forward_auth.path` (default `/_mxgate/forward-auth`, off by default).
//! The OAuth endpoints stay mxgate's: the proxy routes `/.well-known/*`, `/register`,
//! `/authorize`, `/consent`, `/token`, `/revoke`, the callback, `/login` and `/logout` to it.
//!
//! The answer, for the proxy to act on:
//! - `200` with `x-mxcp-user-assertion` (and `Cache-Control: no-store`; a renewed browser
//!   session cookie in `Set-Cookie` when there is one) and nothing else: the proxy copies the
//!   assertion onto the request it forwards, replacing any client-sent copy;
//! - `401` with the MCP challenge (`WWW-Authenticate: Bearer … resource_metadata="…"`) or `403`
//!   `insufficient_scope`, for the proxy to pass to the client; `421`/`403` for a `Host`/`Origin`
//!   of the original request that may not reach the core (the same [`RequestGuard`] checks as
//!   proxied requests); `404` for another user's MCP session; `403` for a CORS preflight.
//!
//! Decisions:
//! - **Only `trusted_proxies` may ask** (anyone else gets `403`): an answer carries an
//!   assertion, which carries the provider token (`ext`), so a caller that could ask directly
//!   could turn any access token into one. This does not depend on `transport.http.trust_proxy`,
//!   which governs the `X-Forwarded-*` of the traffic mxgate serves itself: the headers of a
//!   forward-auth check are, by construction, the trusted caller's description of the original
//!   request and are always read (`X-Forwarded-For` by the same rightmost-untrusted rule).
//! - **The original request** comes from the caller's headers: method from `X-Forwarded-Method`
//!   (Traefik) or `X-Original-Method` (nginx snippet), URI from `X-Forwarded-Uri` /
//!   `X-Original-URI`, host from `X-Forwarded-Host` (required: without it the check would
//!   see mxgate's own address), scheme from `X-Forwarded-Proto`; `Authorization`, the session
//!   cookie, `Origin` and `mcp-session-id` are the client's own, passed on by the proxy.
//! - **Admission is the proxied requests' own** ([`AuthParts::admit`], mode
//!   [`Admission::ForwardAuth`]): token → session, provider token freshness, required scopes,
//!   MCP session ownership, the cached assertion. Two differences, because the proxy forwards
//!   and mxgate never sees the core's answer: a browser without a session gets the `401`, never a
//!   redirect to `/login` (a proxy's auth check treats a redirect as an error); and an MCP
//!   session id cannot be bound when the core issues it, so it is bound to the first signed-in
//!   user who presents it (normally its opener's very next request). Afterwards another user
//!   presenting it gets `404`, as when proxied; but mxgate cannot tell an id the core issued
//!   from a made-up one (the core refuses those), and an id used by someone else before its
//!   opener is theirs. Ended sessions are not forgotten at once (mxgate does not see the
//!   `DELETE` succeed); the per-user and total bounds drop the oldest and close them at the core
//!   (`upstream`).
//! - **Policies**: the per-request rules of `policies` decide after admission (a denial is the
//!   `403 access_denied` with the rule's reason); rules on `rpc`/`tool` are refused at start-up
//!   with forward auth on, as the check carries no request body.
//! - A CORS preflight (`OPTIONS`) is refused: mxgate cannot add CORS headers to the core's
//!   answers in this mode; answer preflights at the proxy.

use super::admit::{Admission, AuthParts, RequestHead};
use super::local_response::json_error;
use super::proxy::{HEALTH_PATH, READY_PATH};
use super::proxy_trust::ProxyTrust;
use super::request_guard::{Refusal, RequestGuard};
use crate::config::Settings;
use crate::identity::assertion::ASSERTION_HEADER;
use crate::oauth::{AuthorizationServer, PublicOrigin};
use crate::policy::variables::RequestFacts;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use std::net::IpAddr;

/// The original method (Traefik, then the nginx snippet's name).
const METHOD_HEADERS: [&str; 2] = ["x-forwarded-method", "x-original-method"];
/// The original request URI.
const URI_HEADERS: [&str; 2] = ["x-forwarded-uri", "x-original-uri"];
const HOST_HEADER: &str = "x-forwarded-host";
/// Longest original path written to the logs.
const LOGGED_PATH_LEN: usize = 200;

/// The forward-auth endpoint: who may ask, and how the public URL of a request is known.
pub struct ForwardAuth {
    path: String,
    /// `trusted_proxies`, believed regardless of `trust_proxy`.
    callers: ProxyTrust,
    /// `public_url` was derived, not configured: the caller's `X-Forwarded-Proto/-Host` name it.
    origin_from_proxy: bool,
}

/// A check as the proxy sent it.
pub struct Check<'a> {
    /// The connecting address: must be a trusted proxy.
    pub peer: Option<IpAddr>,
    /// The method of the check itself (used when the proxy does not name the original one).
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// The value of the first of `names` the request carries, if readable.
fn first_header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The original request, as the trusted caller described it and the request guard passed it.
struct Original<'a> {
    method: Method,
    /// Path and query.
    uri: &'a str,
    /// The public URL of the request, when the caller names it (see `origin_from_proxy`).
    origin: Option<PublicOrigin>,
    client: Option<IpAddr>,
}

// === impl Original ===

impl Original<'_> {
    /// The path, shortened, for the logs (never the query, which may hold secrets).
    fn logged_path(&self) -> String {
        self.uri
            .split('?')
            .next()
            .unwrap_or("/")
            .chars()
            .take(LOGGED_PATH_LEN)
            .collect()
    }
}

// === impl ForwardAuth ===

impl ForwardAuth {
    /// The endpoint, when `forward_auth` is on. Refuses a path one of mxgate's own endpoints has.
    pub fn from_settings(settings: &Settings, server: &AuthorizationServer) -> anyhow::Result<Option<Self>> {
        let Some(endpoint) = Self::configured(settings) else {
            return Ok(None);
        };
        let path = endpoint.path();
        if server.route(path).is_some() || path == HEALTH_PATH || path == READY_PATH {
            anyhow::bail!(
                "{}: forward_auth.path `{path}` is one of mxgate's own endpoints; choose another",
                settings.config_file.display()
            );
        }
        Ok(Some(endpoint))
    }

    fn configured(settings: &Settings) -> Option<Self> {
        Some(Self {
            path: settings.forward_auth_path.clone()?,
            callers: ProxyTrust::new(true, settings.transport.trusted_proxies.clone()),
            origin_from_proxy: settings.transport.trust_proxy && !settings.public_url_configured,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Answers one check (see the module doc for what each answer means).
    pub async fn check(&self, auth: &AuthParts, guard: &RequestGuard, check: Check<'_>, now: u64) -> Response<Bytes> {
        let original = match self.original_request(guard, &check) {
            Ok(original) => original,
            Err(refusal) => return *refusal,
        };
        let request = RequestHead {
            method: &original.method,
            path_and_query: original.uri,
            headers: check.headers,
            origin: original.origin.as_ref(),
            mode: Admission::ForwardAuth,
            client_addr: original.client,
        };
        let (method, path, client) = (&original.method, original.logged_path(), original.client);
        let admitted = match auth.admit(&request, now).await {
            Ok(admitted) => {
                // The per-request rules; they cannot read `rpc`/`tool` here (refused at start-up).
                let facts = RequestFacts {
                    method: original.method.as_str(),
                    path: original.uri.split('?').next().unwrap_or("/"),
                };
                match auth.policy_refusal(&admitted.session, facts, &[], client) {
                    Some(refusal) => Err(refusal),
                    None => Ok(admitted),
                }
            }
            Err(refusal) => Err(refusal),
        };
        match admitted {
            Ok(admitted) => {
                let user = &admitted.session.record.user.username;
                tracing::debug!(%user, ?client, %method, path, "forward-auth check admitted");
                let mut response = Response::new(Bytes::new());
                let h = response.headers_mut();
                h.insert(ASSERTION_HEADER, admitted.assertion);
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if let Some(cookie) = admitted.set_cookie {
                    h.insert(header::SET_COOKIE, cookie);
                }
                response
            }
            Err(refusal) => {
                let status = refusal.status().as_u16();
                tracing::debug!(status, ?client, %method, path, "forward-auth check not admitted");
                refusal
            }
        }
    }

    /// Reads the original request from a trusted caller's check and runs the request guard on it.
    fn original_request<'a>(
        &self,
        guard: &RequestGuard,
        check: &Check<'a>,
    ) -> Result<Original<'a>, Box<Response<Bytes>>> {
        let headers = check.headers;
        let view = self.callers.view(check.peer, headers);
        if !view.via_trusted_proxy {
            tracing::warn!(peer = ?check.peer, "forward-auth check from an address not in trusted_proxies refused");
            return Err(Box::new(json_error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "only a trusted proxy (trusted_proxies) may use the forward-auth endpoint",
            )));
        }
        if !headers.contains_key(HOST_HEADER) {
            return Err(Box::new(json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the proxy must send X-Forwarded-Host (the Host of the original request)",
            )));
        }
        let method = match first_header(headers, &METHOD_HEADERS) {
            Some(name) => Method::from_bytes(name.as_bytes()).map_err(|_| {
                Box::new(json_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "X-Forwarded-Method / X-Original-Method is not an HTTP method",
                ))
            })?,
            None => check.method.clone(),
        };
        if method == Method::OPTIONS {
            return Err(Box::new(json_error(
                StatusCode::FORBIDDEN,
                "invalid_request",
                "CORS preflights are not forwarded to the MCP server; answer them at the proxy",
            )));
        }
        let origin = match (&view.forwarded_proto, &view.host) {
            (Some(proto), Some(host)) if self.origin_from_proxy => Some(PublicOrigin(format!("{proto}://{host}"))),
            _ => None,
        };
        let original = Original {
            method,
            uri: first_header(headers, &URI_HEADERS)
                .filter(|u| u.starts_with('/'))
                .unwrap_or("/"),
            origin,
            client: view.client_ip,
        };
        let request_origin = match headers.get(header::ORIGIN).map(|o| o.to_str()) {
            Some(Ok(o)) => Some(o),
            Some(Err(_)) => return Err(Box::new(Refusal::Origin.response())),
            None => None,
        };
        let own_origin = original.origin.as_ref().map(|o| o.0.as_str());
        if let Err(refusal) = guard.check_destination(view.host.as_deref(), request_origin, own_origin) {
            let (method, path) = (&original.method, original.logged_path());
            tracing::info!(reason = ?refusal, client = ?view.client_ip, %method, path, "forward-auth check refused");
            return Err(Box::new(refusal.response()));
        }
        Ok(original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::header_hygiene::header_map as headers;

    const PUBLIC_HOST: &str = "mcp.example.com";

    /// Settings with trusted proxies 10.0.0.0/8, forward auth on (unless `gateway_extra` sets
    /// it), and `gateway_extra` / `transport` added to the two files.
    fn settings(gateway_extra: &str, transport: &str) -> Settings {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mxcp.yml"),
            format!("mxcp: 1\n{transport}projects:\n  p:\n    profiles:\n      default:\n        auth:\n          provider: oidc\n          oidc:\n            config_url: https://idp.test/.well-known/openid-configuration\n            client_id: mxgate\n            client_secret: s\n            scope: openid email\n            callback_path: /callback\n"),
        )
        .unwrap();
        let gateway = dir.path().join("mxgate.yml");
        let on = if gateway_extra.contains("forward_auth:") {
            ""
        } else {
            "forward_auth: {enabled: true}\n"
        };
        std::fs::write(
            &gateway,
            format!("listen: 127.0.0.1:18000\nupstream: http://127.0.0.1:18001\nmxcp_config: mxcp.yml\ntrusted_proxies: [10.0.0.0/8]\n{on}{gateway_extra}"),
        )
        .unwrap();
        crate::config::load(&gateway).unwrap()
    }

    fn endpoint(settings: &Settings) -> (ForwardAuth, RequestGuard) {
        (ForwardAuth::configured(settings).unwrap(), RequestGuard::new(settings))
    }

    fn read<'a>(
        endpoint: &(ForwardAuth, RequestGuard),
        peer: &str,
        h: &'a HeaderMap,
    ) -> Result<Original<'a>, Box<Response<Bytes>>> {
        let check = Check {
            peer: Some(peer.parse().unwrap()),
            method: &Method::GET,
            headers: h,
        };
        endpoint.0.original_request(&endpoint.1, &check)
    }

    fn status(result: Result<Original<'_>, Box<Response<Bytes>>>) -> u16 {
        match result {
            Ok(_) => 200,
            Err(response) => response.status().as_u16(),
        }
    }

    /// A check as Traefik sends it for `POST /mcp?x=1` from 198.51.100.7 (which forged a hop).
    fn traefik_check() -> HeaderMap {
        headers(&[
            ("host", "127.0.0.1:18000"),
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", PUBLIC_HOST),
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/mcp?x=1"),
            ("authorization", "Bearer abc"),
        ])
    }

    #[test]
    fn is_off_unless_enabled() {
        let off = settings("public_url: https://mcp.example.com\nforward_auth: {path: /auth}\n", "");
        assert!(ForwardAuth::configured(&off).is_none());
    }

    #[test]
    fn only_trusted_proxies_may_ask_and_their_headers_are_read_without_trust_proxy() {
        let s = settings("public_url: https://mcp.example.com\n", "");
        assert!(!s.transport.trust_proxy, "trust_proxy is off");
        let e = endpoint(&s);
        assert_eq!(e.0.path(), "/_mxgate/forward-auth");
        let h = traefik_check();
        for outsider in ["203.0.113.5", "127.0.0.1"] {
            let refused = read(&e, outsider, &h).err().expect("refused");
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{outsider}");
            assert!(String::from_utf8_lossy(refused.body()).contains("access_denied"));
        }
        let original = read(&e, "10.0.0.2", &h).expect("admitted to admission");
        assert_eq!(original.method, Method::POST);
        assert_eq!(original.uri, "/mcp?x=1");
        assert_eq!(original.logged_path(), "/mcp");
        assert_eq!(
            original.client,
            Some("198.51.100.7".parse().unwrap()),
            "rightmost untrusted hop"
        );
        assert_eq!(original.origin, None, "a configured public URL is not replaced");
    }

    #[test]
    fn nginx_header_names_are_read_too() {
        let e = endpoint(&settings("public_url: https://mcp.example.com\n", ""));
        let h = headers(&[
            ("host", PUBLIC_HOST),
            ("x-forwarded-host", PUBLIC_HOST),
            ("x-original-method", "DELETE"),
            ("x-original-uri", "/mcp"),
        ]);
        let original = read(&e, "10.1.2.3", &h).unwrap();
        assert_eq!(original.method, Method::DELETE);
        assert_eq!(original.uri, "/mcp");
        // Without a method header, the check's own method; without a URI, `/`.
        let h = headers(&[("host", PUBLIC_HOST), ("x-forwarded-host", PUBLIC_HOST)]);
        let original = read(&e, "10.1.2.3", &h).unwrap();
        assert_eq!((original.method, original.uri), (Method::GET, "/"));
    }

    #[test]
    fn the_original_request_passes_the_request_guard() {
        let e = endpoint(&settings("public_url: https://mcp.example.com\n", ""));
        let with = |extra: &[(&str, &str)]| {
            let mut h = traefik_check();
            for (name, value) in extra {
                h.insert(
                    http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            h
        };
        assert_eq!(status(read(&e, "10.0.0.2", &with(&[]))), 200);
        assert_eq!(
            status(read(&e, "10.0.0.2", &with(&[("x-forwarded-host", "evil.example")]))),
            421
        );
        assert_eq!(
            status(read(&e, "10.0.0.2", &with(&[("origin", "https://evil.example")]))),
            403
        );
        assert_eq!(
            status(read(&e, "10.0.0.2", &with(&[("origin", "https://mcp.example.com")]))),
            200
        );
        assert_eq!(
            status(read(&e, "10.0.0.2", &with(&[("x-forwarded-method", "OPTIONS")]))),
            403,
            "CORS preflights are the proxy's"
        );
        assert_eq!(
            status(read(&e, "10.0.0.2", &with(&[("x-forwarded-method", "G E T")]))),
            400
        );
        let mut no_host = traefik_check();
        no_host.remove("x-forwarded-host");
        assert_eq!(
            status(read(&e, "10.0.0.2", &no_host)),
            400,
            "the Host would be mxgate's own"
        );
    }

    #[test]
    fn with_trust_proxy_and_no_public_url_the_caller_names_the_public_url() {
        let s = settings("", "transport:\n  http:\n    trust_proxy: true\n");
        let e = endpoint(&s);
        let h = traefik_check();
        let original = read(&e, "10.0.0.2", &h).unwrap();
        assert_eq!(original.origin, Some(PublicOrigin("https://mcp.example.com".into())));
        let mut h = traefik_check();
        h.insert("origin", "https://mcp.example.com".parse().unwrap());
        assert_eq!(status(read(&e, "10.0.0.2", &h)), 200, "its own origin");
    }
}
