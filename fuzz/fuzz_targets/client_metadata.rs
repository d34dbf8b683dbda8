//! `client_metadata`: client metadata JSON (dynamic registration, Client ID Metadata Documents)
//! through `ClientMetadata::into_record`, with the settings of both callers.
//!
//! Input: the JSON body. Invariants: nothing panics; every accepted record keeps at most 20
//! redirect URIs and each of them passes `validate_for_registration`; it asks for the `code`
//! response type and the `authorization_code` grant, uses an allowed authentication method, and
//! gets only scopes the server knows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxgate::fuzz_api::{validate_for_registration, ClientMetadata};

const SUPPORTED_SCOPES: &[&str] = &["mxcp:access", "openid", "profile"];
/// `oauth/register.rs`: dynamic registration.
const REGISTER_METHODS: &[&str] = &["none", "client_secret_basic", "client_secret_post"];
/// `oauth/metadata_document.rs`: a metadata document client is public.
const DOCUMENT_METHODS: &[&str] = &["none"];

fuzz_target!(|data: &[u8]| {
    let supported: Vec<String> = SUPPORTED_SCOPES.iter().map(|s| s.to_string()).collect();
    for (default_method, methods) in [("client_secret_basic", REGISTER_METHODS), ("none", DOCUMENT_METHODS)] {
        let Ok(metadata) = serde_json::from_slice::<ClientMetadata>(data) else {
            return;
        };
        let Ok(record) = metadata.into_record(&supported, default_method, methods) else {
            continue;
        };
        assert!(!record.redirect_uris.is_empty() && record.redirect_uris.len() <= 20);
        for uri in &record.redirect_uris {
            assert!(
                validate_for_registration(uri).is_ok(),
                "accepted a redirect URI that does not validate: {uri:?}"
            );
        }
        assert_eq!(record.response_types, ["code"]);
        assert!(record.grant_types.iter().any(|g| g == "authorization_code"));
        assert!(methods.contains(&record.token_endpoint_auth_method.as_str()));
        assert!(
            record.scopes.iter().all(|s| supported.contains(s)),
            "unknown scope granted: {:?}",
            record.scopes
        );
    }
});
