//! Who a logged-in user is (as the provider told us), and the provider's tokens for them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The user as known to the MXCP core; these become the assertion's claims and MXCP's `user.*`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UserIdentity {
    /// Provider name as MXCP reports it (`github`, `google`, `oidc` or an OIDC `provider_name`).
    pub provider: String,
    /// The provider's stable user id (OIDC `sub`, GitHub numeric id, …).
    pub user_id: String,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Derived from the raw profile with the provider's `claim_mappings`.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

// === impl UserIdentity ===

impl UserIdentity {
    /// `provider:user_id`: who this is, across sessions.
    pub fn key(&self) -> String {
        format!("{}:{}", self.provider, self.user_id)
    }
}

/// Tokens the upstream provider issued for a user. `Debug` never shows them.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct ProviderTokens {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    /// Unix seconds; `None` when the provider gave no lifetime (GitHub OAuth apps).
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
    /// Unix seconds when these tokens were issued to mxgate.
    #[serde(default)]
    pub obtained_at: u64,
}

impl fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderTokens")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}
