//! Admission decisions on the request path, after the token is known to be valid.

pub mod required_scopes;
