//! The host's own measure of recovery, independent of what a plugin claims.
//!
//! A victim has recovered when it is no longer counted in service, its group
//! is back at desired capacity with every instance in service and healthy,
//! and the operator's recovery targets are healthy. Recovery time runs from
//! the termination call to the first observation of that state: the first
//! look comes before the run's clock moves on, then one every poll
//! interval, so its precision is the poll interval. All victims are looked
//! at together, through the run's fleet view.
//!
//! A fault's groups are watched the same way from the moment the fault
//! ended (its undo, or a reboot's call): each has recovered when it is back
//! at desired capacity, in service and healthy, with the targets healthy.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cloud::view::FleetView;
use crate::cloud::{Capacity, GroupSnapshot, Lifecycle, Millis};
use crate::journal::Event;

/// What is recovering.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    /// A terminated instance: it must also have left service.
    Victim(String),
    /// A fault that ended.
    Fault(String),
}

impl Subject {
    fn id(&self) -> &str {
        match self {
            Subject::Victim(id) | Subject::Fault(id) => id,
        }
    }
}

/// A victim (or a fault's group) whose recovery is not decided yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    subject: Subject,
    group: String,
    /// When the termination was called, or the fault ended.
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
            subject: Subject::Victim(instance_id.to_owned()),
            group: group.to_owned(),
            terminated_at,
            seen: false,
        });
    }

    /// Start watching `group`, reached by `fault_id`, which ended at
    /// `ended_at` (backend clock).
    pub(crate) fn add_fault(&mut self, fault_id: &str, group: &str, ended_at: Millis) {
        self.pending.push(Pending {
            subject: Subject::Fault(fault_id.to_owned()),
            group: group.to_owned(),
            terminated_at: ended_at,
            seen: false,
        });
    }

    /// The victim (or fault) undecided the longest, with when it was terminated (or ended): a
    /// recovery budget is spent by it first, and looking only at it keeps a
    /// check before each of hundreds of terminations from copying them all.
    pub(crate) fn oldest_pending(&self) -> Option<(String, Millis)> {
        self.pending
            .iter()
            .min_by_key(|p| p.terminated_at)
            .map(|p| (p.subject.id().to_owned(), p.terminated_at))
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
            let gone = match &victim.subject {
                Subject::Victim(id) => snapshot.is_some_and(|s| {
                    s.member(id)
                        .is_none_or(|m| m.lifecycle != Lifecycle::InService)
                }),
                Subject::Fault(_) => snapshot.is_some(),
            };
            let waited = now.saturating_sub(victim.terminated_at);
            let recovered = targets_ok && gone && cap.is_some_and(|c| c.is_recovered());
            if !recovered && waited < timeout_ms {
                still.push(victim);
                continue;
            }
            events.push(match (victim.subject, recovered) {
                (Subject::Victim(instance_id), true) => {
                    view.settled(&instance_id);
                    Event::Recovered {
                        instance_id,
                        group: victim.group,
                        recovery_ms: waited,
                        capacity: cap.unwrap_or_default(),
                    }
                }
                (Subject::Victim(instance_id), false) => {
                    view.settled(&instance_id);
                    Event::NotRecovered {
                        instance_id,
                        group: victim.group,
                        waited_ms: waited,
                        capacity: cap,
                    }
                }
                (Subject::Fault(fault_id), true) => Event::FaultRecovered {
                    fault_id,
                    group: victim.group,
                    recovery_ms: waited,
                    capacity: cap.unwrap_or_default(),
                },
                (Subject::Fault(fault_id), false) => Event::FaultNotRecovered {
                    fault_id,
                    group: victim.group,
                    waited_ms: waited,
                    capacity: cap,
                },
            });
        }
        self.pending = still;
        (events, capacity.into_iter().collect())
    }
}
