//! Oldest first, the reference strategy of contract 0.2 (its ports in
//! Python, JavaScript, C and Zig are in `examples/plugins-0.2/`).
//!
//! Counts the running instances of the groups matching `groups`, reads
//! them `page-size` at a time, and stops the `count` launched longest ago
//! (ties by id) for `stop-secs` each. The host starts each again when its
//! time is up and measures its group's recovery; the strategy sleeps
//! through the stop so the run shows it. Its summary names every stop, or
//! why it was refused.

wit_bindgen::generate!({
    world: "strategy-plugin",
    path: "../../wit/v0.2.0",
});

use exports::wasmonkey::chaos::strategy::{
    Guest, Outcome, Param, ParamSpec, ParamValue, PluginMetadata, RunError,
};
use wasmonkey::chaos::cloud::{self, InstanceFilter};
use wasmonkey::chaos::runtime::{self, LogLevel};
use wasmonkey::chaos::types::{CloudError, Instance, InstanceState, Market};

struct OldestFirst;

fn text(params: &[Param], name: &str, default: &str) -> String {
    params
        .iter()
        .find_map(|p| match (&p.name, &p.value) {
            (n, ParamValue::Text(t)) if n == name => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_else(|| default.to_owned())
}

fn integer(params: &[Param], name: &str, default: i64) -> i64 {
    params
        .iter()
        .find_map(|p| match (&p.name, &p.value) {
            (n, ParamValue::Integer(i)) if n == name => Some(*i),
            _ => None,
        })
        .unwrap_or(default)
}

fn kind(err: &CloudError) -> &'static str {
    match err {
        CloudError::Denied(_) => "denied",
        CloudError::NotFound(_) => "not-found",
        CloudError::BudgetExhausted(_) => "budget-exhausted",
        CloudError::Throttled(_) => "throttled",
        CloudError::Invalid(_) => "invalid",
        CloudError::Backend(_) => "backend",
    }
}

fn market(market: Market) -> &'static str {
    match market {
        Market::OnDemand => "on-demand",
        Market::Spot => "spot",
    }
}

impl Guest for OldestFirst {
    fn metadata() -> PluginMetadata {
        let spec = |name: &str, description: &str, default: ParamValue| ParamSpec {
            name: name.into(),
            description: description.into(),
            default,
        };
        PluginMetadata {
            name: "oldest-first".into(),
            version: "0.1.0".into(),
            description: "Stops the oldest running instances of the matching groups for a while; the host starts them again and measures each group's recovery".into(),
            params: vec![
                spec("groups", "Auto Scaling group name pattern (`*` for any)", ParamValue::Text("*".into())),
                spec("count", "how many of the oldest instances to stop", ParamValue::Integer(1)),
                spec("stop-secs", "how long each stays stopped", ParamValue::Integer(60)),
                spec("page-size", "instances read per page", ParamValue::Integer(100)),
            ],
        }
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        let groups = text(&params, "groups", "*");
        let count = integer(&params, "count", 1).max(0) as usize;
        let stop_ms = integer(&params, "stop-secs", 60).max(0) as u64 * 1000;
        let page_size = integer(&params, "page-size", 100).clamp(1, 1000) as u32;
        let filter = InstanceFilter {
            group_pattern: Some(groups.clone()),
            tags: Vec::new(),
            zone: None,
            states: vec![InstanceState::Running],
        };
        let total = cloud::count_instances(&filter).map_err(RunError::Cloud)?;
        let mut running: Vec<Instance> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = cloud::list_instances_page(&filter, after.as_deref(), page_size)
                .map_err(RunError::Cloud)?;
            running.extend(page.instances);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        runtime::log(
            LogLevel::Info,
            &format!(
                "{} running in {groups} ({total} counted), read {page_size} at a time",
                running.len()
            ),
        );
        running.sort_by(|a, b| {
            a.launched_at_ms
                .cmp(&b.launched_at_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        let mut lines = Vec::new();
        let mut stopped = 0;
        for instance in running.iter().take(count) {
            let reason = format!(
                "oldest first: launched at {} ms, {}",
                instance.launched_at_ms, instance.instance_type
            );
            match cloud::stop(&instance.id, stop_ms, &reason) {
                Ok(fault) => {
                    stopped += 1;
                    lines.push(format!(
                        "stopped {} ({}, {}) until {} ms",
                        instance.id,
                        instance.instance_type,
                        market(instance.market),
                        fault.until_ms.unwrap_or(0)
                    ));
                }
                Err(err) => {
                    runtime::log(
                        LogLevel::Warn,
                        &format!("{}: stop refused ({})", instance.id, kind(&err)),
                    );
                    lines.push(format!("refused {}: {}", instance.id, kind(&err)));
                }
            }
        }
        if stopped > 0 {
            runtime::sleep_ms(stop_ms);
        }
        Ok(Outcome {
            victims: Vec::new(),
            summary: format!(
                "oldest-first: stopped {stopped} of {} running: {}",
                running.len(),
                lines.join("; ")
            ),
        })
    }
}

export!(OldestFirst);
