//! Rolling chaos: `count` times, terminate one running, in-service, healthy
//! instance picked at random among the groups matching `groups`, and wait for
//! its group to recover before the next. Stops early, keeping every verdict,
//! when a group does not recover in time or the blast radius is spent.

use std::collections::BTreeSet;

use wasmonkey_sdk::fleet::{self, Refusal};
use wasmonkey_sdk::params::{self, Params};
use wasmonkey_sdk::recovery::{self, RecoveryOptions};
use wasmonkey_sdk::{export_strategy, log, metadata, random, report};
use wasmonkey_sdk::{Guest, Instance, Outcome, Param, PluginMetadata, RunError, Verdict};

const COUNT: &str = "count";

struct Rolling;

impl Guest for Rolling {
    fn metadata() -> PluginMetadata {
        metadata!(vec![
            params::groups_spec(),
            params::integer(COUNT, "How many instances to terminate, one at a time", 3),
            params::recovery_timeout_spec(900),
            params::poll_spec(5),
        ])
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        let params = Params::new(params);
        let glob = params.text(params::GROUPS)?.to_owned();
        let count = params.integer_at_least(COUNT, 0)?;
        let recovery = RecoveryOptions::from_params(&params)?;

        let mut victims = Vec::new();
        // Instances already terminated or refused: a dry-run victim stays in
        // service and must not be picked twice.
        let mut tried = BTreeSet::new();
        let mut stopped = None;
        while (victims.len() as u64) < count {
            let pool: Vec<Instance> = match fleet::running_group_instances(&glob) {
                Ok(instances) => instances
                    .into_iter()
                    .filter(|i| fleet::in_service_healthy(i) && !tried.contains(&i.id))
                    .collect(),
                Err(err) if victims.is_empty() => return Err(err.into()),
                Err(err) => {
                    stopped = Some(format!("listing instances failed ({})", err.describe()));
                    break;
                }
            };
            let Some(target) = random::pick(&pool) else {
                stopped = Some("no running, in-service, healthy instance was left".to_owned());
                break;
            };
            tried.insert(target.id.clone());
            let group = target.group.clone().unwrap_or_default();
            let reason = format!("rolling: victim {} of {count}", victims.len() + 1);
            let mut victim = match fleet::terminate(&target.id, &reason) {
                Ok(termination) => fleet::victim(termination),
                Err(err) => match fleet::refusal(&target.id, &err) {
                    Refusal::Skip => continue,
                    Refusal::Stop => {
                        stopped = Some(format!("the blast radius is spent ({})", err.message()));
                        break;
                    }
                },
            };
            log::info(&format!(
                "terminated {} in {group}{}",
                victim.instance_id,
                if victim.dry_run { " (dry run)" } else { "" }
            ));
            recovery::settle(std::slice::from_mut(&mut victim), recovery);
            let failed = victim.verdict == Verdict::NotRecovered;
            victims.push(victim);
            if failed {
                stopped = Some(format!(
                    "{group} did not recover within {}",
                    report::seconds(recovery.timeout_ms)
                ));
                break;
            }
        }

        let mut summary = report::summary(
            &victims,
            &format!("one at a time in groups matching \"{glob}\""),
        );
        if let Some(why) = stopped {
            log::warn(&format!("stopping: {why}"));
            summary.push_str(&format!(
                " Rolling stopped after {} of {count}: {why}.",
                report::plural(victims.len(), "victim")
            ));
        }
        Ok(Outcome { victims, summary })
    }
}

export_strategy!(Rolling);
