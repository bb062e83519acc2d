//! wasmonkey: a chaos engine for AWS whose strategies are sandboxed
//! WebAssembly components.
//!
//! Data flows one way: [`config`] → [`policy`] and `guard` → plugin
//! ([`sandbox`], [`contract`], [`session`]) → [`cloud`] → [`journal`] →
//! [`report`].
//! [`runner`] drives it; [`cli`] is the command line.
#![deny(missing_docs)]
#![warn(unreachable_pub)]
// `println!` panics when the reader of stdout has gone (`| head`): output
// goes through a write whose error is handled (see `cli::CLOSED_PIPE`).
#![deny(clippy::print_stdout)]

/// The allocator of everything built on this crate (binary, tests, benchmark):
/// wasmtime's loading of a compiled component makes tens of thousands of small
/// allocations; mimalloc cut a Python plugin's start-up by 6–11% against
/// glibc's malloc (medians and minima of interleaved runs of two builds).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod backend;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod contract;
pub mod daemon;
#[cfg(feature = "postgres")]
pub mod database;
pub mod faults;
pub(crate) mod files;
pub(crate) mod guard;
pub mod history;
pub(crate) mod http;
pub mod journal;
pub mod junit;
pub mod kill_switch;
pub mod limits;
pub mod manifest;
pub mod metrics;
pub(crate) mod names;
pub mod notify;
pub(crate) mod plan;
pub(crate) mod plugin_build;
pub(crate) mod plugin_test;
pub mod plugins;
pub mod policy;
pub(crate) mod probe;
pub(crate) mod progress;
pub(crate) mod promql;
pub mod provenance;
pub(crate) mod recovery;
pub(crate) mod registry;
pub mod report;
pub(crate) mod run_plan;
pub mod runner;
pub mod sandbox;
pub(crate) mod scaffold;
pub mod schedule;
pub mod session;
pub(crate) mod shipping;
pub mod signing;
pub(crate) mod spacing;
pub mod text;
