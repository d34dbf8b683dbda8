//! mxgate: an OAuth authentication sidecar for MCP servers (MXCP first), built on Pingora.
//!
//! - [`config`]: `mxgate.yml` and the MXCP user config → effective settings.
//! - [`oauth`]: the authorization server MCP clients talk to (pure handlers on `http` types).
//! - [`providers`]: upstream identity providers behind one trait.
//! - [`store`]: where sessions, clients, codes and tokens are kept.
//! - [`identity`]: the user context, the signed assertion for the core, signing keys.
//! - [`gateway`]: the Pingora adapter — the only module that knows Pingora.

pub mod admin;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod identity;
pub mod oauth;
pub mod policy;
pub mod providers;
pub mod rate_limit;
pub mod session;
pub mod store;
