//! Waiting for groups to recover after terminations, on the run's clock.
//!
//! A group has recovered when `in-service == desired` and `pending`,
//! `terminating` and `unhealthy` are all 0 (see `types.group-capacity`). Right
//! after a termination a real Auto Scaling group may not have noticed it yet
//! and still look complete, so a group also counts as recovered only once
//! each victim in it is seen out of service.

use std::collections::BTreeMap;

use crate::params::{Params, POLL_SECS, RECOVERY_TIMEOUT_SECS};
use crate::{log, probe, report, runtime};
use crate::{CloudError, GroupCapacity, InstanceState, LifecycleState, RunError, Verdict, Victim};

/// How long to wait and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOptions {
    /// Give up this long after the wait starts.
    pub timeout_ms: u64,
    /// Sleep this long between two checks (at least 1 ms).
    pub poll_ms: u64,
}

impl RecoveryOptions {
    /// From the `recovery-timeout-secs` (at least 0) and `poll-secs` (at
    /// least 1) parameters.
    pub fn from_params(params: &Params) -> Result<RecoveryOptions, RunError> {
        let timeout = params.integer_at_least(RECOVERY_TIMEOUT_SECS, 0)?;
        let poll = params.integer_at_least(POLL_SECS, 1)?;
        Ok(RecoveryOptions {
            timeout_ms: timeout.saturating_mul(1000),
            poll_ms: poll.saturating_mul(1000),
        })
    }
}

/// Whether a group's capacity is complete and settled.
pub fn is_recovered(health: &GroupCapacity) -> bool {
    health.in_service == health.desired
        && health.pending == 0
        && health.terminating == 0
        && health.unhealthy == 0
}

/// Wait until every group in `groups` has recovered, or the timeout passed.
///
/// Polls `probe::group-health` every `poll_ms` (sleeping with
/// `runtime::sleep-ms`) and returns, per group, when it was first seen
/// recovered on the run's clock, or `None` if it was not within the timeout
/// or could not be observed (a refused probe is logged). Never fails: what
/// was learned is always returned.
pub fn wait_for_groups(
    groups: &[String],
    options: RecoveryOptions,
) -> BTreeMap<String, Option<u64>> {
    wait(
        groups.iter().map(|g| (g.clone(), Vec::new())).collect(),
        options,
    )
}

/// Set the verdict of each victim by waiting for its group to recover.
///
/// Victims of a dry run, and victims outside any group, get `unchecked`
/// without waiting. The others get `recovered` (with `recovered-at-ms`) or
/// `not-recovered`. Every group involved is waited for at once, so the wait
/// takes at most `options.timeout_ms` in all.
pub fn settle(victims: &mut [Victim], options: RecoveryOptions) {
    let mut watch: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for victim in victims.iter_mut() {
        victim.verdict = Verdict::Unchecked;
        victim.recovered_at_ms = None;
        if let (Some(group), false) = (&victim.group, victim.dry_run) {
            watch
                .entry(group.clone())
                .or_default()
                .push(victim.instance_id.clone());
        }
    }
    if watch.is_empty() {
        return;
    }
    let recovered = wait(watch, options);
    for victim in victims.iter_mut().filter(|v| !v.dry_run) {
        let Some(group) = &victim.group else { continue };
        match recovered.get(group).copied().flatten() {
            Some(at) => {
                victim.verdict = Verdict::Recovered;
                victim.recovered_at_ms = Some(at);
            }
            None => victim.verdict = Verdict::NotRecovered,
        }
    }
}

/// Wait for each group, and for the listed instances of it to leave service.
fn wait(
    mut pending: BTreeMap<String, Vec<String>>,
    options: RecoveryOptions,
) -> BTreeMap<String, Option<u64>> {
    let started = runtime::now_ms();
    let deadline = started.saturating_add(options.timeout_ms);
    let mut result: BTreeMap<String, Option<u64>> =
        pending.keys().map(|g| (g.clone(), None)).collect();
    log::info(&format!(
        "waiting up to {} for {} to recover",
        report::seconds(options.timeout_ms),
        pending.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    loop {
        pending.retain(|group, victims| {
            victims.retain(|id| !out_of_service(id));
            match probe::group_health(group) {
                Ok(health) if victims.is_empty() && is_recovered(&health) => {
                    let at = runtime::now_ms();
                    log::info(&format!(
                        "{group} recovered after {}",
                        report::seconds(at.saturating_sub(started))
                    ));
                    result.insert(group.clone(), Some(at));
                    false
                }
                Ok(_) => true,
                Err(err @ (CloudError::Throttled(_) | CloudError::Backend(_))) => {
                    log::debug(&format!("checking {group}: {}; will retry", err.describe()));
                    true
                }
                Err(err) => {
                    log::warn(&format!(
                        "cannot check {group}: {}; giving up on it",
                        err.describe()
                    ));
                    false
                }
            }
        });
        if pending.is_empty() {
            break;
        }
        let now = runtime::now_ms();
        if now >= deadline {
            log::warn(&format!(
                "{} did not recover within {}",
                pending.keys().cloned().collect::<Vec<_>>().join(", "),
                report::seconds(options.timeout_ms)
            ));
            break;
        }
        runtime::sleep_ms(options.poll_ms.max(1).min(deadline - now));
    }
    result
}

/// Whether an instance has left service (or can no longer be seen).
fn out_of_service(instance_id: &str) -> bool {
    match probe::describe_instance(instance_id) {
        Ok(instance) => {
            let running = matches!(
                instance.state,
                InstanceState::Pending | InstanceState::Running
            );
            let serving = matches!(
                instance.lifecycle,
                Some(LifecycleState::Pending | LifecycleState::InService)
            );
            !(running && serving)
        }
        // Transient: look again at the next check.
        Err(CloudError::Throttled(_) | CloudError::Backend(_)) => false,
        // Gone, or not ours to see: the group's capacity decides alone.
        Err(_) => true,
    }
}
