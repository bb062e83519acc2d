//! `cloud.stop`, `cloud.reboot` and `cloud.suspend-processes` (contract
//! 0.2): each behind its own grant, through the same checks as a
//! termination (brakes, scope, blast radius and healthy floor), its undo
//! owed and journalled before the call. See [`crate::faults`].

use super::termination::Refusal;
use super::{Fatal, PluginError, Session, MAX_NAME_BYTES, MAX_REASON_BYTES};
use crate::cloud::{Millis, ScalingProcess};
use crate::faults::{FaultKind, Undo};
use crate::journal::Event;
use crate::policy::{Denial, Grant, Hidden};
use crate::text;

/// The longest a fault may last: a plugin cannot hold one longer.
pub const MAX_FAULT_MS: Millis = 6 * 3_600_000;

/// A fault every check let through, about to be applied.
struct Planned<'a> {
    fault_id: String,
    kind: FaultKind,
    /// The instance id, group name or zone.
    target: &'a str,
    duration_ms: Option<Millis>,
    reason: &'a str,
    dry_run: bool,
    undo: Option<Undo>,
    /// The groups it reaches: their recovery is measured when it ends.
    groups: Vec<String>,
}

/// Answer to a fault operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The host's id for it, e.g. `f-1`.
    pub id: String,
    /// What it is.
    pub kind: FaultKind,
    /// The instance id or group name.
    pub target: String,
    /// Whether it was a dry run: nothing was changed.
    pub dry_run: bool,
    /// When, on the plugin's clock.
    pub at_ms: Millis,
    /// When the host undoes it, on the plugin's clock.
    pub until_ms: Option<Millis>,
}

impl Session {
    /// `cloud.stop`.
    pub async fn stop(
        &mut self,
        id: &str,
        duration_ms: Millis,
        reason: &str,
    ) -> Result<Result<Fault, PluginError>, Fatal> {
        if let Err(err) = check_duration(duration_ms) {
            return Ok(Err(err));
        }
        self.instance_fault(FaultKind::Stop, Grant::Stop, id, Some(duration_ms), reason)
            .await
    }

    /// `cloud.reboot`.
    pub async fn reboot(
        &mut self,
        id: &str,
        reason: &str,
    ) -> Result<Result<Fault, PluginError>, Fatal> {
        self.instance_fault(FaultKind::Reboot, Grant::Reboot, id, None, reason)
            .await
    }

    /// A fault on one instance: the checks of a termination, then the act.
    async fn instance_fault(
        &mut self,
        kind: FaultKind,
        grant: Grant,
        id: &str,
        duration_ms: Option<Millis>,
        reason: &str,
    ) -> Result<Result<Fault, PluginError>, Fatal> {
        let cleared = async {
            self.setup.policy.require(grant)?;
            self.brakes_clear().await?;
            let (instance, group) = self.reach(id, grant).await?;
            let dry_run = self
                .within_blast_radius(grant, &instance, group.as_deref())
                .await?;
            Ok::<_, Refusal>((instance, dry_run))
        }
        .await;
        let (instance, dry_run) = match cleared {
            Ok(cleared) => cleared,
            Err(Refusal::Denied(denial)) => return self.deny(kind.name(), id, &denial).map(Err),
            Err(Refusal::Failed(err)) => return Ok(Err(err)),
            Err(Refusal::Fatal(fatal)) => return Err(fatal),
        };
        let undo = (kind == FaultKind::Stop && !dry_run).then(|| Undo::Start {
            instance_id: instance.id.clone(),
        });
        // Counted before the call: a failed call still spent budget.
        self.tally.record(&instance.id, instance.group.as_deref());
        self.run_tally()
            .record(&instance.id, instance.group.as_deref());
        let cloud = std::sync::Arc::clone(&self.setup.cloud);
        let instance_id = instance.id.clone();
        let fault_id = self.next_fault_id();
        let planned = Planned {
            fault_id,
            kind,
            target: &instance.id,
            duration_ms,
            reason,
            dry_run,
            undo,
            groups: instance.group.iter().cloned().collect(),
        };
        let fault = self
            .apply(planned, || async move {
                match kind {
                    FaultKind::Stop => cloud.stop_instance(&instance_id).await,
                    _ => cloud.reboot_instance(&instance_id).await,
                }
            })
            .await?;
        // What the view knew of the instance and its group is old now.
        self.setup
            .view
            .changed(&[&instance.id], instance.group.as_deref());
        Ok(fault)
    }

