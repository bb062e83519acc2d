//! Simulate losing one availability zone: terminate every running,
//! in-service instance of the groups matching `groups` in `zone` (picked at
//! random when empty), in id order, then wait for the groups to recover. The
//! host's blast radius decides how many terminations actually go through.

use std::collections::BTreeSet;

use wasmonkey_sdk::fleet::{self, Refusal};
use wasmonkey_sdk::params::{self, Params};
use wasmonkey_sdk::recovery::{self, RecoveryOptions};
use wasmonkey_sdk::{export_strategy, log, metadata, random, report};
use wasmonkey_sdk::{Guest, Instance, Outcome, Param, PluginMetadata, RunError};

const ZONE: &str = "zone";

struct AzOutage;

impl Guest for AzOutage {
    fn metadata() -> PluginMetadata {
        metadata!(vec![
            params::text(
                ZONE,
                "Availability zone to take out; empty means one picked at random among the \
                 zones of the in-service instances of the matching groups",
                "",
            ),
            params::groups_spec(),
            params::recovery_timeout_spec(900),
            params::poll_spec(5),
        ])
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        let params = Params::new(params);
        let zone = params.text(ZONE)?.to_owned();
        let glob = params.text(params::GROUPS)?.to_owned();
        let recovery = RecoveryOptions::from_params(&params)?;

        let in_service: Vec<Instance> = fleet::running_group_instances(&glob)?
            .into_iter()
            .filter(fleet::in_service)
            .collect();
        let zone = if zone.is_empty() {
            // BTreeSet: the zones sorted, so the pick depends on the seed only.
            let zones: Vec<&str> = in_service
                .iter()
                .map(|i| i.zone.as_str())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            match random::pick(&zones) {
                Some(zone) => zone.to_string(),
                None => {
                    return Ok(Outcome {
                        victims: Vec::new(),
                        summary: format!(
                            "No running, in-service instance in groups matching \"{glob}\": \
                             no zone to take out."
                        ),
                    })
                }
            }
        } else {
            zone
        };
        let targets: Vec<&Instance> = in_service.iter().filter(|i| i.zone == zone).collect();
        let groups: BTreeSet<&str> = targets.iter().filter_map(|i| i.group.as_deref()).collect();
        log::info(&format!(
            "taking out {zone}: {} in {}",
            report::plural(targets.len(), "in-service instance"),
            report::plural(groups.len(), "group")
        ));

        let reason = format!("az-outage: simulated loss of {zone}");
        let mut victims = Vec::new();
        for target in &targets {
            match fleet::terminate(&target.id, &reason) {
                Ok(termination) => victims.push(fleet::victim(termination)),
                Err(err) => {
                    if fleet::refusal(&target.id, &err) == Refusal::Stop {
                        break;
                    }
                }
            }
        }

        recovery::settle(&mut victims, recovery);
        let context = format!(
            "of the {} in service there in {}",
            targets.len(),
            report::plural(groups.len(), "group")
        );
        Ok(Outcome {
            summary: format!(
                "Simulated the loss of {zone}. {}",
                report::summary(&victims, &context)
            ),
            victims,
        })
    }
}

export_strategy!(AzOutage);
