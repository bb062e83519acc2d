//! The host's own measure of recovery, independent of what a plugin claims.
//!
//! A victim has recovered when it is no longer counted in service, its group
//! is back at desired capacity with every instance in service and healthy,
//! and the operator's recovery targets are healthy. Recovery time runs from
//! the termination call to the first observation of that state, so its
//! precision is the poll interval.

use std::collections::BTreeMap;

use crate::cloud::{Capacity, Cloud, Lifecycle, Millis};
use crate::journal::Event;

/// A victim whose recovery is not decided yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    instance_id: String,
    group: String,
    terminated_at: Millis,
}

/// Victims being watched.
#[derive(Debug, Default)]
pub struct Watch {
    pending: Vec<Pending>,
}

impl Watch {
    /// Start watching a victim terminated at `terminated_at` (backend clock).
    pub fn add(&mut self, instance_id: &str, group: &str, terminated_at: Millis) {
        self.pending.push(Pending {
            instance_id: instance_id.to_owned(),
            group: group.to_owned(),
            terminated_at,
        });
    }

    /// Nothing left to watch.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Look once; decide what can be decided and return the journal events
    /// with the capacity of the groups looked at. Backend errors leave
    /// victims pending (only the timeout decides them).
    pub async fn observe(
        &mut self,
        cloud: &dyn Cloud,
        timeout_ms: Millis,
        targets_ok: bool,
    ) -> (Vec<Event>, Vec<(String, Capacity)>) {
        let now = cloud.now_ms();
        let mut groups: Vec<String> = self.pending.iter().map(|p| p.group.clone()).collect();
        groups.sort();
        groups.dedup();
        let capacity: BTreeMap<String, Capacity> = match cloud.capacity(&groups).await {
            Ok(found) => found.into_iter().collect(),
            Err(err) => {
                tracing::warn!("recovery watch: reading group capacity failed: {err}");
                BTreeMap::new()
            }
        };
        let mut events = Vec::new();
        let mut still = Vec::new();
        for victim in std::mem::take(&mut self.pending) {
            let cap = capacity.get(&victim.group).copied();
            let out_of_service = match cloud.describe_instance(&victim.instance_id).await {
                Ok(Some(instance)) => instance.lifecycle != Some(Lifecycle::InService),
                Ok(None) => true,
                Err(_) => false,
            };
            let waited = now.saturating_sub(victim.terminated_at);
            if targets_ok && out_of_service && cap.is_some_and(|c| c.is_recovered()) {
                events.push(Event::Recovered {
                    instance_id: victim.instance_id,
                    group: victim.group,
                    recovery_ms: waited,
                    capacity: cap.unwrap_or_default(),
                });
            } else if waited >= timeout_ms {
                events.push(Event::NotRecovered {
                    instance_id: victim.instance_id,
                    group: victim.group,
                    waited_ms: waited,
                    capacity: cap,
                });
            } else {
                still.push(victim);
            }
        }
        self.pending = still;
        (events, capacity.into_iter().collect())
    }
}
