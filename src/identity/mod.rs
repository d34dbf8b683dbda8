//! Who the user is and how the core learns it: the user identity from the provider, capability
//! mapping, the signing key ring and JWKS, and the signed assertion forwarded to the core.

pub mod assertion;
pub mod capabilities;
pub mod key_ring;
pub mod key_ring_home;
pub mod signing_key;
pub mod signing_keys;
pub mod user;
