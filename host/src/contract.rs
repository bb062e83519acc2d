//! The plugin contract, one module per WIT package version.
//!
//! Each version module generates its bindings and translates between its
//! WIT types and the host's domain types, so the rest of the host never
//! depends on a WIT version. A new contract version is a new module beside
//! the old one; old plugins keep loading.

pub mod v0_1_0;

/// The newest contract this host speaks.
pub use v0_1_0 as latest;