    /// `cloud.suspend-processes`.
    pub async fn suspend_processes(
        &mut self,
        group: &str,
        processes: &[ScalingProcess],
        duration_ms: Millis,
        reason: &str,
    ) -> Result<Result<Fault, PluginError>, Fatal> {
        if let Err(err) = check_duration(duration_ms) {
            return Ok(Err(err));
        }
        if processes.is_empty() {
            return Ok(Err(PluginError::Invalid(
                "suspend-processes: name at least one process".into(),
            )));
        }
        let kind = FaultKind::SuspendProcesses;
        let cleared = self.clear_group(group).await;
        let dry_run = match cleared {
            Ok(dry_run) => dry_run,
            Err(Refusal::Denied(denial)) => return self.deny(kind.name(), group, &denial).map(Err),
            Err(Refusal::Failed(err)) => return Ok(Err(err)),
            Err(Refusal::Fatal(fatal)) => return Err(fatal),
        };
        // Only what is not suspended already is the fault's to resume.
        let already = match self
            .call(
                "reading suspended processes",
                self.setup.cloud.suspended_processes(group),
            )
            .await
        {
            Ok(already) => already,
            Err(err) => return Ok(Err(err)),
        };
        let mut owned: Vec<ScalingProcess> = processes
            .iter()
            .copied()
            .filter(|p| !already.contains(p))
            .collect();
        owned.sort();
        owned.dedup();
        let undo = (!dry_run && !owned.is_empty()).then(|| Undo::Resume {
            group: group.to_owned(),
            processes: owned.clone(),
        });
        self.tally.record(&format!("group:{group}"), Some(group));
        self.run_tally()
            .record(&format!("group:{group}"), Some(group));
        let cloud = std::sync::Arc::clone(&self.setup.cloud);
        let name = group.to_owned();
        let fault_id = self.next_fault_id();
        let planned = Planned {
            fault_id,
            kind,
            target: group,
            duration_ms: Some(duration_ms),
            reason,
            dry_run,
            undo,
            groups: vec![group.to_owned()],
        };
        let fault = self
            .apply(planned, || async move {
                if owned.is_empty() {
                    return Ok(());
                }
                cloud.suspend_processes(&name, &owned).await
            })
            .await?;
        self.setup.view.changed(&[], Some(group));
        Ok(fault)
    }

    /// A group fault's checks: the grant, the brakes, the group in scope,
    /// the budgets (it counts one); whether it is a dry run.
    async fn clear_group(&mut self, name: &str) -> Result<bool, Refusal> {
        let grant = Grant::SuspendProcesses;
        self.setup.policy.require(grant)?;
        self.brakes_clear().await?;
        let groups = self.all_groups().await?;
        let out_of_scope = |why| Denial::OutOfScope {
            target: text::bounded(name, MAX_NAME_BYTES).into_owned(),
            why,
        };
        let Some(group) = groups.get(name) else {
            return Err(out_of_scope(Hidden::Unknown).into());
        };
        self.setup
            .policy
            .group_visibility(group)
            .map_err(out_of_scope)?;
        let run = self.run_tally();
        let budget = &self.setup.policy.blast_radius;
        if self.tally.total() >= budget.max_terminations {
            return Err(Denial::Budget {
                max: budget.max_terminations,
            }
            .into());
        }
        if run.total() >= budget.per_run() {
            return Err(Denial::RunBudget {
                max: budget.per_run(),
            }
            .into());
        }
        Ok(self.setup.policy.dry_run)
    }

    /// Journal the intent (with its undo), owe the undo, make the call,
    /// journal what it did.
    async fn apply<F, Fut>(
        &mut self,
        planned: Planned<'_>,
        call: F,
    ) -> Result<Result<Fault, PluginError>, Fatal>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::cloud::CloudError>>,
    {
        let Planned {
            fault_id,
            kind,
            target,
            duration_ms,
            reason,
            dry_run,
            undo,
            groups,
        } = planned;
        let ledger = self.setup.faults.clone();
        self.journal(Event::FaultIntent {
            fault_id: fault_id.clone(),
            kind: kind.name().to_owned(),
            target: target.to_owned(),
            reason: text::bounded(reason, MAX_REASON_BYTES).into_owned(),
            dry_run,
            duration_ms,
            undo: undo.clone(),
            groups: groups.clone(),
        })?;
        let at_ms = self.setup.cloud.now_ms();
        let until_ms = duration_ms.map(|d| at_ms.saturating_add(d));
        let owes = undo.is_some();
        if let (Some(undo), Some(until_ms)) = (undo, until_ms) {
            match &ledger {
                Some(ledger) => ledger
                    .owe(
                        &fault_id,
                        self.setup.experiment,
                        undo,
                        until_ms,
                        groups.clone(),
                    )
                    .map_err(Fatal::Journal)?,
                // A fault whose undo nobody would owe is not applied.
                None => {
                    return Ok(Err(PluginError::Backend(
                        "this session cannot undo faults".into(),
                    )))
                }
            }
        }
        if !dry_run {
            if let Err(err) = self.call(kind.name(), call()).await {
                self.journal(Event::FaultFailed {
                    fault_id,
                    error: err.to_string(),
                })?;
                return Ok(Err(err));
            }
        }
        self.journal(Event::FaultApplied {
            fault_id: fault_id.clone(),
            until_ms: until_ms.map(|u| u - self.started_ms),
        })?;
        // A fault with nothing to undo (a reboot) ends with its call: its
        // groups' recovery is measured from now.
        if let (false, false, Some(ledger)) = (dry_run, owes, &ledger) {
            ledger.end_now(
                &fault_id,
                self.setup.experiment,
                groups,
                self.setup.cloud.now_ms(),
            );
        }
        tracing::info!(plugin = %self.setup.plugin, fault = %fault_id, kind = kind.name(), target = %text::one_line(target), dry_run, "fault applied");
        Ok(Ok(Fault {
            id: fault_id,
            kind,
            target: target.to_owned(),
            dry_run,
            at_ms: at_ms - self.started_ms,
            until_ms: until_ms.map(|u| u - self.started_ms),
        }))
    }

