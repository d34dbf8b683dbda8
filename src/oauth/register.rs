//! Dynamic client registration (RFC 7591): validates the client's metadata (see
//! [`super::client_metadata`]), stores the client and answers 201 with what was registered.
//! The secret is shown once and kept only as a hash.

use super::client_metadata::{metadata_error, ClientMetadata};
use super::error::OAuthError;
use super::{response, AuthorizationServer};
use crate::support::{new_opaque_token, random_id, token_hash};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::Value;

const AUTH_METHODS: [&str; 3] = ["none", "client_secret_basic", "client_secret_post"];

impl AuthorizationServer {
    pub(super) async fn register(&self, req: Request<Bytes>) -> Result<Response<Bytes>, OAuthError> {
        let request: ClientMetadata = serde_json::from_slice(req.body())
            .map_err(|e| metadata_error(format!("the body must be a JSON object of client metadata: {e}")))?;

        let mut record = request.into_record(&self.dynamic_scopes, "client_secret_basic", &AUTH_METHODS)?;
        let secret = (record.token_endpoint_auth_method != "none").then(|| new_opaque_token("mxs_"));
        record.client_id = format!("mxc_{}", random_id());
        record.client_secret_hash = secret.as_deref().map(token_hash);
        record.client_id_issued_at = crate::support::now();
        self.clients.register(&record).await?;
        tracing::info!(client_id = %record.client_id, name = record.client_name.as_deref().unwrap_or(""), "client registered");
        let mut registered = crate::audit::AuditRecord::new(crate::audit::AuditEvent::ClientRegistered)
            .client_id(&record.client_id)
            .client_addr(super::ClientAddress::of(&req));
        if let Some(name) = &record.client_name {
            registered = registered.reason(format!("client_name: {name}"));
        }
        crate::audit::record(registered);

        let mut body = serde_json::json!({
            "client_id": record.client_id,
            "client_id_issued_at": record.client_id_issued_at,
            "redirect_uris": record.redirect_uris,
            "grant_types": record.grant_types,
            "response_types": record.response_types,
            "token_endpoint_auth_method": record.token_endpoint_auth_method,
            "scope": record.scopes.join(" "),
        });
        if let Value::Object(map) = &mut body {
            if let Some(name) = &record.client_name {
                map.insert("client_name".into(), name.clone().into());
            }
            if let Some(secret) = secret {
                map.insert("client_secret".into(), secret.into());
                map.insert("client_secret_expires_at".into(), 0.into());
            }
            map.extend(record.extra);
        }
        Ok(response::json(StatusCode::CREATED, &body))
    }
}
