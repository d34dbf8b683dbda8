//! Who the user is and how the core learns it: the user identity from the provider, capability
//! mapping, the signing key and JWKS, and the signed assertion forwarded to the core.

pub mod assertion;
pub mod capabilities;
pub mod signing_key;
pub mod user;