    /// A fresh id for a fault of this run.
    fn next_fault_id(&self) -> String {
        self.setup
            .faults
            .as_ref()
            .map_or_else(|| "f-0".to_owned(), |ledger| ledger.next_id())
    }

    /// `cloud.blackhole-zone`.
    pub async fn blackhole_zone(
        &mut self,
        zone: &str,
        duration_ms: Millis,
        reason: &str,
    ) -> Result<Result<Fault, PluginError>, Fatal> {
        if let Err(err) = check_duration(duration_ms) {
            return Ok(Err(err));
        }
        let kind = FaultKind::Blackhole;
        let (dry_run, cut_off, subnets) = match self.clear_zone(zone).await {
            Ok(cleared) => cleared,
            Err(Refusal::Denied(denial)) => return self.deny(kind.name(), zone, &denial).map(Err),
            Err(Refusal::Failed(err)) => return Ok(Err(err)),
            Err(Refusal::Fatal(fatal)) => return Err(fatal),
        };
        // Exactly what to move back: each subnet's ACL now.
        let acls = match self
            .call(
                "reading network ACLs",
                self.setup.cloud.subnet_acls(&subnets),
            )
            .await
        {
            Ok(acls) => acls,
            Err(err) => return Ok(Err(err)),
        };
        if let Some(missing) = subnets
            .iter()
            .find(|s| !acls.iter().any(|a| &a.subnet == *s))
        {
            return Ok(Err(PluginError::Backend(format!(
                "the network ACL of subnet {missing} is unknown"
            ))));
        }
        let vpcs: std::collections::BTreeSet<&str> = acls.iter().map(|a| a.vpc.as_str()).collect();
        let vpc = match vpcs.into_iter().collect::<Vec<_>>().as_slice() {
            [vpc] => (*vpc).to_owned(),
            _ => {
                return Ok(Err(PluginError::Invalid(
                    "the zone's subnets are in several VPCs; cut off one VPC's at a time".into(),
                )))
            }
        };
        let fault_id = self.next_fault_id();
        let tag = format!(
            "{}.{fault_id}",
            self.setup.faults.as_ref().map_or("run", |l| l.run_id())
        );
        let undo = (!dry_run).then(|| Undo::Restore {
            subnets: acls.clone(),
            tag: tag.clone(),
        });
        for instance in &cut_off {
            self.tally.record(&instance.id, instance.group.as_deref());
            self.run_tally()
                .record(&instance.id, instance.group.as_deref());
        }
        let mut groups: Vec<String> = cut_off.iter().filter_map(|i| i.group.clone()).collect();
        groups.sort();
        groups.dedup();
        let planned = Planned {
            fault_id,
            kind,
            target: zone,
            duration_ms: Some(duration_ms),
            reason,
            dry_run,
            undo,
            groups,
        };
        let cloud = std::sync::Arc::clone(&self.setup.cloud);
        let fault = self
            .apply(planned, || async move {
                cloud.blackhole_subnets(&vpc, &subnets, &tag).await
            })
            .await?;
        for instance in &cut_off {
            self.setup
                .view
                .changed(&[&instance.id], instance.group.as_deref());
        }
        Ok(fault)
    }

