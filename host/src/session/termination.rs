//! `cloud.terminate` as a pipeline: named checks, each a small step with
//! its typed refusal, in the order a termination must pass them, then the
//! journalled action.
//!
//! grant → brakes → reach (the instance and its group, in scope) → blast
//! radius (the group's health read now) → spacing (`min_time_between_kills`)
//! → preflight (a dry run asks the backend for the permission) → ledger (the
//! kill recorded with every process's, in one step) → intent journalled →
//! call → settled.

use std::sync::Arc;

use super::{Fatal, PluginError, Session, Settled, Termination, MAX_REASON_BYTES};
use crate::cloud::{Group, Instance, Millis};
use crate::guard::BrakeState;
use crate::journal::Event;
use crate::policy::{Denial, Grant, GroupView, Hidden};
use crate::text;

/// Why a termination (or a fault) went no further.
pub(super) enum Refusal {
    /// A rule refused it: journalled, and the plugin hears `denied`.
    Denied(Denial),
    /// A read the check needed failed: the plugin hears the error.
    Failed(PluginError),
    /// The run cannot go on (the journal refused a write, a limit broke).
    Fatal(Fatal),
}

impl From<Fatal> for Refusal {
    fn from(fatal: Fatal) -> Self {
        Refusal::Fatal(fatal)
    }
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Refusal::Denied(denial)
    }
}

impl From<PluginError> for Refusal {
    fn from(err: PluginError) -> Self {
        Refusal::Failed(err)
    }
}

/// A victim every check let through.
struct Cleared {
    instance: Instance,
    dry_run: bool,
    /// The kill's one instant on the run's clock: what the ledger reserved
    /// and what the journal says. Read twice, a clock another run moved in
    /// between would put the kill after the instant the gap was checked at.
    at_ms: Millis,
}

