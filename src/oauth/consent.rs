//! The consent step: before mxgate sends anyone to the provider on behalf of a client, the
//! person approves that client on a page that is CSRF-protected (a token in the form that must
//! match the browser's cookie and the stored transaction) and not frameable. An approval is
//! remembered per browser and client in a signed cookie, for `consent.remember`.

use super::authorize::error_page;
use super::clients::ClientRecord;
use super::cookies;
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::redirect_uri;
use super::transactions::{AuthorizationRequest, ConsentTransaction};
use super::{metadata::CONSENT_PATH, pages, response, AuthorizationServer};
use crate::session::tokens::{hex, new_opaque_token, random_id, token_hash};
use crate::store::{now, Table};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a remembered-consent cookie says.
#[derive(Serialize, Deserialize)]
struct RememberedConsent {
    cid: String,
    ruri: String,
    /// The provider the person chose.
    #[serde(default)]
    prv: String,
    exp: u64,
}

fn consent_cookie_base(client_id: &str) -> String {
    let digest = hex(&Sha256::digest(client_id.as_bytes()));
    format!("{}{}", cookies::CONSENT_PREFIX, &digest[..16])
}

/// A CSRF or binding token from a cookie, if it has the shape of one we issue.
fn well_formed(token: Option<&str>) -> Option<&str> {
    token.filter(|t| t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

impl AuthorizationServer {
    pub(super) async fn show_consent(
        &self,
        headers: &HeaderMap,
        client: &ClientRecord,
        request: AuthorizationRequest,
    ) -> Response<Bytes> {
        // One CSRF token per browser, so that two consent tabs do not invalidate each other.
        let cookie_policy = Self::cookies_for(&request.issuer);
        let csrf = well_formed(cookie_policy.get(headers, cookies::CSRF))
            .map(str::to_string)
            .unwrap_or_else(|| new_opaque_token(""));
        let transaction = random_id();
        let ttl = self.settings.tokens.login.as_secs();
        let record = ConsentTransaction {
            request: request.clone(),
            csrf_hash: token_hash(&csrf),
        };
        if let Err(e) = self
            .store
            .put(Table::ConsentTransactions, &transaction, &record, now() + ttl)
            .await
        {
            return request.redirect_error(&OAuthError::from(e));
        }
        let redirect_host = url::Url::parse(&request.redirect_uri)
            .ok()
            .map(|u| match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
                (Some(h), None) => format!("{}://{h}", u.scheme()),
                _ => format!("{}:", u.scheme()),
            })
            .unwrap_or_default();
        let page = pages::consent(&pages::ConsentView {
            client_name: client.display_name(),
            client_id: &client.client_id,
            redirect_host: &redirect_host,
            scopes: &request.scope,
            resource: &request.resource,
            providers: &self.providers.iter().map(|e| e.provider.name()).collect::<Vec<_>>(),
            transaction: &transaction,
            csrf_token: &csrf,
            form_action: CONSENT_PATH,
        });
        let mut resp = response::html(StatusCode::OK, page);
        response::set_cookie(&mut resp, &cookie_policy.set(cookies::CSRF, &csrf, ttl));
        resp
    }

    /// `POST /consent`: the person's decision.
    pub(super) async fn consent(&self, req: Request<Bytes>) -> Response<Bytes> {
        let Ok(params) = Params::parse(req.body()) else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The form was sent twice over.",
            );
        };
        let (Some(transaction), Some(csrf)) = (params.get("transaction"), params.get("csrf_token")) else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Invalid request",
                "The consent form is incomplete.",
            );
        };
        let cookie_matches = Self::cookies_for(self.origin_of(&req))
            .get(req.headers(), cookies::CSRF)
            .is_some_and(|c| bool::from(c.as_bytes().ct_eq(csrf.as_bytes())));
        if !cookie_matches {
            return error_page(
                StatusCode::FORBIDDEN,
                "Request not accepted",
                "This approval did not come from the page this browser was shown. Start again from your application.",
            );
        }
        let record: ConsentTransaction = match self.store.take(Table::ConsentTransactions, transaction).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "This request has expired",
                    "The sign-in request expired or was already answered. Start again from your application.",
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "store failure reading a consent transaction");
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Server error",
                    "Please try again later.",
                );
            }
        };
        if !bool::from(token_hash(csrf).as_bytes().ct_eq(record.csrf_hash.as_bytes())) {
            return error_page(
                StatusCode::FORBIDDEN,
                "Request not accepted",
                "The consent form does not belong to this request.",
            );
        }
        // One provider: `decision=approve`. Several: the button pressed names the provider.
        match (params.get("decision"), params.get("provider")) {
            (Some("approve"), provider) | (None, provider @ Some(_)) => {
                self.start_login(record.request, provider, true, None).await
            }
            _ => record
                .request
                .redirect_error(&OAuthError::new(ErrorCode::AccessDenied, "the user denied access")),
        }
    }

    /// The provider of a remembered approval of this client (and redirect URI, with any port on
    /// loopback) in this browser; `None` when there is none.
    pub(super) fn consent_remembered(&self, headers: &HeaderMap, request: &AuthorizationRequest) -> Option<String> {
        if self.settings.consent_memory.is_zero() {
            return None;
        }
        let value = Self::cookies_for(&request.issuer).get(headers, &consent_cookie_base(&request.client_id))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        let key = DecodingKey::from_secret(self.store.cipher().mac_key()).ok()?;
        let claims = jsonwebtoken::decode::<RememberedConsent>(value, &key, &validation)
            .ok()?
            .claims;
        let same_client = claims.cid == request.client_id && redirect_uri::matches(&claims.ruri, &request.redirect_uri);
        same_client.then_some(claims.prv)
    }

    /// The `Set-Cookie` that remembers this approval, if remembering is on.
    pub(super) fn remember_consent_cookie(&self, request: &AuthorizationRequest, provider: &str) -> Option<String> {
        let ttl = self.settings.consent_memory.as_secs();
        if ttl == 0 {
            return None;
        }
        let claims = RememberedConsent {
            cid: request.client_id.clone(),
            ruri: request.redirect_uri.clone(),
            prv: provider.to_string(),
            exp: now() + ttl,
        };
        let key = EncodingKey::from_secret(self.store.cipher().mac_key()).ok()?;
        let value = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).ok()?;
        Some(Self::cookies_for(&request.issuer).set(&consent_cookie_base(&request.client_id), &value, ttl))
    }
}
