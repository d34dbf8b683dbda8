//! The provider's redirect back (`callback_path`): takes the single-use login state, checks
//! that this is the browser that started the login, lets the provider exchange the code and
//! identify the user, checks that a login that skipped consent is the approver's, applies
//! `role_mappings` and the login rules of `policies` (a denial is a `403` page with the rule's
//! reason, before anything is issued), creates the session and an authorization code, remembers the approval, and sends the browser back to
//! the MCP client with `code`, `state` and `iss`.

use super::authorize::error_page;
use super::cookies;
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::transactions::{AuthorizationRequest, CodeRecord, LoginState};
use super::{response, AuthorizationServer, ClientAddress};
use crate::audit::{self, AuditEvent, AuditRecord};
use crate::metrics::{metrics, LoginResult};
use crate::policy::variables::{RequestFacts, UserFacts};
use crate::policy::Decision;
use crate::providers::{LoginCallback, LoginOutcome, ProviderError};
use crate::session::tokens::AUTHORIZATION_CODE_PREFIX;
use crate::session::SessionRecord;
use crate::store::Table;
use crate::support::{new_opaque_token, now, random_id, token_hash};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use subtle::ConstantTimeEq;

fn store_failure(e: crate::store::StoreError) -> Response<Bytes> {
    tracing::error!(error = %e, "store failure reading a login state");
    error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Server error",
        "Please try again later.",
    )
}