impl Session {
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
        match self.clear(id).await {
            Ok(cleared) => self.act(cleared, reason).await,
            Err(Refusal::Denied(denial)) => self.deny("terminate", id, &denial).map(Err),
            Err(Refusal::Failed(err)) => Ok(Err(err)),
            Err(Refusal::Fatal(fatal)) => Err(fatal),
        }
    }

    /// Every check, in order; the first that refuses ends it.
    async fn clear(&mut self, id: &str) -> Result<Cleared, Refusal> {
        self.setup.policy.require(Grant::Terminate)?;
        self.brakes_clear().await?;
        let (instance, group) = self.reach(id, Grant::Terminate).await?;
        let dry_run = self
            .within_blast_radius(Grant::Terminate, &instance, group.as_deref())
            .await?;
        self.spaced(&instance)?;
        if dry_run && self.setup.preflight {
            self.preflight(id).await?;
        }
        let at_ms = self.setup.cloud.now_ms();
        if !dry_run {
            self.reserve_in_ledger(&instance, at_ms)?;
        }
        Ok(Cleared {
            instance,
            dry_run,
            at_ms,
        })
    }

    /// No stop condition tripped, no kill switch set, and both readable.
    pub(super) async fn brakes_clear(&self) -> Result<(), Refusal> {
        match self.check_guard().await? {
            BrakeState::Clear => Ok(()),
            BrakeState::Tripped(trip) => Err(Denial::Stopped {
                condition: trip.condition,
            }
            .into()),
            BrakeState::Unknown(why) => Err(Denial::StopUnknown { why }.into()),
        }
    }

    /// The instance exists and is in scope, with its group. Only the
    /// victim's group is read: a listing gone stale is not read again for
    /// every termination of a large fleet.
    pub(super) async fn reach(
        &self,
        id: &str,
        grant: Grant,
    ) -> Result<(Instance, Option<Arc<Group>>), Refusal> {
        let found = self
            .call(
                "describing an instance",
                self.setup.view.describe_instance(id),
            )
            .await?;
        let Some(instance) = found else {
            return Err(Denial::OutOfScope {
                target: id.to_owned(),
                why: Hidden::Unknown,
            }
            .into());
        };
        let group = self.group_of(&instance).await?;
        self.setup
            .policy
            .check_reach_as(grant, &instance, group.as_deref())?;
        Ok((instance, group))
    }

    /// Within the experiment's and the run's budgets, the group's share and
    /// cap, and above its healthy floor as read now; whether it is a dry
    /// run.
    pub(super) async fn within_blast_radius(
        &mut self,
        grant: Grant,
        instance: &Instance,
        group: Option<&Group>,
    ) -> Result<bool, Refusal> {
        let view = match group {
            Some(group) => {
                let (healthy_in_service, capacity) = self.healthy_in_service(&group.name).await?;
                if let Some(capacity) = capacity {
                    self.journal_capacity(&group.name, capacity)?;
                }
                Some(GroupView {
                    group,
                    healthy_in_service,
                })
            }
            None => None,
        };
        let run = self.run_tally();
        Ok(self
            .setup
            .policy
            .check_disruption(grant, instance, view, &self.tally, &run)?)
    }

    /// Not within `min_time_between_kills` of the group's last kill, as
    /// the run knows it.
    fn spaced(&self, instance: &Instance) -> Result<(), Refusal> {
        if let Some(spacing) = &self.setup.spacing {
            spacing.check(instance.group.as_deref(), self.setup.cloud.now_ms())?;
        }
        Ok(())
    }

    /// A dry run under `--preflight` asks the backend whether the
    /// termination would be permitted, and journals the answer.
    async fn preflight(&self, id: &str) -> Result<(), Refusal> {
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
        permitted.map_err(|err| {
            let detail = match err {
                PluginError::Backend(m) | PluginError::Throttled(m) | PluginError::NotFound(m) => m,
                other => other.to_string(),
            };
            Denial::Permission {
                instance: id.to_owned(),
                detail,
            }
            .into()
        })
    }

    /// Checked again and recorded with every process's kills, in one step:
    /// two runs never both pass the gap.
    fn reserve_in_ledger(&self, instance: &Instance, at_ms: Millis) -> Result<(), Refusal> {
        if let Some(spacing) = &self.setup.spacing {
            spacing.reserve(instance.group.as_deref(), &instance.id, at_ms)?;
        }
        Ok(())
    }

    /// Journal the intent, count it, make the call, settle what it did.
    async fn act(
        &mut self,
        cleared: Cleared,
        reason: &str,
    ) -> Result<Result<Termination, PluginError>, Fatal> {
        let Cleared {
            instance,
            dry_run,
            at_ms,
        } = cleared;
        self.journal_at(
            at_ms,
            Event::TerminateIntent {
                instance_id: instance.id.clone(),
                group: instance.group.clone(),
                zone: instance.zone.clone(),
                zone_id: instance.zone_id.clone(),
                reason: text::bounded(reason, MAX_REASON_BYTES).into_owned(),
                dry_run,
            },
        )?;
        // Counted before the call: a failed or uncertain call still spent budget.
        self.tally.record(&instance.id, instance.group.as_deref());
        if let (Some(spacing), Some(group)) = (&self.setup.spacing, &instance.group) {
            spacing.record(group, at_ms);
        }
        self.run_tally()
            .record(&instance.id, instance.group.as_deref());
        let confirmed_after = if dry_run {
            None
        } else {
            match self.call_terminate(&instance).await? {
                Ok(confirmed_after) => confirmed_after,
                Err(err) => return Ok(Err(err)),
            }
        };
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

    /// The backend call. A failure is settled by describing the instance
    /// again: gone after all, it is a victim (with the failure it came
    /// through); otherwise it is journalled as failed (uncertain when
    /// nobody can tell), and a certain failure leaves the ledger.
    async fn call_terminate(
        &self,
        instance: &Instance,
    ) -> Result<Result<Option<String>, PluginError>, Fatal> {
        // Whatever the answer, the view's word on it and its group is old.
        self.setup
            .view
            .terminated(&instance.id, instance.group.as_deref());
        let answer = self
            .call(
                "terminating",
                self.setup
                    .cloud
                    .terminate(&instance.id, self.setup.terminate_via),
            )
            .await;
        let err = match answer {
            Ok(Some(state)) => {
                self.setup.view.terminate_answered(&instance.id, state);
                return Ok(Ok(None));
            }
            Ok(None) => return Ok(Ok(None)),
            Err(err) => err,
        };
        match self.settle_ambiguous(&instance.id, &err).await {
            Settled::Happened => Ok(Ok(Some(err.to_string()))),
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
                Ok(Err(err))
            }
        }
    }
}
