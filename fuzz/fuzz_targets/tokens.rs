//! `tokens`: the token and credential parsers, each given the same input — an `Authorization`
//! header to `bearer_token` and to the Basic client-credentials parser, a stateless access
//! token to `open_access_token` (fixed key; as sent and behind the `mxg_st_` prefix), and a
//! query string or form body to `Params::parse`.
//!
//! Invariants: nothing panics; a bearer token is never empty and carries no surrounding
//! whitespace; an access token that opens has not expired; parsed parameters are never empty.
#![no_main]

use http::{header::AUTHORIZATION, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use mxgate::fuzz_api::{basic_credentials, bearer_token, open_access_token, Params, RecordCipher};
use std::sync::OnceLock;

/// The key of the seed tokens in `fuzz/corpus/tokens` (see fuzz/README.md).
const FUZZ_KEY: &[u8] = b"mxgate fuzz key";
/// "Now" for the stateless tokens: 2026-01-01.
const NOW: u64 = 1_767_225_600;

fn cipher() -> &'static RecordCipher {
    static CIPHER: OnceLock<RecordCipher> = OnceLock::new();
    CIPHER.get_or_init(|| RecordCipher::from_secret(FUZZ_KEY))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        if let Some(token) = bearer_token(&headers) {
            assert!(!token.is_empty() && token.trim() == token, "bearer token {token:?}");
        }
        let _ = basic_credentials(&headers);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for token in [text.to_string(), format!("mxg_st_{text}")] {
            if let Ok((session, exp)) = open_access_token(cipher(), &token, NOW) {
                assert!(exp > NOW && session.expires_at > NOW, "an expired token opened");
            }
        }
    }
    if let Ok(params) = Params::parse(data) {
        for key in ["client_id", "redirect_uri", "code", "state", "scope", "grant_type"] {
            assert!(params.get(key).is_none_or(|v| !v.is_empty()));
        }
    }
});
