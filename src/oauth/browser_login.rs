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
use crate::session::stateless;
use crate::session::tokens::IssuePolicy;
use crate::session::SessionRecord;
use crate::store::StoreError;
use crate::support::now;
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
        if let Some(message) = params.as_ref().and_then(super::authorize::oversized_parameter) {
            return error_page(StatusCode::BAD_REQUEST, "Invalid request", &message);
        }
        let param = |name: &str| params.as_ref().and_then(|p| p.get(name));
        let return_to = safe_return_to(param("return_to"));
        let provider = param("provider").filter(|p| self.providers.by_name(p).is_some());
        if provider.is_none() && self.providers.several() {
            let options = self.provider_options();
            return response::html(StatusCode::OK, pages::provider_choice(&options, LOGIN_PATH, &return_to));
        }
        if let Err(e) = self.check_pending_logins().await {
            return error_page(StatusCode::SERVICE_UNAVAILABLE, "Try again later", &e.description);
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
        let cookie = match self.browser_cookie(origin, session, now()).await {
            Ok((_, cookie)) => cookie,
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
        response::set_cookie(&mut resp, &cookie);
        resp
    }

    /// A browser session token and its `Set-Cookie`. Its token lives as long as the session when it is
    /// an opaque token checked against the store on use; in stateless mode the token is a sealed
    /// snapshot nothing checks, so it lives only `access_token_ttl` and is renewed on use while
    /// the session lasts ([`Self::renew_browser_session`]) — revocation and logout take effect
    /// within that bound. The cookie itself lasts as long as the session.
    async fn browser_cookie(
        &self,
        origin: &str,
        session: &SessionRecord,
        now: u64,
    ) -> Result<(String, String), StoreError> {
        let stateless = self.settings.transport.stateless;
        let token_ttl = if stateless {
            self.settings.tokens.access_token
        } else {
            self.settings.tokens.session
        };
        let policy = IssuePolicy {
            access_ttl: token_ttl,
            refresh_ttl: token_ttl,
            with_refresh_token: false,
            stateless,
        };
        let issued = self.sessions.issue_tokens(session, policy, now).await?;
        let cookie_life = session.expires_at.saturating_sub(now);
        let cookie = Self::cookies_for(origin).set(cookies::SESSION, &issued.access_token, cookie_life);
        Ok((issued.access_token, cookie))
    }

    /// Stateless mode: a browser session token that has expired is replaced by a fresh one while
    /// its session lives (read from the store: a revoked or ended session is not renewed).
    /// Returns the new token and its `Set-Cookie`.
    pub async fn renew_browser_session(
        &self,
        origin: Option<&PublicOrigin>,
        expired_token: &str,
        now: u64,
    ) -> Option<(String, String)> {
        if !self.settings.transport.stateless {
            return None;
        }
        let (snapshot, _) = stateless::open_sealed(self.store.cipher(), expired_token).ok()?;
        if snapshot.client_id != BROWSER_CLIENT_ID {
            return None;
        }
        let session = match self.sessions.live(&snapshot.id, now).await {
            Ok(Some(session)) => session,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew a browser session");
                return None;
            }
        };
        let origin = origin.map(|o| o.0.as_str()).unwrap_or(&self.settings.public_url);
        let renewed = self.browser_cookie(origin, &session, now).await.ok()?;
        tracing::debug!(session = %session.id, "browser session renewed");
        Some(renewed)
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
