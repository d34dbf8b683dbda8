//! `/authorize`: checks the client and its redirect URI first — a bad one gets an error page,
//! never a redirect — then the rest of the request (PKCE S256, resource, scope), whose errors
//! go back to the client. A valid request goes to the consent page, or straight to the
//! provider when the person in this browser already approved this client, redirect URI and
//! scopes (see `consent_memory`).

use super::clients::{ClientRecord, GRANT_AUTHORIZATION_CODE};
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::pkce::is_valid_s256_challenge;
use super::redirect_uri;
use super::transactions::AuthorizationRequest;
use super::{pages, response, AuthorizationServer};
use bytes::Bytes;
use http::{Request, Response, StatusCode};

/// Longest values of the free-form parameters kept with a login in progress.
const MAX_STATE_LEN: usize = 2048;
const MAX_LOGIN_HINT_LEN: usize = 256;
const MAX_SCOPE_LEN: usize = 1024;
const MAX_RESOURCE_LEN: usize = 2048;

/// Which parameter, if any, is longer than mxgate stores.
pub(super) fn oversized_parameter(params: &Params) -> Option<String> {
    [
        ("state", MAX_STATE_LEN),
        ("login_hint", MAX_LOGIN_HINT_LEN),
        ("scope", MAX_SCOPE_LEN),
        ("resource", MAX_RESOURCE_LEN),
    ]
    .into_iter()
    .find(|(name, max)| params.get(name).is_some_and(|v| v.len() > *max))
    .map(|(name, max)| format!("The parameter `{name}` is longer than {max} bytes."))
}

pub(super) fn error_page(status: StatusCode, title: &str, message: &str) -> Response<Bytes> {
    response::html(status, pages::error(title, message))
}

impl AuthorizationServer {
    pub(super) async fn authorize(&self, req: Request<Bytes>) -> Response<Bytes> {
        let query = req.uri().query().unwrap_or_default();
        let params = match Params::parse(query.as_bytes()) {
            Ok(p) => p,
            Err(name) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    &format!("The parameter `{name}` appears more than once."),
                )
            }
        };
        if let Some(message) = oversized_parameter(&params) {
            return error_page(StatusCode::BAD_REQUEST, "Invalid request", &message);
        }
        let Some(client_id) = params.get("client_id") else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The request has no client_id.",
            );
        };
        if let Err(limited) = self.check_client_rate(super::Route::Authorize, client_id) {
            return OAuthError::from(limited).into_response();
        }
        let client = match self.clients.get(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Unknown application",
                    "This application is not registered with this server. Ask it to register again.",
                )
            }
            Err(e) if e.code == ErrorCode::TemporarilyUnavailable => {
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Temporarily unavailable",
                    "The sign-in service cannot reach its store. Please try again in a moment.",
                )
            }
            Err(e) if e.code == ErrorCode::ServerError => {
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Server error",
                    "Please try again later.",
                )
            }
            Err(e) => {
                tracing::info!(client_id, error = %e.description, "client metadata document refused");
                return error_page(StatusCode::BAD_REQUEST, "Unusable application metadata", &e.description);
            }
        };
        let redirect_uri = match (params.get("redirect_uri"), client.redirect_uris.as_slice()) {
            (Some(uri), _) => uri.to_string(),
            (None, [only]) => only.clone(),
            (None, _) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid request",
                    "The request has no redirect_uri.",
                )
            }
        };
        if !client
            .redirect_uris
            .iter()
            .any(|r| redirect_uri::matches(r, &redirect_uri))
        {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid redirect URI",
                "The redirect URI of this request is not registered for this application.",
            );
        }

        let origin = self.origin_of(&req).to_string();
        let mut request = AuthorizationRequest {
            issuer: origin.clone(),
            client_id: client.client_id.clone(),
            redirect_uri_sent: params.get("redirect_uri").is_some(),
            redirect_uri,
            code_challenge: String::new(),
            state: params.get("state").map(str::to_string),
            login_hint: params.get("login_hint").map(str::to_string),
            scope: Vec::new(),
            resource: String::new(),
        };
        if let Err(e) = self.complete_request(&params, &client, &mut request) {
            return request.redirect_error(&e);
        }
        if let Err(e) = self.check_pending_logins().await {
            return request.redirect_error(&e);
        }
        if let Some(remembered) = self.remembered_login(req.headers(), &request) {
            crate::audit::record(
                crate::audit::AuditRecord::new(crate::audit::AuditEvent::ConsentGiven)
                    .client_id(&request.client_id)
                    .client_addr(super::ClientAddress::of(&req))
                    .provider(&remembered.provider)
                    .reason(format!("remembered approval; scope: {}", request.scope.join(" "))),
            );
            return self
                .start_login(request, Some(&remembered.provider), remembered.consent, None)
                .await;
        }
        self.show_consent(req.headers(), &client, request).await
    }

    /// Validates the parts of the request whose errors may be redirected to the client.
    fn complete_request(
        &self,
        params: &Params,
        client: &ClientRecord,
        request: &mut AuthorizationRequest,
    ) -> Result<(), OAuthError> {
        match params.get("response_type") {
            Some("code") => {}
            Some(other) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    format!("response_type `{other}` is not supported; use `code`"),
                ))
            }
            None => return Err(OAuthError::invalid_request("response_type is required")),
        }
        if !client.may_use_grant(GRANT_AUTHORIZATION_CODE) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the authorization_code grant",
            ));
        }
        let challenge = params.get("code_challenge").ok_or_else(|| {
            OAuthError::invalid_request("PKCE is required: send code_challenge with code_challenge_method=S256")
        })?;
        if params.get("code_challenge_method") != Some("S256") {
            return Err(OAuthError::invalid_request("code_challenge_method must be S256"));
        }
        if !is_valid_s256_challenge(challenge) {
            return Err(OAuthError::invalid_request(
                "code_challenge is not a base64url SHA-256 value",
            ));
        }
        request.code_challenge = challenge.to_string();
        request.resource = self.check_resource(&request.issuer, params.get("resource"))?;
        request.scope = self.grant_scopes(client, params.get("scope"))?;
        Ok(())
    }

    /// The resource indicator (RFC 8707) must name this MCP server; absent means this server.
    pub(super) fn check_resource(&self, origin: &str, resource: Option<&str>) -> Result<String, OAuthError> {
        let canonical = format!("{origin}{}", self.settings.mcp_path);
        let Some(given) = resource else {
            return Ok(canonical);
        };
        let trimmed = given.trim_end_matches('/');
        if trimmed == canonical || trimmed == origin {
            Ok(canonical)
        } else {
            Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                format!("this server issues tokens for {canonical}, not for {given}"),
            ))
        }
    }

    /// Requested scopes the client may have; all it may have when it asks for none.
    fn grant_scopes(&self, client: &ClientRecord, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
        let Some(requested) = requested else {
            return Ok(client.scopes.clone());
        };
        let granted: Vec<String> = requested
            .split_whitespace()
            .filter(|s| client.scopes.iter().any(|a| a == s))
            .map(str::to_string)
            .collect();
        if granted.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "none of the requested scopes is available to this client (available: {})",
                    client.scopes.join(" ")
                ),
            ));
        }
        Ok(granted)
    }
}
