//! People using the gateway in a browser: `/login` sends them through the provider (a choice
//! page first when there are several) and back to where they were, with a session cookie
//! (`__Host-mxgate-session`, `Secure`, `HttpOnly`, `SameSite=Lax`; without the prefix and
//! `Secure` only on a plain-http loopback URL, for development). Their requests then reach the
//! core with the same assertion an MCP client's would. No consent page: the person signs in to
//! the gateway itself, not on behalf of a third-party client.

use super::authorize::error_page;
use super::cookies;
use super::metadata::LOGIN_PATH;
use super::params::Params;
use super::transactions::{AuthorizationRequest, LoginConsent};
use super::{pages, response, AuthorizationServer, PublicOrigin};
use crate::session::tokens::{issue_tokens, IssuePolicy};
use crate::session::SessionRecord;
use crate::store::now;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use url::{Host, Url};

/// The client id of sessions made by a browser sign-in.
pub const BROWSER_CLIENT_ID: &str = "mxgate-browser";
const MAX_RETURN_TO: usize = 2048;

/// A local path to come back to: starts with one `/`, no scheme, no backslash or control chars.
fn safe_return_to(value: Option<&str>) -> String {
    value
        .filter(|v| {
            v.starts_with('/')
                && !v.starts_with("//")
                && v.len() <= MAX_RETURN_TO
                && !v.chars().any(|c| c == '\\' || c.is_control())
        })
        .unwrap_or("/")
        .to_string()
}

/// Browser sessions need `Secure` cookies, so https — or plain http on loopback, for development.
fn browser_login_allowed(origin: &str) -> bool {
    let Ok(url) = Url::parse(origin) else { return false };
    url.scheme() == "https"
        || match url.host() {
            Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(Host::Ipv4(ip)) => ip.is_loopback(),
            Some(Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

impl AuthorizationServer {
    /// `GET /login?return_to=/path[&provider=name]`.
    pub(super) async fn browser_login(&self, req: Request<Bytes>) -> Response<Bytes> {
        let origin = self.origin_of(&req).to_string();
        if !browser_login_allowed(&origin) {
            return error_page(
                StatusCode::FORBIDDEN,
                "Sign-in needs https",
                "Browser sign-in is only offered over https (or on a loopback address for development).",
            );
        }
        let params = Params::parse(req.uri().query().unwrap_or_default().as_bytes()).ok();
        let param = |name: &str| params.as_ref().and_then(|p| p.get(name));
        let return_to = safe_return_to(param("return_to"));
        let provider = param("provider").filter(|p| self.providers.by_name(p).is_some());
        if provider.is_none() && self.providers.several() {
            let options = self.provider_options();
            return response::html(StatusCode::OK, pages::provider_choice(&options, LOGIN_PATH, &return_to));
        }
        let request = AuthorizationRequest {
            issuer: origin.clone(),
            client_id: BROWSER_CLIENT_ID.to_string(),
            redirect_uri: format!("{origin}{return_to}"),
            redirect_uri_sent: false,
            code_challenge: String::new(),
            state: None,
            scope: self.dynamic_scopes.clone(),
            resource: format!("{origin}{}", self.settings.mcp_path),
            login_hint: param("login_hint").map(str::to_string),
        };
        self.start_login(request, provider, LoginConsent::NotAsked, Some(return_to))
            .await
    }

    /// After the provider: the session cookie, and back to where the person was going.
    pub(super) async fn browser_signed_in(
        &self,
        origin: &str,
        session: &SessionRecord,
        return_to: &str,
    ) -> Response<Bytes> {
        let policy = IssuePolicy {
            access_ttl: self.settings.tokens.session,
            refresh_ttl: self.settings.tokens.session,
            with_refresh_token: false,
            stateless: self.settings.transport.stateless,
        };
        let issued = match issue_tokens(&self.store, session, policy, now()).await {
            Ok(issued) => issued,
            Err(e) => {
                tracing::error!(error = %e, "could not store a browser session");
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Server error",
                    "Please try again later.",
                );
            }
        };
        let mut resp = response::redirect(return_to);
        let cookie = Self::cookies_for(origin).set(cookies::SESSION, &issued.access_token, issued.expires_in);
        response::set_cookie(&mut resp, &cookie);
        resp
    }

    /// The browser session token a request carries, if any.
    pub fn browser_session<'a>(&self, origin: Option<&PublicOrigin>, headers: &'a HeaderMap) -> Option<&'a str> {
        let origin = origin.map(|o| o.0.as_str()).unwrap_or(&self.settings.public_url);
        Self::cookies_for(origin).get(headers, cookies::SESSION)
    }

    /// Where to send a browser that asks for a protected page without a session.
    pub fn login_redirect(&self, origin: Option<&PublicOrigin>, path_and_query: &str) -> Response<Bytes> {
        let origin = origin.map(|o| o.0.as_str()).unwrap_or(&self.settings.public_url);
        let return_to: String =
            form_urlencoded::byte_serialize(safe_return_to(Some(path_and_query)).as_bytes()).collect();
        response::redirect(&format!("{origin}{LOGIN_PATH}?return_to={return_to}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return_to(Some("/mcp/ui?x=1")), "/mcp/ui?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil",
            "relative",
            "/a\nb",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/");
    }

    #[test]
    fn browser_sign_in_needs_https_or_loopback() {
        assert!(browser_login_allowed("https://mcp.example.com"));
        assert!(browser_login_allowed("http://127.0.0.1:8000"));
        assert!(browser_login_allowed("http://localhost:8000"));
        assert!(!browser_login_allowed("http://mcp.example.com"));
    }
}
