//! Build a wasmonkey plugin project into a component, in any of the five
//! languages, with the language's own published tools, set up on first use
//! from package registries into a toolchains directory.
//!
//! `wasmonkey plugin build` uses it with the user's cache (no wasmonkey
//! checkout needed); `cargo xtask` with the checkout's `.toolchains/`, for
//! the repository's own plugins.

#![deny(missing_docs)]

pub mod cbindings;
pub mod component;
pub mod guests;
pub mod process;
pub mod project;
pub mod toolchain;

pub use project::{Layout, Project};
pub use wasmonkey_lang::Lang;
