//! `cloud.*`: listing what the plugin may see, and terminating within
//! the policy, journalled before it acts.

use super::{Fatal, InstanceFilter, PluginError, Session, Settled, Termination, MAX_REASON_BYTES};
use crate::cloud::{Capacity, Group, Instance, InstanceQuery, Lifecycle};
use crate::guard::BrakeState;
use crate::journal::Event;
use crate::policy::{Denial, Grant, GroupPatterns, GroupView, Hidden, Tally};
use crate::text;

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

    /// `cloud.terminate`.
    ///
    /// Scope is decided from the instance and its group before anything
    /// else is read, and the calls made up to that point are the same
    /// whether or not an out-of-scope id exists.
    pub async fn terminate(
        &mut self,
        id: &str,
        reason: &str,
    ) -> Result<Result<Termination, PluginError>, Fatal> {
        const OP: &str = "terminate";
        if let Err(denial) = self.setup.policy.require(Grant::Terminate) {
            return self.deny(OP, id, &denial).map(Err);
        }
        match self.check_guard().await? {
            BrakeState::Clear => {}
            BrakeState::Tripped(trip) => {
                let denial = Denial::Stopped {
                    condition: trip.condition,
                };
                return self.deny(OP, id, &denial).map(Err);
            }
            BrakeState::Unknown(why) => {
                return self.deny(OP, id, &Denial::StopUnknown { why }).map(Err);
            }
        }
        let found = match self
            .call(
                "describing an instance",
                self.setup.view.describe_instance(id),
            )
            .await
        {
            Ok(found) => found,
            Err(err) => return Ok(Err(err)),
        };
        let Some(instance) = found else {
            let denial = Denial::OutOfScope {
                target: id.to_owned(),
                why: Hidden::Unknown,
            };
            return self.deny(OP, id, &denial).map(Err);
        };
        // The victim's group alone: a listing gone stale is not read again
        // for every termination of a large fleet.
        let group = match self.group_of(&instance).await {
            Ok(group) => group,
            Err(err) => return Ok(Err(err)),
        };
        let group = group.as_deref();
        if let Err(denial) = self.setup.policy.check_reach(&instance, group) {
            return self.deny(OP, id, &denial).map(Err);
        }
        let healthy = match group {
            Some(group) => match self.healthy_in_service(&group.name).await {
                Ok((count, capacity)) => {
                    if let Some(capacity) = capacity {
                        self.journal_capacity(&group.name, capacity)?;
                    }
                    Some(count)
                }
                Err(err) => return Ok(Err(err)),
            },
            None => None,
        };
        let view = group
            .zip(healthy)
            .map(|(group, healthy_in_service)| GroupView {
                group,
                healthy_in_service,
            });
        let decided = {
            let run = self.run_tally();
            self.setup
                .policy
                .check_terminate(&instance, view, &self.tally, &run)
        };
        let dry_run = match decided {
            Ok(dry_run) => dry_run,
            Err(denial) => return self.deny(OP, id, &denial).map(Err),
        };
        let spaced = self
            .setup
            .spacing
            .as_ref()
            .map(|spacing| spacing.check(instance.group.as_deref(), self.setup.cloud.now_ms()));
        if let Some(Err(denial)) = spaced {
            return self.deny(OP, id, &denial).map(Err);
        }
        if dry_run && self.setup.preflight {
            let permitted = self
                .call(
                    "checking permission",
                    self.setup.cloud.check_terminate_permission(id),
                )
                .await;
            self.journal(Event::Preflight {
                instance_id: id.to_owned(),
                permitted: permitted.is_ok(),
                detail: permitted
                    .as_ref()
                    .err()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            })?;
            if let Err(err) = permitted {
                let detail = match err {
                    PluginError::Backend(m)
                    | PluginError::Throttled(m)
                    | PluginError::NotFound(m) => m,
                    other => other.to_string(),
                };
                let denial = Denial::Permission {
                    instance: id.to_owned(),
                    detail,
                };
                return self.deny(OP, id, &denial).map(Err);
            }
        }
        if !dry_run {
            // Checked again and recorded with every process's kills, in one
            // step: two runs never both pass the gap.
            let reserved = self.setup.spacing.as_ref().map(|spacing| {
                spacing.reserve(
                    instance.group.as_deref(),
                    &instance.id,
                    self.setup.cloud.now_ms(),
                )
            });
            if let Some(Err(denial)) = reserved {
                return self.deny(OP, id, &denial).map(Err);
            }
        }
        self.journal(Event::TerminateIntent {
            instance_id: instance.id.clone(),
            group: instance.group.clone(),
            zone: instance.zone.clone(),
            reason: text::bounded(reason, MAX_REASON_BYTES).into_owned(),
            dry_run,
        })?;
        // Counted before the call: a failed or uncertain call still spent budget.
        self.tally.record(&instance.id, instance.group.as_deref());
        if let (Some(spacing), Some(group)) = (&self.setup.spacing, &instance.group) {
            spacing.record(group, self.setup.cloud.now_ms());
        }
        self.run_tally()
            .record(&instance.id, instance.group.as_deref());
        let at_ms = self.setup.cloud.now_ms();
        let mut confirmed_after = None;
        if !dry_run {
            let via = self.setup.terminate_via;
            // Whatever the answer, the view's word on it and its group is old.
            self.setup
                .view
                .terminated(&instance.id, instance.group.as_deref());
            match self
                .call("terminating", self.setup.cloud.terminate(&instance.id, via))
                .await
            {
                Ok(Some(state)) => self.setup.view.terminate_answered(&instance.id, state),
                Ok(None) => {}
                Err(err) => match self.settle_ambiguous(&instance.id, &err).await {
                    Settled::Happened => confirmed_after = Some(err.to_string()),
                    Settled::Failed { uncertain, seen } => {
                        self.setup.view.settled(&instance.id);
                        if !uncertain {
                            if let Some(spacing) = &self.setup.spacing {
                                spacing.release(&instance.id);
                            }
                        }
                        self.journal(Event::TerminateFailed {
                            instance_id: instance.id.clone(),
                            error: format!("{err}; {seen}"),
                            uncertain,
                        })?;
                        return Ok(Err(err));
                    }
                },
            }
        }
        self.journal(Event::TerminateDone {
            instance_id: instance.id.clone(),
            dry_run,
            confirmed_after,
        })?;
        tracing::info!(plugin = %self.setup.plugin, instance = %instance.id, dry_run, "terminated");
        let termination = Termination {
            instance_id: instance.id.clone(),
            group: instance.group.clone(),
            zone: instance.zone.clone(),
            dry_run,
            at_ms: at_ms - self.started_ms,
        };
        if let (false, Some(group)) = (dry_run, &instance.group) {
            self.watch.add(&instance.id, group, at_ms);
        }
        self.terminations.push(termination.clone());
        Ok(Ok(termination))
    }

    /// After a terminate call failed: did it happen anyway? A not-found
    /// answer is a definite no. Any other failure (a timeout, a lost
    /// answer, a 5xx, and a throttle too: the SDK retries, and an earlier
    /// attempt whose answer was lost may have acted) may have come after
    /// the backend acted, so the instance is described again.
    async fn settle_ambiguous(&self, id: &str, err: &PluginError) -> Settled {
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
    fn run_tally(&self) -> std::sync::MutexGuard<'_, Tally> {
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
    async fn healthy_in_service(
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
