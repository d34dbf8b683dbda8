//! The OAuth 2.1 authorization server MCP clients talk to (MCP authorization spec
//! 2025-06-18 … 2026-07-28): discovery metadata, client registration, `/authorize` with
//! consent, the provider callback, and `/token`. Handlers are plain functions from
//! `http::Request<Bytes>` to `http::Response<Bytes>`; they never see Pingora, and never
//! forward a client's token anywhere.

mod authorize;
mod backchannel_logout;
pub mod browser_login;
mod callback;
pub mod challenge;
pub(crate) mod client_metadata;
pub mod clients;
mod consent;
mod consent_memory;
mod cookies;
pub mod error;
mod login;
pub mod metadata;
mod metadata_document;
mod pages;
pub(crate) mod params;
pub mod pkce;
pub mod redirect_uri;
mod register;
mod response;
mod revoke;
mod token;
pub mod transactions;

use crate::config::Settings;
use crate::identity::signing_keys::SigningKeys;
use crate::policy::SharedPolicies;
use crate::providers::{ProviderEntry, ProviderSet};
use crate::rate_limit::{Endpoint, Limited, RateLimiter};
use crate::session::Sessions;
use crate::store::Store;
use bytes::Bytes;
use clients::{ClientRegistry, DEFAULT_SCOPE};
use cookies::CookiePolicy;
use http::{Method, Request, Response, StatusCode};
use metadata::*;
use metadata_document::MetadataDocuments;
use std::sync::Arc;

/// The endpoints this server answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    ProtectedResourceMetadata,
    AuthorizationServerMetadata,
    Jwks,
    Register,
    Authorize,
    Consent,
    Callback,
    Token,
    Revoke,
    Logout,
    Login,
    /// An identity provider's back-channel logout (`backchannel_logout` in mxgate.yml).
    BackchannelLogout,
}

// === impl Route ===

impl Route {
    /// The public documents any origin may read (metadata, JWKS).
    pub fn is_public(self) -> bool {
        matches!(
            self,
            Route::ProtectedResourceMetadata | Route::AuthorizationServerMetadata | Route::Jwks
        )
    }

    /// The rate-limited endpoint this route is, if any.
    fn endpoint(self) -> Option<Endpoint> {
        Some(match self {
            Route::Register => Endpoint::Register,
            Route::Authorize => Endpoint::Authorize,
            Route::Consent => Endpoint::Consent,
            Route::Login => Endpoint::Login,
            Route::Callback => Endpoint::Callback,
            Route::Token => Endpoint::Token,
            Route::Revoke => Endpoint::Revoke,
            Route::Logout => Endpoint::Logout,
            Route::BackchannelLogout => Endpoint::BackchannelLogout,
            Route::ProtectedResourceMetadata | Route::AuthorizationServerMetadata | Route::Jwks => return None,
        })
    }
}

/// The client's address (see `gateway::proxy_trust`), set by the gateway on each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

// === impl ClientAddress ===

impl ClientAddress {
    /// The address the gateway set on `req` (none when no gateway did, as in handler tests).
    pub fn of<B>(req: &Request<B>) -> Option<std::net::IpAddr> {
        req.extensions().get::<ClientAddress>().map(|a| a.0)
    }
}

/// The public URL a request reached mxgate by, when it differs from `public_url` (set by the
/// gateway from a trusted proxy's `X-Forwarded-Proto/-Host`; see `gateway::proxy_trust`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicOrigin(pub String);

pub struct AuthorizationServer {
    settings: Arc<Settings>,
    store: Store,
    providers: Arc<ProviderSet>,
    clients: ClientRegistry,
    /// Sessions and their tokens: created at the callback, issued at `/token`, ended at
    /// `/revoke` and `/logout`.
    sessions: Sessions,
    /// Every scope this server can grant (advertised in the metadata).
    scopes: Vec<String>,
    /// The scopes a client that registered itself or names a metadata document may hold, and a
    /// person's browser session (`dynamic_clients.scopes`); never a static client's own.
    dynamic_scopes: Vec<String>,
    /// The metadata for `public_url` (other origins are rendered when asked).
    metadata: Metadata,
    /// The signing keys whose public halves `/.well-known/jwks.json` publishes.
    keys: Arc<SigningKeys>,
    /// Shared with the server a reload replaces, so counts carry over.
    limiter: Arc<RateLimiter>,
    /// `role_mappings` and the login rules of `policies`, applied at the callback.
    policies: SharedPolicies,
}

