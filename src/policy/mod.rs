//! Admission decisions beyond "the token is valid": `required_scopes`, `role_mappings` (what a
//! user's claims grant) and `policies` (CEL rules at login and per request), plus the parts of
//! MCP traffic those rules read (the JSON-RPC calls of a request, the `tools/list` answer they
//! filter). No Pingora here: `gateway` reads bodies and applies the decisions.

pub mod jsonrpc;
pub mod policy_set;
pub mod required_scopes;
pub mod role_mappings;
pub mod tools_list;
pub mod variables;

pub use policy_set::{Decision, Denial, PolicySet};

use arc_swap::{ArcSwap, Guard};
use std::sync::Arc;

/// The policy set in force, shared by the login and request paths; a reload swaps it whole.
#[derive(Clone)]
pub struct SharedPolicies(Arc<ArcSwap<PolicySet>>);

// === impl SharedPolicies ===

impl SharedPolicies {
    pub fn new(set: PolicySet) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(set)))
    }

    /// The set in force now (cheap: no reference count is touched).
    pub fn current(&self) -> Guard<Arc<PolicySet>> {
        self.0.load()
    }

    /// Puts `set` in force for every request and login that starts from now on.
    pub fn replace(&self, set: PolicySet) {
        self.0.store(Arc::new(set));
    }
}
