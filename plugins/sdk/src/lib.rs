//! Rust SDK for wasmonkey strategy plugins.
//!
//! This crate holds the bindings of the `wasmonkey:chaos/strategy-plugin`
//! world (generated once, from the repository's `wit/`) and the helpers that
//! more than one strategy needs. A plugin is a `cdylib` crate that implements
//! [`Guest`] and exports it:
//!
//! ```ignore
//! use wasmonkey_sdk::{Guest, Outcome, Param, PluginMetadata, RunError};
//!
//! struct MyStrategy;
//!
//! impl Guest for MyStrategy {
//!     fn metadata() -> PluginMetadata {
//!         wasmonkey_sdk::metadata!(vec![])
//!     }
//!     fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
//!         todo!()
//!     }
//! }
//!
//! wasmonkey_sdk::export_strategy!(MyStrategy);
//! ```
//!
//! Everything here is deterministic given the host's answers: randomness only
//! comes from `runtime::random-u64`, time only from `runtime::now-ms`.

#![warn(missing_docs)]

/// The generated bindings; use the re-exports below instead.
#[doc(hidden)]
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "strategy-plugin",
        path: "../../wit/v0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_strategy",
        default_bindings_module: "wasmonkey_sdk::bindings",
    });
}

pub mod fleet;
pub mod log;
pub mod params;
pub mod random;
pub mod recovery;
pub mod report;

/// The imported interfaces, as generated from the contract.
pub use bindings::wasmonkey::chaos::{cloud, notify, probe, runtime, types};

/// The exported `strategy` interface, as generated from the contract.
pub use bindings::exports::wasmonkey::chaos::strategy;

pub use strategy::{
    Guest, Outcome, Param, ParamSpec, ParamValue, PluginMetadata, RunError, Verdict, Victim,
};
pub use types::{CloudError, Group, GroupCapacity, Instance, InstanceState, LifecycleState};

/// Export a type implementing [`Guest`] as the plugin's `strategy`: call it
/// once, at the plugin's crate root, as `export_strategy!(MyStrategy);`.
pub use bindings::export_strategy;

/// The plugin's [`PluginMetadata`], taken from its `Cargo.toml` (`name`, `version`,
/// `description`) so that it agrees with the manifest, which `cargo xtask
/// plugins` checks against the same fields. Takes the list of [`ParamSpec`]s.
///
/// Expands in the plugin crate, so `env!` reads the plugin's package.
#[macro_export]
macro_rules! metadata {
    ($params:expr) => {
        $crate::PluginMetadata {
            name: ::std::string::String::from(env!("CARGO_PKG_NAME")),
            version: ::std::string::String::from(env!("CARGO_PKG_VERSION")),
            description: ::std::string::String::from(env!("CARGO_PKG_DESCRIPTION")),
            params: $params,
        }
    };
}

impl CloudError {
    /// The case name in kebab-case, as in the contract: `denied`,
    /// `not-found`, `budget-exhausted`, `throttled`, `invalid`, `backend`.
    pub fn kind(&self) -> &'static str {
        match self {
            CloudError::Denied(_) => "denied",
            CloudError::NotFound(_) => "not-found",
            CloudError::BudgetExhausted(_) => "budget-exhausted",
            CloudError::Throttled(_) => "throttled",
            CloudError::Invalid(_) => "invalid",
            CloudError::Backend(_) => "backend",
        }
    }

    /// The host's explanation.
    pub fn message(&self) -> &str {
        match self {
            CloudError::Denied(m)
            | CloudError::NotFound(m)
            | CloudError::BudgetExhausted(m)
            | CloudError::Throttled(m)
            | CloudError::Invalid(m)
            | CloudError::Backend(m) => m,
        }
    }

    /// `kind: message`, for logs and summaries.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.kind(), self.message())
    }
}

/// A cloud error that ends the run becomes [`RunError::Cloud`], so `?` works
/// on cloud calls inside `run`.
impl From<CloudError> for RunError {
    fn from(err: CloudError) -> Self {
        RunError::Cloud(err)
    }
}
