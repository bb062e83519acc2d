//! The host's own measure of recovery, independent of what a plugin claims.
//!
//! A victim has recovered when it is no longer counted in service, its group
//! is back at desired capacity with every instance in service and healthy,
//! and the operator's recovery targets are healthy. Recovery time runs from
//! the termination call to the first observation of that state: the first
//! look comes before the run's clock moves on, then one every poll
//! interval, so its precision is the poll interval. All victims are looked
//! at together, through the run's fleet view.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cloud::view::FleetView;
use crate::cloud::{Capacity, GroupSnapshot, Lifecycle, Millis};
use crate::journal::Event;

/// A victim whose recovery is not decided yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    instance_id: String,
    group: String,
    terminated_at: Millis,
    /// Looked at once at least.
    seen: bool,
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
            seen: false,
        });
    }

    /// The victim undecided the longest, with when it was terminated: a
    /// recovery budget is spent by it first, and looking only at it keeps a
    /// check before each of hundreds of terminations from copying them all.
    pub(crate) fn oldest_pending(&self) -> Option<(String, Millis)> {
        self.pending
            .iter()
            .min_by_key(|p| p.terminated_at)
            .map(|p| (p.instance_id.clone(), p.terminated_at))
    }

    /// A victim has not been looked at yet.
    pub(crate) fn has_unseen(&self) -> bool {
        self.pending.iter().any(|p| !p.seen)
    }

    /// Nothing left to watch.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Look once; decide what can be decided and return the journal events
    /// with the capacity of the groups looked at. Backend errors leave
    /// victims pending (only the timeout decides them).
    pub(crate) async fn observe(
        &mut self,
        view: &FleetView,
        timeout_ms: Millis,
        targets_ok: bool,
    ) -> (Vec<Event>, Vec<(String, Capacity)>) {
        let now = view.cloud().now_ms();
        let mut groups: Vec<String> = self.pending.iter().map(|p| p.group.clone()).collect();
        groups.sort();
        groups.dedup();
        // The groups' answers alone decide: whether a victim is still
        // counted in service is the group's word, and one read of the
        // victims' groups carries it with their capacity.
        let snapshots: BTreeMap<String, Arc<GroupSnapshot>> = match view.groups(&groups).await {
            Ok(found) => found
                .into_iter()
                .map(|g| (g.group.name.clone(), g))
                .collect(),
            Err(err) => {
                tracing::warn!("recovery watch: reading the victims' groups failed: {err}");
                BTreeMap::new()
            }
        };
        let capacity: BTreeMap<String, Capacity> = snapshots
            .values()
            .map(|s| (s.group.name.clone(), s.capacity()))
            .collect();
        let mut events = Vec::new();
        let mut still = Vec::new();
        for mut victim in std::mem::take(&mut self.pending) {
            victim.seen = true;
            let snapshot = snapshots.get(&victim.group);
            let cap = capacity.get(&victim.group).copied();
            let out_of_service = snapshot.is_some_and(|s| {
                s.member(&victim.instance_id)
                    .is_none_or(|m| m.lifecycle != Lifecycle::InService)
            });
            let waited = now.saturating_sub(victim.terminated_at);
            if targets_ok && out_of_service && cap.is_some_and(|c| c.is_recovered()) {
                view.settled(&victim.instance_id);
                events.push(Event::Recovered {
                    instance_id: victim.instance_id,
                    group: victim.group,
                    recovery_ms: waited,
                    capacity: cap.unwrap_or_default(),
                });
            } else if waited >= timeout_ms {
                view.settled(&victim.instance_id);
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
