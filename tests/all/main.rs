//! wasmonkey's integration tests: one binary, loading real plugins built
//! from source by `cargo xtask plugins` (which `cargo xtask test` runs
//! first).

mod cli;
mod denials;
mod hostile;
mod journal;
mod loading;
mod strategies;
mod support;
