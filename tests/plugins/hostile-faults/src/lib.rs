//! A hostile strategy of contract 0.2: it lists the fleet with absurd page
//! sizes and forged cursors, then aims every fault operation at the targets
//! it is given (out of scope, opted out, unknown), with durations no fault
//! may have and a reason full of terminal escapes. It reports each answer
//! in its summary (`op target => ok f-1 | denied | not-found | ...`) and
//! every instance id a listing showed it (`seen=...`), for the test to
//! check that nothing outside scope was reached or shown.

wit_bindgen::generate!({
    world: "strategy-plugin",
    path: "../../../wit/v0.2.0",
});

use exports::wasmonkey::chaos::strategy::{
    Guest, Outcome, Param, ParamSpec, ParamValue, PluginMetadata, RunError,
};
use wasmonkey::chaos::cloud::{self, InstanceFilter};
use wasmonkey::chaos::types::{CloudError, Fault, InstanceState, ScalingProcess};

struct HostileFaults;

fn text(params: &[Param], name: &str) -> String {
    params
        .iter()
        .find_map(|p| match (&p.name, &p.value) {
            (n, ParamValue::Text(t)) if n == name => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn spec(name: &str, description: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        default: ParamValue::Text(String::new()),
    }
}

fn answer(result: Result<Fault, CloudError>) -> String {
    match result {
        Ok(fault) => format!("ok {}", fault.id),
        Err(CloudError::Denied(_)) => "denied".into(),
        Err(CloudError::NotFound(_)) => "not-found".into(),
        Err(CloudError::BudgetExhausted(_)) => "budget".into(),
        Err(CloudError::Throttled(_)) => "throttled".into(),
        Err(CloudError::Invalid(_)) => "invalid".into(),
        Err(CloudError::Backend(_)) => "backend".into(),
    }
}

/// Every id any listing showed: pages of absurd sizes, from forged cursors.
fn seen() -> Vec<String> {
    let filter = InstanceFilter {
        group_pattern: None,
        tags: Vec::new(),
        zone: None,
        states: vec![
            InstanceState::Pending,
            InstanceState::Running,
            InstanceState::Stopping,
            InstanceState::Stopped,
            InstanceState::ShuttingDown,
            InstanceState::Terminated,
        ],
    };
    let mut ids = Vec::new();
    let cursors = [
        None,
        Some(String::new()),
        Some("i-".into()),
        Some("\u{10FFFF}".into()),
    ];
    for after in cursors {
        for limit in [0, 1, u32::MAX] {
            if let Ok(page) = cloud::list_instances_page(&filter, after.as_deref(), limit) {
                ids.extend(page.instances.into_iter().map(|i| i.id));
                ids.extend(page.next);
            }
        }
    }
    if let Ok(all) = cloud::list_instances(&filter) {
        ids.extend(all.into_iter().map(|i| i.id));
    }
    ids.sort();
    ids.dedup();
    ids
}

impl Guest for HostileFaults {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "hostile-faults".into(),
            version: "0.1.0".into(),
            description: "Test-only hostile plugin of contract 0.2".into(),
            params: vec![
                spec(
                    "targets",
                    "instance ids to aim stop and reboot at, comma-separated",
                ),
                spec("groups", "groups to suspend, comma-separated"),
                spec("zones", "zones to cut off, comma-separated"),
                spec(
                    "victim",
                    "an instance in scope, stopped for 1 s with a hostile reason",
                ),
            ],
        }
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        let list = |name: &str| -> Vec<String> {
            text(&params, name)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut said = Vec::new();
        let reason = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\n".repeat(50_000);
        for id in list("targets") {
            said.push(format!(
                "stop {id} => {}",
                answer(cloud::stop(&id, 60_000, &reason))
            ));
            said.push(format!(
                "reboot {id} => {}",
                answer(cloud::reboot(&id, &reason))
            ));
        }
        for group in list("groups") {
            let all = [ScalingProcess::Launch, ScalingProcess::ReplaceUnhealthy];
            said.push(format!(
                "suspend {group} => {}",
                answer(cloud::suspend_processes(&group, &all, 60_000, &reason))
            ));
        }
        for zone in list("zones") {
            said.push(format!(
                "blackhole {zone} => {}",
                answer(cloud::blackhole_zone(&zone, 60_000, &reason))
            ));
        }
        let victim = text(&params, "victim");
        // Durations no fault may have, then no processes at all.
        for duration in [0, u64::MAX, 6 * 3_600_000 + 1] {
            said.push(format!(
                "stop {victim} for {duration} => {}",
                answer(cloud::stop(&victim, duration, "too long"))
            ));
            said.push(format!(
                "blackhole for {duration} => {}",
                answer(cloud::blackhole_zone("us-east-1b", duration, "too long"))
            ));
        }
        said.push(format!(
            "suspend nothing => {}",
            answer(cloud::suspend_processes("web", &[], 60_000, "nothing"))
        ));
        // The one fault that may happen: its reason is hostile.
        said.push(format!(
            "stop {victim} => {}",
            answer(cloud::stop(&victim, 1_000, &reason))
        ));
        said.push(format!("seen={}", seen().join(",")));
        Ok(Outcome {
            victims: Vec::new(),
            summary: said.join("; "),
        })
    }
}

export!(HostileFaults);
