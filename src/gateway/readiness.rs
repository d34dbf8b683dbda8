//! The answers of `/healthz` (the process serves) and `/readyz` (and its store is readable),
//! the same on every listener.

use super::local_response::json_error;
use bytes::Bytes;
use http::{Response, StatusCode};

pub fn alive() -> Response<Bytes> {
    json_error(StatusCode::OK, "ok", "alive")
}

/// 200 when the store (if any) can be read, else 503.
pub async fn ready(store: Option<&crate::store::Store>) -> Response<Bytes> {
    let healthy = match store {
        Some(store) => store
            .get::<serde_json::Value>(crate::store::Table::Clients, "")
            .await
            .is_ok(),
        None => true,
    };
    if healthy {
        json_error(StatusCode::OK, "ok", "ready")
    } else {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store is not readable",
        )
    }
}
