//! `cloud.*`: listing what the plugin may see, and terminating within
//! the policy, journalled before it acts.

use super::{Fatal, InstanceFilter, PluginError, Session, Settled};
use crate::cloud::{Capacity, Group, Instance, InstanceQuery, Lifecycle};
use crate::journal::Event;
use crate::policy::{GroupPatterns, Tally};
use crate::text;

/// A listing being read page by page: its filter, and its instances as
/// they were at its first page, sorted by id.
#[derive(Debug)]
pub(super) struct Paging {
    filter: InstanceFilter,
    instances: Vec<Instance>,
}

impl Session {
    /// `cloud.list-groups`.
    pub async fn list_groups(
        &mut self,
        pattern: Option<String>,
    ) -> Result<Vec<Group>, PluginError> {
        if let Some(stopped) = self.stop_answer() {
            return Err(stopped);
        }
        let pattern = pattern
            .map(|p| GroupPatterns::new(&[p]).map_err(PluginError::Invalid))
            .transpose()?;
        let groups = self.all_groups().await?;
        Ok(groups
            .values()
            .filter(|g| self.setup.policy.group_visibility(g).is_ok())
            .filter(|g| pattern.as_ref().is_none_or(|p| p.matches(&g.name)))
            .map(|g| Group::clone(g))
            .collect())
    }

    /// `cloud.list-instances`.
    pub async fn list_instances(
        &mut self,
        filter: InstanceFilter,
    ) -> Result<Vec<Instance>, PluginError> {
        if let Some(stopped) = self.stop_answer() {
            return Err(stopped);
        }
        let pattern = filter
            .group_pattern
            .as_ref()
            .map(|p| GroupPatterns::new(&[p]).map_err(PluginError::Invalid))
            .transpose()?;
        let groups = self.all_groups().await?;
        // Ask the backend only for groups in scope (and the pattern), unless
        // standalone instances are in scope too and no pattern narrows.
        let group_names = if pattern.is_none() && self.setup.policy.scope.standalone {
            None
        } else {
            Some(
                groups
                    .values()
                    .filter(|g| self.setup.policy.group_visibility(g).is_ok())
                    .filter(|g| pattern.as_ref().is_none_or(|p| p.matches(&g.name)))
                    .map(|g| g.name.clone())
                    .collect(),
            )
        };
        let query = InstanceQuery {
            groups: group_names,
            zone: filter.zone,
            states: filter.states,
            tags: filter.tags,
        };
        // Only what the plugin may see is kept for later lookups.
        let keep = |i: &Instance| self.visible(i, &groups);
        let mut instances = self
            .call(
                "listing instances",
                self.setup.view.list_instances(&query, keep),
            )
            .await?;
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(instances)
    }

    /// `cloud.list-instances-page`: at most `limit` instances after
    /// `start_after`, by id, and the id to start the next page after. A
    /// listing is read once, at its first page (no `start_after`), and its
    /// later pages are cut from that snapshot: paging through N instances
    /// costs one listing, not one a page, and no instance is skipped or
    /// shown twice when the fleet changes in between.
    pub async fn list_instances_page(
        &mut self,
        filter: InstanceFilter,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Instance>, Option<String>), PluginError> {
        if let Some(stopped) = self.stop_answer() {
            return Err(stopped);
        }
        let kept = self
            .paging
            .take()
            .filter(|paging| start_after.is_some() && paging.filter == filter);
        let paging = match kept {
            Some(paging) => paging,
            None => Paging {
                instances: self.list_instances(filter.clone()).await?,
                filter,
            },
        };
        let paging = self.paging.insert(paging);
        // Sorted by id: the page starts after `start_after`.
        let from = start_after.map_or(0, |after| {
            paging.instances.partition_point(|i| i.id.as_str() <= after)
        });
        let rest = paging.instances.get(from..).unwrap_or_default();
        let page: Vec<Instance> = rest.iter().take(limit).cloned().collect();
        let next = (rest.len() > limit)
            .then(|| page.last().map(|i| i.id.clone()))
            .flatten();
        Ok((page, next))
    }

    /// After a terminate call failed: did it happen anyway? A not-found
    /// answer is a definite no. Any other failure (a timeout, a lost
    /// answer, a 5xx, and a throttle too: the SDK retries, and an earlier
    /// attempt whose answer was lost may have acted) may have come after
    /// the backend acted, so the instance is described again.
    pub(super) async fn settle_ambiguous(&self, id: &str, err: &PluginError) -> Settled {
        if !matches!(err, PluginError::Backend(_) | PluginError::Throttled(_)) {
            return Settled::Failed {
                uncertain: false,
                seen: "the backend refused it".into(),
            };
        }
        // The view forgot the instance when the call was made: this reads.
        match self
            .call(
                "describing an instance again",
                self.setup.view.describe_instance(id),
            )
            .await
        {
            Ok(Some(now)) if now.is_going_away() => {
                tracing::warn!(plugin = %self.setup.plugin, instance = %text::one_line(id), "the terminate call failed ({}), but the instance is {:?}: counted as a victim", text::one_line(&err.to_string()), now.state);
                Settled::Happened
            }
            Ok(Some(now)) => Settled::Failed {
                uncertain: false,
                seen: format!("described again, it is {:?}", now.state),
            },
            Ok(None) => Settled::Failed {
                uncertain: true,
                seen: "described again, the backend no longer knows it".into(),
            },
            Err(again) => Settled::Failed {
                uncertain: true,
                seen: format!("describing it again failed too ({again}): it may be gone"),
            },
        }
    }

    /// The run-wide tally, shared with the run's other experiments.
    pub(super) fn run_tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A poisoned lock still holds a correct count: every update is one
        // insert.
        self.setup
            .run_tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Healthy in-service instances of a group, not counting this
    /// experiment's victims, from a read of the group no older than the
    /// view's bound.
    /// A fresh read of the group: its healthy in-service members the run
    /// has not terminated yet, and its capacity.
    pub(super) async fn healthy_in_service(
        &self,
        group: &str,
    ) -> Result<(u32, Option<Capacity>), PluginError> {
        let names = [group.to_owned()];
        let snapshot = self
            .call("reading a group", self.setup.view.groups(&names))
            .await?;
        let count = snapshot
            .iter()
            .flat_map(|g| &g.members)
            .filter(|m| {
                m.lifecycle == Lifecycle::InService && m.healthy && !self.tally.contains(&m.id)
            })
            .count();
        let capacity = snapshot.first().map(|g| g.capacity());
        Ok((u32::try_from(count).unwrap_or(u32::MAX), capacity))
    }

    /// Journal what the host saw of a group's capacity, when it changed.
    pub(super) fn journal_capacity(
        &mut self,
        group: &str,
        capacity: Capacity,
    ) -> Result<(), Fatal> {
        if self.journalled_capacity.get(group) == Some(&capacity) {
            return Ok(());
        }
        self.journalled_capacity.insert(group.to_owned(), capacity);
        self.journal(Event::Capacity {
            group: group.to_owned(),
            capacity,
        })
    }
}
