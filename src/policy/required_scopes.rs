//! `authorization.required_scopes`: a token must carry every listed scope (MXCP's semantics:
//! "the user must have ALL listed scopes"). Unlike MXCP 0.12.3, mxgate records the granted
//! scopes on each token, so this works instead of refusing every request.

/// The scopes every request to the core needs.
#[derive(Clone, Debug, Default)]
pub struct RequiredScopes(Vec<String>);

// === impl RequiredScopes ===

impl RequiredScopes {
    pub fn new(scopes: &[String]) -> Self {
        Self(scopes.to_vec())
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether `granted` includes every required scope.
    pub fn satisfied_by(&self, granted: &[String]) -> bool {
        self.0.iter().all(|r| granted.iter().any(|g| g == r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_required_scope_must_be_granted() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let required = RequiredScopes::new(&s(&["mxcp:access", "mxcp:admin"]));
        assert!(required.satisfied_by(&s(&["mxcp:admin", "mxcp:access", "other"])));
        assert!(!required.satisfied_by(&s(&["mxcp:access"])));
        assert!(
            RequiredScopes::default().satisfied_by(&[]),
            "none required: authentication only"
        );
    }
}
