//! The OAuth 2.1 authorization server MCP clients talk to (MCP authorization spec
//! 2025-06-18 … 2026-07-28): discovery metadata, client registration, `/authorize` with
//! consent, the provider callback, and `/token`. Handlers are plain functions from
//! `http::Request<Bytes>` to `http::Response<Bytes>`; they never see Pingora, and never
//! forward a client's token anywhere.

mod authorize;
pub mod browser_login;
mod callback;
pub mod challenge;
pub(crate) mod client_metadata;
pub mod clients;
mod consent;
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
use crate::providers::{ProviderEntry, ProviderSet};
use crate::session::bearer::BearerAuthenticator;
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
    bearer: Arc<BearerAuthenticator>,
    /// Every scope this server can grant.
    scopes: Vec<String>,
    /// The metadata for `public_url` (other origins are rendered when asked).
    metadata: Metadata,
    jwks: Bytes,
}

// === impl AuthorizationServer ===

impl AuthorizationServer {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        providers: Arc<ProviderSet>,
        bearer: Arc<BearerAuthenticator>,
        jwks: Bytes,
    ) -> Self {
        let scopes = supported_scopes(&settings);
        Self {
            clients: ClientRegistry::new(
                &settings.auth.clients,
                store.clone(),
                MetadataDocuments::new(settings.client_documents.clone(), scopes.clone()),
            ),
            metadata: Metadata::new(&settings.public_url, &settings, &scopes),
            scopes,
            settings,
            store,
            providers,
            bearer,
            jwks,
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
            _ => return None,
        })
    }

    /// Answers a request to a local endpoint.
    pub async fn handle(&self, route: Route, req: Request<Bytes>) -> Response<Bytes> {
        let method = req.method().clone();
        if method == Method::OPTIONS {
            return response::preflight();
        }
        let allowed = match route {
            Route::Register | Route::Token | Route::Consent | Route::Revoke => Method::POST,
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
        match route {
            Route::ProtectedResourceMetadata => {
                response::public_json(self.metadata_for(self.origin_of(&req)).protected_resource.clone())
            }
            Route::AuthorizationServerMetadata => {
                response::public_json(self.metadata_for(self.origin_of(&req)).authorization_server.clone())
            }
            Route::Jwks => response::public_json(self.jwks.clone()),
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

/// `mxcp:access`, the required scopes and every scope a static client may have.
fn supported_scopes(settings: &Settings) -> Vec<String> {
    let mut scopes = vec![DEFAULT_SCOPE.to_string()];
    let extra = settings
        .auth
        .required_scopes
        .iter()
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
