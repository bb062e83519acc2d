//! Reading and acting on the fleet through the host's `cloud` interface.
//!
//! Name matching is the host's job: these helpers pass the operator's glob to
//! the host and never match names themselves.

use crate::cloud::{self, InstanceFilter, Termination};
use crate::{log, runtime, CloudError, Group, Instance, InstanceState, LifecycleState};
use crate::{Verdict, Victim};

/// How many times a throttled call is retried before giving up.
pub const THROTTLE_RETRIES: u32 = 3;

/// Wait before the first retry of a throttled call; doubled for each next one.
pub const THROTTLE_BACKOFF_MS: u64 = 1_000;

/// Call `f`, retrying up to [`THROTTLE_RETRIES`] times (sleeping 1 s, 2 s,
/// 4 s) while the host answers `throttled`. Other answers are returned as
/// they are. `what` names the call in the log.
pub fn retry_throttled<T>(
    what: &str,
    mut f: impl FnMut() -> Result<T, CloudError>,
) -> Result<T, CloudError> {
    let mut backoff = THROTTLE_BACKOFF_MS;
    let mut retries = 0;
    loop {
        match f() {
            Err(CloudError::Throttled(message)) if retries < THROTTLE_RETRIES => {
                retries += 1;
                log::debug(&format!(
                    "{what}: throttled ({message}); retry {retries} of {THROTTLE_RETRIES} in {backoff} ms"
                ));
                runtime::sleep_ms(backoff);
                backoff = backoff.saturating_mul(2);
            }
            result => return result,
        }
    }
}

/// `None` for an empty or `*` glob (everything in scope), else the glob.
fn pattern(glob: &str) -> Option<&str> {
    match glob {
        "" | "*" => None,
        glob => Some(glob),
    }
}

/// The groups in scope whose names match `glob`, sorted by name.
pub fn select_groups(glob: &str) -> Result<Vec<Group>, CloudError> {
    let mut groups = retry_throttled("listing groups", || cloud::list_groups(pattern(glob)))?;
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(groups)
}

/// Running instances of the groups matching `glob` (instances outside any
/// group are left out), sorted by id.
pub fn running_group_instances(glob: &str) -> Result<Vec<Instance>, CloudError> {
    let filter = InstanceFilter {
        group_pattern: Some(if glob.is_empty() { "*" } else { glob }.to_owned()),
        tags: Vec::new(),
        zone: None,
        states: vec![InstanceState::Running],
    };
    let mut instances = retry_throttled("listing instances", || cloud::list_instances(&filter))?;
    instances.retain(|i| i.group.is_some() && i.state == InstanceState::Running);
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(instances)
}

/// Whether the instance is in service in its group.
pub fn in_service(instance: &Instance) -> bool {
    instance.lifecycle == Some(LifecycleState::InService)
}

/// Whether the instance is in service and its group's health check passes:
/// a fair victim for strategies that take out one healthy instance.
pub fn in_service_healthy(instance: &Instance) -> bool {
    in_service(instance) && instance.healthy
}

/// Terminate an instance, retrying while throttled (see [`retry_throttled`]).
pub fn terminate(instance_id: &str, reason: &str) -> Result<Termination, CloudError> {
    retry_throttled(&format!("terminating {instance_id}"), || {
        cloud::terminate(instance_id, reason)
    })
}

/// The victim a termination made, with verdict `unchecked` until someone
/// waits for its recovery (see [`crate::recovery::settle`]).
pub fn victim(termination: Termination) -> Victim {
    Victim {
        instance_id: termination.instance_id,
        group: termination.group,
        zone: termination.zone,
        terminated_at_ms: termination.at_ms,
        dry_run: termination.dry_run,
        verdict: Verdict::Unchecked,
        recovered_at_ms: None,
    }
}

/// What a strategy should do after a refused termination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Skip this instance (denied, not found, still throttled, invalid, or a
    /// backend failure) and go on with the next.
    Skip,
    /// The blast radius is spent: terminate nothing more.
    Stop,
}

/// Log a refused termination and say whether to go on.
pub fn refusal(instance_id: &str, err: &CloudError) -> Refusal {
    match err {
        CloudError::BudgetExhausted(_) => {
            log::info(&format!(
                "not terminating {instance_id}: {}; stopping",
                err.describe()
            ));
            Refusal::Stop
        }
        CloudError::Backend(_) => {
            log::error(&format!(
                "terminating {instance_id} failed: {}; skipping it",
                err.describe()
            ));
            Refusal::Skip
        }
        _ => {
            log::warn(&format!(
                "not terminating {instance_id}: {}; skipping it",
                err.describe()
            ));
            Refusal::Skip
        }
    }
}
