//! Each experiment made ready once, before anything runs: its plugin loaded
//! under its limits (only `metadata()` runs, in a session that refuses
//! every import), its grants narrowed to the operator's, its params checked
//! against the ones the plugin declares.

use std::collections::BTreeSet;

use crate::config::{Config, ExperimentConfig};
use crate::contract::{self, Param};
use crate::plugins::{Catalog, Plugin};
use crate::policy::{effective_grants, Grant};
use crate::sandbox::Sandbox;

/// An experiment that can run.
pub(crate) struct Ready {
    /// The plugin, loaded under its limits.
    pub plugin: Plugin,
    /// What it may do: what its manifest asks, narrowed to the operator's.
    pub grants: BTreeSet<Grant>,
    /// Every parameter, the operator's value or the plugin's default.
    pub params: Vec<Param>,
}

/// Why an experiment would not run.
#[derive(Debug, Clone)]
pub(crate) struct Unready {
    /// Its position among the config's experiments, from 0.
    pub index: usize,
    /// The plugin it names.
    pub plugin: String,
    /// What is wrong, for the operator.
    pub problem: String,
}

impl std::fmt::Display for Unready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "experiment {} ({}): {}",
            self.index + 1,
            crate::text::one_line(&self.plugin),
            crate::text::one_line(&self.problem)
        )
    }
}

/// Make the experiment at `index` ready, or say why it cannot run.
pub(crate) async fn prepare(
    config: &Config,
    catalog: &Catalog,
    sandbox: &Sandbox,
    index: usize,
    experiment: &ExperimentConfig,
) -> Result<Ready, Unready> {
    let unready = |problem: String| Unready {
        index,
        plugin: experiment.plugin.clone(),
        problem,
    };
    let plugin = catalog
        .load(
            sandbox,
            &experiment.plugin,
            &config.limit_rules(),
            &experiment.limits,
        )
        .await
        .map_err(|failure| unready(format!("plugin did not load: {failure}")))?;
    let requested = plugin
        .manifest
        .as_ref()
        .map(|m| m.grants.clone())
        .unwrap_or_default();
    let grants = effective_grants(&requested, &experiment.grants);
    let params = contract::resolve_params(&plugin.metadata.params, &experiment.params)
        .map_err(|err| unready(format!("plugin {}: {err}", plugin.label())))?;
    Ok(Ready {
        plugin,
        grants,
        params,
    })
}
