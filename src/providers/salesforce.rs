//! The `salesforce` provider (being written; until then configuring it is a clear start-up error).

use super::{Provider, ProviderError};
use crate::config::mxcp_user::SalesforceConfig;
use crate::config::ProviderEndpoints;
use std::sync::Arc;

pub fn build(
    _config: &SalesforceConfig,
    _http: reqwest::Client,
    _endpoints: &ProviderEndpoints,
) -> Result<Arc<dyn Provider>, ProviderError> {
    Err(ProviderError::Unsupported("salesforce"))
}
