//! {{name}}: a wasmonkey chaos strategy. Terminates one random running,
//! in-service, healthy instance in the groups matching `groups`.

wit_bindgen::generate!({
    world: "strategy-plugin",
    path: "wit",
});

use exports::wasmonkey::chaos::strategy::{
    Guest, Outcome, Param, ParamSpec, ParamValue, PluginMetadata, RunError, Verdict, Victim,
};
use wasmonkey::chaos::cloud::{self, InstanceFilter};
use wasmonkey::chaos::runtime::{self, LogLevel};
use wasmonkey::chaos::types::{InstanceState, LifecycleState};

struct Plugin;

impl Guest for Plugin {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "{{name}}".to_owned(),
            version: "0.1.0".to_owned(),
            description: "{{description}}".to_owned(),
            params: vec![ParamSpec {
                name: "groups".to_owned(),
                description: "Glob over the names of the Auto Scaling groups to act on".to_owned(),
                default: ParamValue::Text("*".to_owned()),
            }],
        }
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        // The host hands over every declared parameter, of its declared kind.
        let groups = match params.iter().find(|p| p.name == "groups").map(|p| &p.value) {
            Some(ParamValue::Text(glob)) => glob.clone(),
            _ => return Err(RunError::InvalidParam("groups: expected text".to_owned())),
        };
        let filter = InstanceFilter {
            group_pattern: Some(groups.clone()),
            tags: Vec::new(),
            zone: None,
            states: vec![InstanceState::Running],
        };
        // Only instances inside the operator's scope are ever listed.
        let candidates: Vec<_> = cloud::list_instances(&filter)
            .map_err(RunError::Cloud)?
            .into_iter()
            .filter(|i| i.lifecycle == Some(LifecycleState::InService) && i.healthy)
            .collect();
        if candidates.is_empty() {
            return Ok(Outcome {
                victims: Vec::new(),
                summary: format!("No healthy instance in groups matching \"{groups}\"."),
            });
        }
        // The run's seeded random stream: the same --seed picks the same victim.
        let pick = &candidates[(runtime::random_u64() % candidates.len() as u64) as usize];
        // A refusal (scope, blast radius, grants) is a typed error, not a crash.
        let done = match cloud::terminate(&pick.id, "{{name}}: random victim") {
            Ok(done) => done,
            Err(err) => {
                runtime::log(LogLevel::Warn, &format!("not terminating {}: {err:?}", pick.id));
                return Ok(Outcome {
                    victims: Vec::new(),
                    summary: format!("Did not terminate {}: {err:?}.", pick.id),
                });
            }
        };
        runtime::log(LogLevel::Info, &format!("terminated {}", done.instance_id));
        Ok(Outcome {
            summary: format!(
                "{} {}.",
                if done.dry_run { "Would have terminated" } else { "Terminated" },
                done.instance_id
            ),
            victims: vec![Victim {
                instance_id: done.instance_id,
                group: done.group,
                zone: done.zone,
                terminated_at_ms: done.at_ms,
                dry_run: done.dry_run,
                // The host measures recovery itself; this plugin does not wait.
                verdict: Verdict::Unchecked,
                recovered_at_ms: None,
            }],
        })
    }
}

export!(Plugin);