// === impl AuthorizationServer ===

impl AuthorizationServer {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        providers: Arc<ProviderSet>,
        sessions: Sessions,
        keys: Arc<SigningKeys>,
        policies: SharedPolicies,
    ) -> Self {
        let scopes = supported_scopes(&settings);
        let settings_rate_limits = settings.rate_limits.clone();
        Self {
            clients: ClientRegistry::new(
                &settings.auth.clients,
                store.clone(),
                MetadataDocuments::new(
                    settings.client_documents.clone(),
                    settings.dynamic_clients.scopes.clone(),
                ),
                &settings.dynamic_clients,
            ),
            metadata: Metadata::new(&settings.public_url, &settings, &scopes),
            scopes,
            dynamic_scopes: settings.dynamic_clients.scopes.clone(),
            settings,
            store,
            providers,
            sessions,
            keys,
            limiter: Arc::new(RateLimiter::new(settings_rate_limits)),
            policies,
        }
    }

    /// The identity providers this server signs people in with.
    pub fn providers(&self) -> &Arc<ProviderSet> {
        &self.providers
    }

    /// This server counting requests with `running`'s rate limiter (rate limits change only at a
    /// restart): what a reload uses so that it resets no count.
    pub fn sharing_rate_limits_with(mut self, running: &AuthorizationServer) -> Self {
        self.limiter = running.limiter.clone();
        self
    }

    /// Counts a request from `address` to `route`; the 429 to send when it is over the limit.
    pub fn check_address_rate(&self, route: Route, address: std::net::IpAddr) -> Result<(), Limited> {
        match route.endpoint() {
            Some(endpoint) => self.limiter.check_address(endpoint, address),
            None => Ok(()),
        }
    }

    /// Counts a request naming `client_id` at `route`.
    fn check_client_rate(&self, route: Route, client_id: &str) -> Result<(), Limited> {
        match route.endpoint() {
            Some(endpoint) => self.limiter.check_client(endpoint, client_id),
            None => Ok(()),
        }
    }

    /// The public URL of this request: a [`PublicOrigin`] set by the gateway, else `public_url`.
    fn origin_of<'a>(&'a self, req: &'a Request<Bytes>) -> &'a str {
        req.extensions()
            .get::<PublicOrigin>()
            .map(|o| o.0.as_str())
            .unwrap_or(&self.settings.public_url)
    }

    /// Cookies for pages served at `origin` (`__Host-` and `Secure` on https).
    fn cookies_for(origin: &str) -> CookiePolicy {
        CookiePolicy::new(origin.starts_with("https://"))
    }

    /// Where `entry`'s provider sends the browser back to, for a login that started at `origin`.
    fn callback_url(origin: &str, entry: &ProviderEntry) -> String {
        format!("{origin}{}", entry.callback_path)
    }

    fn metadata_for(&self, origin: &str) -> std::borrow::Cow<'_, Metadata> {
        if origin == self.settings.public_url {
            std::borrow::Cow::Borrowed(&self.metadata)
        } else {
            std::borrow::Cow::Owned(Metadata::new(origin, &self.settings, &self.scopes))
        }
    }

    /// Which local endpoint, if any, a path belongs to.
    pub fn route(&self, path: &str) -> Option<Route> {
        let prm_suffixed = path
            .strip_prefix(PROTECTED_RESOURCE_PATH)
            .is_some_and(|rest| rest.is_empty() || rest == self.settings.mcp_path);
        Some(match path {
            _ if prm_suffixed => Route::ProtectedResourceMetadata,
            AUTHORIZATION_SERVER_PATH | OPENID_CONFIGURATION_PATH => Route::AuthorizationServerMetadata,
            JWKS_PATH => Route::Jwks,
            REGISTER_PATH => Route::Register,
            AUTHORIZE_PATH => Route::Authorize,
            CONSENT_PATH => Route::Consent,
            TOKEN_PATH => Route::Token,
            REVOKE_PATH => Route::Revoke,
            LOGOUT_PATH => Route::Logout,
            LOGIN_PATH => Route::Login,
            p if self.providers.by_callback_path(p).is_some() => Route::Callback,
            p if self.settings.backchannel_logout.iter().any(|b| b.path == p) => Route::BackchannelLogout,
            _ => return None,
        })
    }

    /// Answers a request to a local endpoint.
    pub async fn handle(&self, route: Route, req: Request<Bytes>) -> Response<Bytes> {
        let method = req.method().clone();
        let allowed = match route {
            Route::Register | Route::Token | Route::Consent | Route::Revoke | Route::BackchannelLogout => Method::POST,
            Route::Logout if method == Method::POST => Method::POST,
            _ => Method::GET,
        };
        if method != allowed && !(allowed == Method::GET && method == Method::HEAD) {
            let mut resp = response::json(
                StatusCode::METHOD_NOT_ALLOWED,
                &error::OAuthError::invalid_request(format!("use {allowed} for this endpoint")).body(),
            );
            if let Ok(v) = http::HeaderValue::from_str(allowed.as_str()) {
                resp.headers_mut().insert(http::header::ALLOW, v);
            }
            return resp;
        }
        if method == Method::POST && !req.body().is_empty() {
            if let Err(e) = check_content_type(route, req.headers()) {
                return e.into_response();
            }
        }
        match route {
            Route::ProtectedResourceMetadata => {
                response::public_json(self.metadata_for(self.origin_of(&req)).protected_resource.clone())
            }
            Route::AuthorizationServerMetadata => {
                response::public_json(self.metadata_for(self.origin_of(&req)).authorization_server.clone())
            }
            Route::Jwks => response::jwks_json(self.keys.jwks()),
            Route::Register => self
                .register(req)
                .await
                .unwrap_or_else(error::OAuthError::into_response),
            Route::Token => self.token(req).await.unwrap_or_else(error::OAuthError::into_response),
            Route::Revoke => self.revoke(req).await.unwrap_or_else(error::OAuthError::into_response),
            Route::Logout => self.logout(req).await,
            Route::Login => self.browser_login(req).await,
            Route::Authorize => self.authorize(req).await,
            Route::Consent => self.consent(req).await,
            Route::Callback => self.callback(req).await,
            Route::BackchannelLogout => self.backchannel_logout(req).await,
        }
    }

    /// The 401 for a protected path (see [`challenge`]).
    pub fn unauthorized(&self, origin: Option<&PublicOrigin>, challenge: challenge::Challenge<'_>) -> Response<Bytes> {
        let origin = origin.map(|o| o.0.as_str()).unwrap_or(&self.settings.public_url);
        challenge::unauthorized(
            &self.metadata_for(origin).protected_resource_url,
            &self.settings.auth.required_scopes,
            challenge,
        )
    }
}

/// A POST body must be what the endpoint reads, and say so: JSON at `/register` (RFC 7591), a
/// form everywhere else (RFC 6749 §3.2).
fn check_content_type(route: Route, headers: &http::HeaderMap) -> Result<(), error::OAuthError> {
    let expected = match route {
        Route::Register => "application/json",
        _ => "application/x-www-form-urlencoded",
    };
    let given = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    match given {
        Some(t) if t.eq_ignore_ascii_case(expected) => Ok(()),
        _ => Err(error::OAuthError::invalid_request(format!(
            "the request body must be {expected} (Content-Type)"
        ))),
    }
}

/// Every scope some client may be granted: the dynamic clients' (`mxcp:access` and the required
/// scopes by default) and each static client's own. Advertised, never granted wholesale: a client
/// gets only its own list (see `clients`).
fn supported_scopes(settings: &Settings) -> Vec<String> {
    let mut scopes = vec![DEFAULT_SCOPE.to_string()];
    let extra = settings
        .dynamic_clients
        .scopes
        .iter()
        .chain(settings.auth.required_scopes.iter())
        .chain(settings.auth.clients.iter().flat_map(|c| c.scopes.iter()));
    for scope in extra {
        if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    scopes
}

#[cfg(test)]
mod tests;
