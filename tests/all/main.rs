//! wasmonkey's integration tests: one binary, loading real plugins built
//! from source by `cargo xtask plugins` (which `cargo xtask test` runs
//! first).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test's panic is its failure"
)]

mod accounts;
#[cfg(feature = "aws")]
mod architecture;
mod aws;
mod brakes;
mod cli;
mod conformance;
mod denials;
mod docs;
mod exit_codes;
#[cfg(feature = "aws")]
mod fault_proxy;
mod faults;
mod guardrails;
mod hostile;
mod journal;
mod junit;
mod loading;
#[cfg(feature = "aws")]
mod moto;
mod notifications;
mod one_plan;
mod parsers;
mod plugin_text;
mod prometheus;
mod receiver;
mod registry;
mod reports;
mod rigged;
mod sandbox_limits;
mod scaffold;
mod schema;
#[cfg(feature = "postgres")]
mod shared_state;
mod strategies;
mod strategy_properties;
mod support;
mod targets;
mod trust;
mod unattended;
mod wasi;
