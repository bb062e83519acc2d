//! Chaos Monkey's victim selection, and nothing else: list every running
//! instance in scope once, keep the in-service healthy ones, and pick one per
//! group uniformly at random (groups in name order). Terminates nothing.
//!
//! The benchmark runs the same algorithm natively against the same host
//! session and checks that both pick the same victims.

use std::collections::BTreeMap;

use wasmonkey_sdk::cloud::{self, InstanceFilter};
use wasmonkey_sdk::{export_strategy, fleet, metadata, random};
use wasmonkey_sdk::{Guest, Instance, InstanceState, Outcome, Param, PluginMetadata, RunError};

struct Select;

impl Guest for Select {
    fn metadata() -> PluginMetadata {
        metadata!(Vec::new())
    }

    fn run(_params: Vec<Param>) -> Result<Outcome, RunError> {
        let filter = InstanceFilter {
            group_pattern: None,
            tags: Vec::new(),
            zone: None,
            states: vec![InstanceState::Running],
        };
        let instances = cloud::list_instances(&filter).map_err(RunError::Cloud)?;
        let mut pools: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for instance in instances.iter().filter(|i| fleet::in_service_healthy(i)) {
            if let Some(group) = &instance.group {
                pools.entry(group).or_default().push(instance);
            }
        }
        let picks: Vec<&str> = pools
            .values()
            .filter_map(|pool| random::pick(pool).map(|i| i.id.as_str()))
            .collect();
        Ok(Outcome {
            victims: Vec::new(),
            summary: picks.join(","),
        })
    }
}

export_strategy!(Select);
