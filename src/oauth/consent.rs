//! The consent step: before mxgate sends anyone to the provider on behalf of a client, the
//! person approves that client on a page that is CSRF-protected (a token in the form that must
//! match the browser's cookie and the stored transaction) and not frameable. The page says who
//! is asking as far as it is known: a client from the MXCP config by its configured name, a
//! client that registered itself by a name marked as its own claim, a Client ID Metadata
//! Document client by the host of its URL; and it shows the full redirect URI and the provider
//! by its display name. An approval is remembered once the person has signed in (see
//! [`super::consent_memory`]).

use super::authorize::error_page;
use super::clients::{ClientKind, ClientRecord};
use super::cookies;
use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::transactions::{AuthorizationRequest, ConsentTransaction, LoginConsent};
use super::{metadata::CONSENT_PATH, pages, response, AuthorizationServer, ClientAddress};
use crate::audit::{AuditEvent, AuditRecord};
use crate::store::Table;
use crate::support::{new_opaque_token, now, random_id, token_hash};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

/// Who is asking, as far as mxgate knows: the name of a configured client is the
/// administrator's; any other name is the client's own claim. `verified_host` is the host of a
/// metadata document client's URL.
fn client_identity<'a>(client: &'a ClientRecord, verified_host: Option<&'a str>) -> pages::ClientIdentity<'a> {
    let name = client.client_name.as_deref().filter(|n| !n.trim().is_empty());
    match (client.kind, verified_host) {
        (ClientKind::Static, _) => pages::ClientIdentity::Configured {
            name: client.display_name(),
        },
        (ClientKind::MetadataDocument, Some(host)) => pages::ClientIdentity::Published { host, name },
        _ => pages::ClientIdentity::SelfRegistered { name },
    }
}

/// `host[:port]` of a URL.
fn url_host(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The redirect URI as the browser will be sent there: parsed, so non-ASCII is
/// percent-encoded and a host is in its ASCII (punycode) form, and look-alike characters cannot
/// pass for others.
fn shown_redirect_uri(uri: &str) -> String {
    url::Url::parse(uri)
        .map(String::from)
        .unwrap_or_else(|_| uri.to_string())
}

/// A CSRF or binding token from a cookie, if it has the shape of one we issue.
fn well_formed(token: Option<&str>) -> Option<&str> {
    token.filter(|t| t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

impl AuthorizationServer {
    /// The providers to offer: each submits its name and is labelled by its display name.
    pub(super) fn provider_options(&self) -> Vec<pages::ProviderOption<'_>> {
        self.providers
            .iter()
            .map(|e| pages::ProviderOption {
                name: e.provider.name(),
                label: &e.display_name,
            })
            .collect()
    }

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
        let verified_host = (client.kind == ClientKind::MetadataDocument)
            .then(|| url_host(&client.client_id))
            .flatten();
        let page = pages::consent(&pages::ConsentView {
            client: client_identity(client, verified_host.as_deref()),
            client_id: &client.client_id,
            redirect_uri: &shown_redirect_uri(&request.redirect_uri),
            scopes: &request.scope,
            resource: &request.resource,
            providers: &self.provider_options(),
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
        let audit = |event| {
            AuditRecord::new(event)
                .client_id(&record.request.client_id)
                .client_addr(ClientAddress::of(&req))
        };
        match (params.get("decision"), params.get("provider")) {
            (Some("approve"), provider) | (None, provider @ Some(_)) => {
                let mut given =
                    audit(AuditEvent::ConsentGiven).reason(format!("scope: {}", record.request.scope.join(" ")));
                if let Some(provider) = provider {
                    given = given.provider(provider);
                }
                crate::audit::record(given);
                self.start_login(record.request, provider, LoginConsent::Approved, None)
                    .await
            }
            _ => {
                crate::audit::record(audit(AuditEvent::ConsentDenied).reason("the user denied access"));
                record
                    .request
                    .redirect_error(&OAuthError::new(ErrorCode::AccessDenied, "the user denied access"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_uri_is_shown_as_the_browser_will_go_there() {
        assert_eq!(
            shown_redirect_uri("https://bücher.example/cb?next=\"é\""),
            "https://xn--bcher-kva.example/cb?next=%22%C3%A9%22"
        );
        assert_eq!(
            shown_redirect_uri("http://127.0.0.1:9/cb/<x>?a=1&b=2"),
            "http://127.0.0.1:9/cb/%3Cx%3E?a=1&b=2"
        );
        assert_eq!(shown_redirect_uri("com.example.app:/oauth"), "com.example.app:/oauth");
    }

    #[test]
    fn only_a_configured_client_is_named_with_authority() {
        // Built from JSON so that fields added to `ClientRecord` later need no change here.
        let mut client: ClientRecord = serde_json::from_value(serde_json::json!({
            "client_id": "https://app.example.com:8443/client.json", "client_name": "Claude Desktop",
            "redirect_uris": [], "grant_types": [], "response_types": [], "token_endpoint_auth_method": "none",
            "scopes": [], "client_id_issued_at": 0, "kind": "metadata_document",
        }))
        .unwrap();
        let host = url_host(&client.client_id);
        assert_eq!(host.as_deref(), Some("app.example.com:8443"));
        assert!(matches!(
            client_identity(&client, host.as_deref()),
            pages::ClientIdentity::Published {
                host: "app.example.com:8443",
                name: Some("Claude Desktop")
            }
        ));
        client.kind = ClientKind::Dynamic;
        assert!(matches!(
            client_identity(&client, None),
            pages::ClientIdentity::SelfRegistered {
                name: Some("Claude Desktop")
            }
        ));
        client.client_name = Some("  ".into());
        assert!(matches!(
            client_identity(&client, None),
            pages::ClientIdentity::SelfRegistered { name: None }
        ));
        client.kind = ClientKind::Static;
        client.client_name = Some("Team CLI".into());
        assert!(matches!(
            client_identity(&client, None),
            pages::ClientIdentity::Configured { name: "Team CLI" }
        ));
    }
}