impl AuthorizationServer {
    pub(super) async fn callback(&self, req: Request<Bytes>) -> Response<Bytes> {
        let Ok(params) = Params::parse(req.uri().query().unwrap_or_default().as_bytes()) else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "A parameter appears more than once.",
            );
        };
        let Some(state) = params.get("state") else {
            login_failed(&req, None, "the identity provider sent no state");
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The identity provider sent no state.",
            );
        };
        // Read, check the browser, and only then consume: a callback opened in another browser
        // must not spend the login of the browser that started it.
        let key = token_hash(state);
        let expired = || {
            error_page(
                StatusCode::BAD_REQUEST,
                "This sign-in has expired",
                "The sign-in expired or was already completed. Start again from your application.",
            )
        };
        let login: LoginState = match self.store.get(Table::LoginStates, &key).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                login_failed(
                    &req,
                    None,
                    "unknown or expired state (state mismatch, or a login already completed)",
                );
                return expired();
            }
            Err(e) => return store_failure(e),
        };
        let Some(entry) = self
            .providers
            .by_callback_path(req.uri().path())
            .filter(|e| login.provider.is_empty() || e.provider.name() == login.provider)
        else {
            login_failed(
                &req,
                Some(&login),
                "the callback came from another provider than the login went to",
            );
            return error_page(
                StatusCode::BAD_REQUEST,
                "Sign-in not accepted",
                "The identity provider that answered is not the one this sign-in went to.",
            );
        };
        let cookies = Self::cookies_for(&login.request.issuer);
        let same_browser = cookies
            .get(req.headers(), cookies::LOGIN)
            .is_some_and(|b| bool::from(token_hash(b).as_bytes().ct_eq(login.browser_binding_hash.as_bytes())));
        if !same_browser {
            tracing::warn!(client_id = %login.request.client_id, "login callback arrived in a browser that did not start it");
            login_failed(
                &req,
                Some(&login),
                "the callback arrived in a browser that did not start the login",
            );
            return error_page(
                StatusCode::FORBIDDEN,
                "Sign-in not accepted",
                "This sign-in was started in another browser. Start again from your application on this device.",
            );
        }
        match self.store.take::<LoginState>(Table::LoginStates, &key).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                login_failed(&req, Some(&login), "the login was already completed (state used twice)");
                return expired();
            }
            Err(e) => return store_failure(e),
        }
        let request = &login.request;
        let counted = |result| metrics().login(entry.provider.name(), result);
        if let Some(error) = params.get("error") {
            tracing::info!(provider_error = error, client_id = %request.client_id, "the provider did not complete the login");
            let code = if error == "access_denied" {
                counted(LoginResult::Denied);
                ErrorCode::AccessDenied
            } else {
                counted(LoginResult::Failed);
                ErrorCode::ServerError
            };
            let error = OAuthError::new(code, format!("the identity provider answered `{error}`"));
            return self.fail(&req, &login, error.description.clone(), error);
        }
        let Some(code) = params.get("code") else {
            counted(LoginResult::Failed);
            let error = OAuthError::server_error("the identity provider sent no authorization code");
            return self.fail(&req, &login, error.description.clone(), error);
        };
        let mut outcome = match entry
            .provider
            .complete_login(&LoginCallback {
                code,
                iss: params.get("iss"),
                pkce_verifier: &login.pkce_verifier,
                nonce: &login.nonce,
                redirect_uri: &Self::callback_url(&request.issuer, entry),
            })
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, client_id = %request.client_id, "login at the provider failed");
                let code = match e {
                    ProviderError::Rejected { .. } => ErrorCode::AccessDenied,
                    ProviderError::Unreachable { .. } => ErrorCode::TemporarilyUnavailable,
                    _ => ErrorCode::ServerError,
                };
                counted(if code == ErrorCode::AccessDenied {
                    LoginResult::Denied
                } else {
                    LoginResult::Failed
                });
                let reason = format!("provider error: {e}");
                return self.fail(
                    &req,
                    &login,
                    reason,
                    OAuthError::new(code, "signing in at the identity provider failed"),
                );
            }
        };

        if let Some(refused) = self.approver_mismatch(&login, &outcome.user) {
            counted(LoginResult::Denied);
            audit::record(
                login_failure(
                    &req,
                    Some(&login),
                    "a remembered approval of another user was presented",
                )
                .user(&outcome.user),
            );
            return self.finish(&request.issuer, refused);
        }
        if let Some(denied) = self.admit_login(&req, &login, &mut outcome) {
            counted(LoginResult::Denied);
            return self.finish(&request.issuer, denied);
        }

        let created_at = now();
        let session = SessionRecord {
            id: random_id(),
            user: outcome.user,
            provider_tokens: outcome.tokens,
            client_id: request.client_id.clone(),
            scope: request.scope.clone(),
            resource: request.resource.clone(),
            created_at,
            expires_at: created_at + self.settings.tokens.session.as_secs(),
            idp_session: outcome.idp_session,
        };
        if let Err(e) = self.sessions.create(&session).await {
            counted(LoginResult::Failed);
            let reason = format!("the session could not be stored: {e}");
            return self.fail(&req, &login, reason, OAuthError::from(e));
        }
        audit::record(
            session
                .audit(AuditEvent::LoginSucceeded)
                .client_addr(ClientAddress::of(&req)),
        );
        tracing::info!(
            user = %session.user.username,
            provider = %session.user.provider,
            client_id = %session.client_id,
            session = %session.id,
            "user logged in"
        );
        match &login.return_to {
            Some(return_to) => {
                counted(LoginResult::Ok);
                self.finish(
                    &request.issuer,
                    self.browser_signed_in(&request.issuer, &session, return_to).await,
                )
            }
            None => match self.issue_code(request, &session).await {
                Ok(code) => {
                    counted(LoginResult::Ok);
                    let mut resp = request.redirect_to_client(&[("code", &code)]);
                    if let Some(cookie) = self.remember_approval(req.headers(), &login, &session.user) {
                        response::set_cookie(&mut resp, &cookie);
                    }
                    self.finish(&request.issuer, resp)
                }
                Err(e) => {
                    counted(LoginResult::Failed);
                    let reason = format!("the authorization code could not be stored: {e}");
                    self.fail(&req, &login, reason, OAuthError::from(e))
                }
            },
        }
    }

    /// Gives the user what `role_mappings` grant, then asks the login rules of `policies`:
    /// the `403` page stating the deciding rule's reason when they deny.
    fn admit_login(
        &self,
        req: &Request<Bytes>,
        login: &LoginState,
        outcome: &mut LoginOutcome,
    ) -> Option<Response<Bytes>> {
        let policies = self.policies.current();
        policies.role_mappings.apply(&mut outcome.user, &outcome.profile);
        let user = UserFacts {
            user: &outcome.user,
            scopes: &login.request.scope,
        };
        let request = RequestFacts {
            method: req.method().as_str(),
            path: req.uri().path(),
        };
        let Decision::Deny(denial) = policies.check_login(user, request) else {
            return None;
        };
        crate::audit::record(
            AuditRecord::new(AuditEvent::LoginFailed)
                .user(&outcome.user)
                .client_id(&login.request.client_id)
                .client_addr(ClientAddress::of(req))
                .reason(format!("policy rule {}: {}", denial.rule, denial.reason)),
        );
        Some(error_page(StatusCode::FORBIDDEN, "Access denied", &denial.reason))
    }

    /// Stores an authorization code for the MCP client and returns it.
    async fn issue_code(
        &self,
        request: &AuthorizationRequest,
        session: &SessionRecord,
    ) -> Result<String, crate::store::StoreError> {
        let code = new_opaque_token(AUTHORIZATION_CODE_PREFIX);
        let record = CodeRecord::Issued {
            request: request.clone(),
            session_id: session.id.clone(),
        };
        let expires = now() + self.settings.tokens.authorization_code.as_secs();
        self.store
            .put(Table::Codes, &token_hash(&code), &record, expires)
            .await?;
        Ok(code)
    }

    /// A failed login (audited with `reason`): back to the MCP client with the error, or a
    /// page for a person.
    fn fail(&self, req: &Request<Bytes>, login: &LoginState, reason: String, error: OAuthError) -> Response<Bytes> {
        login_failed(req, Some(login), reason);
        let resp = match login.return_to {
            Some(_) => error_page(StatusCode::BAD_GATEWAY, "Sign-in failed", &error.description),
            None => login.request.redirect_error(&error),
        };
        self.finish(&login.request.issuer, resp)
    }

    /// Every way out of the callback clears the login cookie.
    fn finish(&self, origin: &str, mut resp: Response<Bytes>) -> Response<Bytes> {
        response::set_cookie(&mut resp, &Self::cookies_for(origin).clear(cookies::LOGIN));
        resp
    }
}

/// The audit record of a login that did not complete; `login` once its state was found.
fn login_failure(req: &Request<Bytes>, login: Option<&LoginState>, reason: impl Into<String>) -> AuditRecord {
    let mut record = AuditRecord::new(AuditEvent::LoginFailed)
        .client_addr(ClientAddress::of(req))
        .reason(reason);
    if let Some(login) = login {
        record = record.client_id(&login.request.client_id);
        if !login.provider.is_empty() {
            record = record.provider(&login.provider);
        }
    }
    record
}

fn login_failed(req: &Request<Bytes>, login: Option<&LoginState>, reason: impl Into<String>) {
    audit::record(login_failure(req, login, reason));
}
