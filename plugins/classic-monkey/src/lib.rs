//! Chaos Monkey: in each Auto Scaling group matching `groups` (by name
//! order), with probability `probability`, terminate one running, in-service,
//! healthy instance picked uniformly at random; wait for the groups to recover
//! and publish one notification listing the victims.

use std::collections::BTreeMap;

use wasmonkey_sdk::fleet::{self, Refusal};
use wasmonkey_sdk::params::{self, Params};
use wasmonkey_sdk::recovery::{self, RecoveryOptions};
use wasmonkey_sdk::{export_strategy, log, metadata, notify, random, report};
use wasmonkey_sdk::{Guest, Instance, Outcome, Param, PluginMetadata, RunError, Victim};

const PROBABILITY: &str = "probability";
const CHANNEL: &str = "channel";

struct ClassicMonkey;

impl Guest for ClassicMonkey {
    fn metadata() -> PluginMetadata {
        metadata!(vec![
            params::groups_spec(),
            params::number(
                PROBABILITY,
                "Chance, from 0 to 1, that each eligible group loses an instance",
                1.0,
            ),
            params::recovery_timeout_spec(900),
            params::poll_spec(5),
            params::text(
                CHANNEL,
                "Notification channel alias; empty means the first granted channel, if any",
                "",
            ),
        ])
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        let params = Params::new(params);
        let glob = params.text(params::GROUPS)?.to_owned();
        let probability = params.number_within(PROBABILITY, 0.0, 1.0)?;
        let recovery = RecoveryOptions::from_params(&params)?;
        let channel = params.text(CHANNEL)?.to_owned();

        let groups = fleet::select_groups(&glob)?;
        let instances = fleet::running_group_instances(&glob)?;
        // Each group's fair victims, in id order, found in one pass: a
        // fleet of thousands of groups is not scanned once per group.
        let mut pools: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for instance in instances.iter().filter(|i| fleet::in_service_healthy(i)) {
            if let Some(group) = instance.group.as_deref() {
                pools.entry(group).or_default().push(instance);
            }
        }
        let mut victims = Vec::new();
        let mut eligible = 0;
        for group in &groups {
            let pool = pools.remove(group.name.as_str()).unwrap_or_default();
            if pool.is_empty() {
                log::info(&format!(
                    "{}: no running, in-service, healthy instance",
                    group.name
                ));
                continue;
            }
            eligible += 1;
            if !random::chance(probability) {
                log::info(&format!("{}: spared this time", group.name));
                continue;
            }
            let Some(&target) = random::pick(&pool) else {
                continue;
            };
            let reason = format!("classic-monkey: random victim in {}", group.name);
            match fleet::terminate(&target.id, &reason) {
                Ok(termination) => {
                    log::info(&format!(
                        "{}: terminated {}{}",
                        group.name,
                        target.id,
                        if termination.dry_run {
                            " (dry run)"
                        } else {
                            ""
                        }
                    ));
                    victims.push(fleet::victim(termination));
                }
                Err(err) => {
                    if fleet::refusal(&target.id, &err) == Refusal::Stop {
                        break;
                    }
                }
            }
        }

        recovery::settle(&mut victims, recovery);
        announce(&channel, &victims);
        let context = format!(
            "across {eligible} eligible of {} matching \"{glob}\"",
            report::plural(groups.len(), "group")
        );
        Ok(Outcome {
            summary: report::summary(&victims, &context),
            victims,
        })
    }
}

/// Publish the victims' fates; a failure is logged, never fatal.
fn announce(channel: &str, victims: &[Victim]) {
    if victims.is_empty() {
        log::info("no victim: no notification");
        return;
    }
    let channel = if channel.is_empty() {
        match notify::channels().into_iter().next() {
            Some(first) => first,
            None => {
                log::info("no notification channel granted: not notifying");
                return;
            }
        }
    } else {
        channel.to_owned()
    };
    let subject = format!("classic-monkey: {}", report::terminated(victims));
    let body = report::victim_lines(victims);
    if let Err(err) = notify::publish(&channel, &subject, &body) {
        log::warn(&format!(
            "publishing to {channel} failed: {}",
            err.describe()
        ));
    }
}

export_strategy!(ClassicMonkey);
