//! wasmonkey: a chaos engine for AWS whose strategies are sandboxed
//! WebAssembly components.
//!
//! Data flows one way: [`config`] → [`policy`] → plugin ([`sandbox`],
//! [`contract`], [`session`]) → [`cloud`] → [`journal`] → [`report`].
//! [`runner`] drives it; [`cli`] is the command line.

pub mod cli;
pub mod cloud;
pub mod config;
pub mod contract;
pub mod journal;
pub mod limits;
pub mod manifest;
pub mod notify;
pub mod plugins;
pub mod policy;
pub mod probe;
pub mod progress;
pub mod recovery;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod scaffold;
pub mod session;