    /// A zone fault's checks: the grant, the brakes, the subnets of the
    /// in-scope instances in the zone holding nothing outside the scope,
    /// the budgets (each instance cut off counts) and each group's healthy
    /// floor. What is cut off, its subnets, and whether it is a dry run.
    async fn clear_zone(
        &mut self,
        zone: &str,
    ) -> Result<(bool, Vec<crate::cloud::Instance>, Vec<String>), Refusal> {
        use crate::cloud::{InstanceQuery, InstanceState};
        let grant = Grant::Blackhole;
        self.setup.policy.require(grant)?;
        self.brakes_clear().await?;
        let groups = self.all_groups().await?;
        let query = InstanceQuery {
            zone: Some(zone.to_owned()),
            ..InstanceQuery::default()
        };
        let everything = self
            .call(
                "listing the zone",
                self.setup.view.list_instances(&query, |_| true),
            )
            .await?;
        let live = everything.into_iter().filter(|i| {
            !matches!(
                i.state,
                InstanceState::Terminated | InstanceState::ShuttingDown
            )
        });
        let (in_scope, outside): (Vec<_>, Vec<_>) = live
            .map(|i| {
                let group = i.group.as_ref().and_then(|g| groups.get(g));
                let why = self
                    .setup
                    .policy
                    .instance_visibility(&i, group.map(|g| &**g))
                    .err();
                (i, why)
            })
            .partition(|(_, why)| why.is_none());
        let in_scope: Vec<crate::cloud::Instance> = in_scope.into_iter().map(|(i, _)| i).collect();
        let target = text::bounded(zone, MAX_NAME_BYTES).into_owned();
        if in_scope.is_empty() {
            return Err(
                PluginError::NotFound(format!("no instance in scope in zone {target}")).into(),
            );
        }
        let mut subnets = std::collections::BTreeSet::new();
        for instance in &in_scope {
            match &instance.subnet {
                Some(subnet) => {
                    subnets.insert(subnet.clone());
                }
                None => {
                    return Err(PluginError::Backend(format!(
                        "the subnet of {} is unknown",
                        instance.id
                    ))
                    .into())
                }
            }
        }
        // Nothing outside the scope may share a subnet that is cut off (an
        // instance whose subnet is unknown might).
        if let Some((stranger, why)) = outside
            .iter()
            .find(|(i, _)| i.subnet.as_ref().is_none_or(|s| subnets.contains(s)))
        {
            return Err(Denial::OutOfScope {
                target,
                why: Hidden::SharesSubnet {
                    subnet: stranger.subnet.clone().unwrap_or_else(|| "?".into()),
                    with: format!(
                        "{} ({})",
                        stranger.id,
                        why.as_ref().map_or_else(String::new, ToString::to_string)
                    ),
                },
            }
            .into());
        }
        let budget = self.setup.policy.blast_radius;
        let cut = u32::try_from(in_scope.len()).unwrap_or(u32::MAX);
        if self.tally.total().saturating_add(cut) > budget.max_terminations {
            return Err(Denial::Budget {
                max: budget.max_terminations,
            }
            .into());
        }
        if self.run_tally().total().saturating_add(cut) > budget.per_run() {
            return Err(Denial::RunBudget {
                max: budget.per_run(),
            }
            .into());
        }
        let mut per_group: std::collections::BTreeMap<&str, u32> =
            std::collections::BTreeMap::new();
        for instance in &in_scope {
            if let Some(group) = &instance.group {
                *per_group.entry(group).or_default() += 1;
            }
        }
        for (group, cut) in per_group {
            let (healthy, _) = self.healthy_in_service(group).await?;
            if healthy.saturating_sub(cut) < budget.min_healthy_per_group {
                return Err(Denial::HealthyFloor {
                    group: group.to_owned(),
                    healthy,
                    min: budget.min_healthy_per_group,
                }
                .into());
            }
        }
        let subnets = subnets.into_iter().collect();
        Ok((self.setup.policy.dry_run, in_scope, subnets))
    }

    /// Undo the faults due by now (all of them once a brake tripped).
    pub(crate) async fn undo_due_faults(&self) -> Result<(), Fatal> {
        let Some(ledger) = &self.setup.faults else {
            return Ok(());
        };
        if ledger.is_empty() {
            return Ok(());
        }
        let now = match self.setup.guard.tripped() {
            Some(_) => None,
            None => Some(self.setup.cloud.now_ms()),
        };
        ledger
            .undo(
                now,
                self.setup.cloud.as_ref(),
                self.setup.journal.as_deref(),
            )
            .await
            .map_err(Fatal::Journal)
    }

    /// When the next owed undo is due, on the backend's clock.
    pub(crate) fn next_undo_ms(&self) -> Option<Millis> {
        self.setup.faults.as_ref().and_then(|l| l.next_due())
    }
}

/// A duration a fault may have.
fn check_duration(duration_ms: Millis) -> Result<(), PluginError> {
    if duration_ms == 0 || duration_ms > MAX_FAULT_MS {
        return Err(PluginError::Invalid(format!(
            "a fault lasts from 1 ms to {} h, not {duration_ms} ms",
            MAX_FAULT_MS / 3_600_000
        )));
    }
    Ok(())
}
