//! The OAuth 2.1 authorization server MCP clients talk to (MCP authorization spec
//! 2025-06-18 … 2026-07-28): discovery metadata, client registration, `/authorize` with
//! consent, the provider callback, and `/token`. Handlers are plain functions from
//! `http::Request<Bytes>` to `http::Response<Bytes>`; they never see Pingora, and never
//! forward a client's token anywhere.

mod authorize;
mod callback;
pub mod challenge;
pub mod clients;
mod consent;
mod cookies;
pub mod error;
mod login;
pub mod metadata;
mod pages;
mod params;
pub mod pkce;
pub mod redirect_uri;
mod register;
mod response;
mod token;
pub mod transactions;

use crate::config::Settings;
use crate::providers::Provider;
use crate::session::bearer::BearerAuthenticator;
use crate::store::{Store, Table};
use bytes::Bytes;
use clients::{ClientRegistry, DEFAULT_SCOPE};
use cookies::CookiePolicy;
use http::{Method, Request, Response, StatusCode};
use metadata::*;
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
}

pub struct AuthorizationServer {
    settings: Arc<Settings>,
    store: Store,
    provider: Arc<dyn Provider>,
    clients: ClientRegistry,
    bearer: Arc<BearerAuthenticator>,
    cookies: CookiePolicy,
    /// Every scope this server can grant.
    scopes: Vec<String>,
    metadata: Metadata,
    jwks: Bytes,
    callback_url: String,
}

// === impl AuthorizationServer ===

impl AuthorizationServer {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        provider: Arc<dyn Provider>,
        bearer: Arc<BearerAuthenticator>,
        jwks: Bytes,
    ) -> Self {
        let scopes = supported_scopes(&settings);
        let callback_url = format!(
            "{}{}",
            settings.public_url,
            settings.auth.provider.callback_path().unwrap_or("/callback")
        );
        Self {
            clients: ClientRegistry::new(&settings.auth.clients, store.clone()),
            cookies: CookiePolicy::new(settings.public_url_is_https()),
            metadata: Metadata::new(&settings, &scopes),
            scopes,
            settings,
            store,
            provider,
            bearer,
            jwks,
            callback_url,
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
            p if Some(p) == self.settings.auth.provider.callback_path() => Route::Callback,
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
            Route::Register | Route::Token | Route::Consent => Method::POST,
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
            Route::ProtectedResourceMetadata => response::public_json(self.metadata.protected_resource.clone()),
            Route::AuthorizationServerMetadata => response::public_json(self.metadata.authorization_server.clone()),
            Route::Jwks => response::public_json(self.jwks.clone()),
            Route::Register => self
                .register(req)
                .await
                .unwrap_or_else(error::OAuthError::into_response),
            Route::Token => self.token(req).await.unwrap_or_else(error::OAuthError::into_response),
            Route::Authorize => self.authorize(req).await,
            Route::Consent => self.consent(req).await,
            Route::Callback => self.callback(req).await,
        }
    }

    /// The 401 for a protected path (see [`challenge`]).
    pub fn unauthorized(&self, challenge: challenge::Challenge<'_>) -> Response<Bytes> {
        challenge::unauthorized(
            &self.metadata.protected_resource_url,
            &self.settings.auth.required_scopes,
            challenge,
        )
    }

    /// Ends a session: its tokens stop working at once, here and in the request cache.
    pub async fn revoke_session(&self, session_id: &str) {
        if let Err(e) = self.store.delete(Table::Sessions, session_id).await {
            tracing::error!(error = %e, session = %session_id, "could not revoke a session");
        }
        self.bearer.forget_session(session_id);
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
