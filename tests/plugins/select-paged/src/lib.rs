//! Chaos Monkey's victim selection over contract 0.2's paged listing: read
//! the running instances in scope `page` at a time (1,000 by default), keep
//! the in-service healthy ones of each group (only their ids), and pick one
//! per group uniformly at random (groups in name order), as `select` does
//! over 0.1's whole listing. Terminates nothing. The benchmark checks that
//! it picks what the native algorithm picks.

wit_bindgen::generate!({
    world: "strategy-plugin",
    path: "../../../wit/v0.2.0",
});

use std::collections::BTreeMap;

use exports::wasmonkey::chaos::strategy::{
    Guest, Outcome, Param, ParamValue, PluginMetadata, RunError,
};
use wasmonkey::chaos::cloud::{self, InstanceFilter};
use wasmonkey::chaos::runtime;
use wasmonkey::chaos::types::{InstanceState, LifecycleState};

struct SelectPaged;

/// A uniform index in `0..n` by rejection sampling, as the SDK's.
fn index(n: usize) -> usize {
    let n = n as u64;
    let limit = u64::MAX - (u64::MAX % n);
    loop {
        let draw = runtime::random_u64();
        if draw < limit {
            return (draw % n) as usize;
        }
    }
}

impl Guest for SelectPaged {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "select-paged".into(),
            version: "0.1.0".into(),
            description: "Test-only plugin of contract 0.2: Chaos Monkey's victim selection over the paged listing, for the benchmark".into(),
            params: Vec::new(),
        }
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        let page_size = params
            .iter()
            .find_map(|p| match (&p.name, &p.value) {
                (n, ParamValue::Integer(i)) if n == "page" => Some(*i as u32),
                _ => None,
            })
            .unwrap_or(1000);
        let filter = InstanceFilter {
            group_pattern: None,
            tags: Vec::new(),
            zone: None,
            states: vec![InstanceState::Running],
        };
        let mut pools: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = cloud::list_instances_page(&filter, after.as_deref(), page_size)
                .map_err(RunError::Cloud)?;
            for instance in page.instances {
                let serving =
                    instance.lifecycle == Some(LifecycleState::InService) && instance.healthy;
                if let (true, Some(group)) = (serving, instance.group) {
                    pools.entry(group).or_default().push(instance.id);
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let picks: Vec<&str> = pools
            .values()
            .filter(|pool| !pool.is_empty())
            .map(|pool| pool[index(pool.len())].as_str())
            .collect();
        Ok(Outcome {
            victims: Vec::new(),
            summary: picks.join(","),
        })
    }
}

export!(SelectPaged);
