//! One plugin run, seen from the host: the implementation behind every
//! import, in domain types. The versioned contract modules translate WIT
//! calls into calls here.
//!
//! Every operation is checked against the policy, journalled before it acts,
//! and bounded in time; the session also watches victims' recovery.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cloud::view::{FleetView, Listing};
use crate::cloud::{
    Capacity, Cloud, CloudError, Group, GroupSnapshot, Instance, InstanceQuery, InstanceState,
    Lifecycle, Millis, TerminateVia,
};
use crate::config::{ChannelConfig, TargetConfig};
use crate::guard::{Guard, Verdict};
use crate::journal::{Event, Journal};
use crate::limits::{Limit, LimitBreach, Limits};
use crate::policy::{Denial, Grant, GroupPatterns, GroupView, Hidden, Policy, Tally};
use crate::progress::Progress;
use crate::recovery::Watch;
use crate::spacing::KillSpacing;
use crate::text;

/// Most bytes kept of an id, channel or target name a plugin passed.
pub const MAX_NAME_BYTES: usize = 256;
/// Most bytes kept of a termination reason.
pub const MAX_REASON_BYTES: usize = 1024;
/// Most bytes kept of one plugin log line.
pub const MAX_LOG_LINE_BYTES: usize = 4096;
/// Most plugin log bytes per run, in the journal and in the host log alike;
/// the rest are counted.
pub const LOG_BYTES_PER_RUN: usize = 1024 * 1024;
/// Most denials journalled and logged per run; the rest are counted (the
/// plugin still gets each typed error).
pub const DENIALS_PER_RUN: u64 = 1000;
/// Most bytes kept of a denial's message (it quotes the target).
const MAX_DENIAL_BYTES: usize = 2 * MAX_NAME_BYTES + 512;
/// Most notifications a plugin may publish per run.
pub const NOTIFICATIONS_PER_RUN: u32 = 20;
/// SNS's own limits: a subject of at most 100 characters (the host keeps
/// 100 bytes) and a message of at most 256 KiB.
pub const SUBJECT_BYTES: usize = 100;
/// See [`SUBJECT_BYTES`].
pub const BODY_BYTES: usize = 256 * 1024;

/// A plugin's name and version, as every error and log line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLabel {
    pub name: String,
    pub version: String,
}

impl fmt::Display for PluginLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Both are the plugin's own text.
        write!(
            f,
            "{}@{}",
            text::shown(&self.name, MAX_NAME_BYTES),
            text::shown(&self.version, MAX_NAME_BYTES)
        )
    }
}

/// The typed error a plugin receives: the contract's `cloud-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("budget exhausted: {0}")]
    BudgetExhausted(String),
    #[error("throttled: {0}")]
    Throttled(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("backend failure: {0}")]
    Backend(String),
}

impl From<CloudError> for PluginError {
    fn from(err: CloudError) -> Self {
        match err {
            CloudError::NotFound(msg) => PluginError::NotFound(msg),
            CloudError::Throttled(msg) => PluginError::Throttled(msg),
            CloudError::Backend(msg) => PluginError::Backend(msg),
        }
    }
}

/// Filter of `cloud.list-instances`, in domain types.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    pub group_pattern: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub zone: Option<String>,
    pub states: Vec<InstanceState>,
}

/// Answer to `cloud.terminate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub instance_id: String,
    pub group: Option<String>,
    pub zone: String,
    pub dry_run: bool,
    pub at_ms: Millis,
}

/// Answer to `probe.check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub target: String,
    pub healthy: bool,
    pub detail: String,
    pub latency_ms: u32,
}

/// Everything a session is configured with. Built with [`SessionSetup::new`]
/// and its setters; what is not set keeps a safe default.
pub struct SessionSetup {
    plugin: PluginLabel,
    experiment: usize,
    cloud: Arc<dyn Cloud>,
    /// Every read of the fleet goes through it; shared by the run.
    view: Arc<FleetView>,
    /// The run's stop conditions and kill switch.
    guard: Arc<Guard>,
    policy: Policy,
    /// What the whole run terminated so far, shared by its experiments.
    run_tally: Arc<std::sync::Mutex<Tally>>,
    /// None only for an inert session (see [`Session::inert`]) or a test.
    journal: Option<Arc<Journal>>,
    limits: Limits,
    seed: u64,
    terminate_via: TerminateVia,
    targets: Arc<BTreeMap<String, TargetConfig>>,
    channels: Arc<BTreeMap<String, ChannelConfig>>,
    /// Recovery: poll interval, how long to wait, targets that must be healthy.
    poll_ms: Millis,
    recovery_timeout_ms: Millis,
    recovery_targets: Vec<String>,
    /// Check the cloud permission for each dry-run termination (EC2 DryRun).
    preflight: bool,
    /// Live display while waiting for recovery.
    progress: Progress,
    /// `min_time_between_kills`, over the history and the run.
    spacing: Option<Arc<KillSpacing>>,
}

impl SessionSetup {
    /// Experiment `experiment` (its index in the config) of `plugin`, on
    /// `cloud`, under `policy` and `limits`. Until set: a view of the fleet
    /// of its own whose reads are kept a second, no journal, a run tally of
    /// its own, seed 0, EC2 terminations, no targets or channels,
    /// recovery looked at every second and not waited for, no preflight, no
    /// progress line.
    pub fn new(
        plugin: PluginLabel,
        experiment: usize,
        cloud: Arc<dyn Cloud>,
        policy: Policy,
        limits: Limits,
    ) -> SessionSetup {
        SessionSetup {
            plugin,
            experiment,
            view: Arc::new(FleetView::new(Arc::clone(&cloud), 1000)),
            guard: Arc::new(Guard::none()),
            cloud,
            policy,
            run_tally: Arc::default(),
            journal: None,
            limits,
            seed: 0,
            terminate_via: TerminateVia::default(),
            targets: Arc::default(),
            channels: Arc::default(),
            poll_ms: 1000,
            recovery_timeout_ms: 0,
            recovery_targets: Vec::new(),
            preflight: false,
            progress: Progress::hidden(),
            spacing: None,
        }
    }

    /// Keep kills of a group apart by the run's spacing rule.
    pub fn spacing(mut self, spacing: Option<Arc<KillSpacing>>) -> Self {
        self.spacing = spacing;
        self
    }

    /// Read the fleet through the run's view (and act on its backend).
    pub fn view(mut self, view: Arc<FleetView>) -> Self {
        self.cloud = Arc::clone(view.cloud());
        self.view = view;
        self
    }

    /// Stop under the run's stop conditions and kill switch.
    pub fn guard(mut self, guard: Arc<Guard>) -> Self {
        self.guard = guard;
        self
    }

    /// Journal every operation here, before it acts.
    pub fn journal(mut self, journal: Arc<Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Count terminations against this run-wide tally too.
    pub fn run_tally(mut self, tally: Arc<std::sync::Mutex<Tally>>) -> Self {
        self.run_tally = tally;
        self
    }

    /// Seed of the plugin's randomness.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How to terminate an instance of a group.
    pub fn terminate_via(mut self, via: TerminateVia) -> Self {
        self.terminate_via = via;
        self
    }

    /// The health targets and notification channels plugins may name.
    pub fn targets_and_channels(
        mut self,
        targets: Arc<BTreeMap<String, TargetConfig>>,
        channels: Arc<BTreeMap<String, ChannelConfig>>,
    ) -> Self {
        self.targets = targets;
        self.channels = channels;
        self
    }

    /// Watch victims every `poll_ms`, for at most `timeout_ms`, until their
    /// groups and these targets are healthy.
    pub fn recovery(mut self, poll_ms: Millis, timeout_ms: Millis, targets: Vec<String>) -> Self {
        self.poll_ms = poll_ms;
        self.recovery_timeout_ms = timeout_ms;
        self.recovery_targets = targets;
        self
    }

    /// Check the cloud permission of each dry-run termination.
    pub fn preflight(mut self, preflight: bool) -> Self {
        self.preflight = preflight;
        self
    }

    /// The live display while waiting for recovery.
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// One plugin run's host state.
pub struct Session {
    setup: SessionSetup,
    started_ms: Millis,
    host_calls: u64,
    /// What the plugin's text cost so far, against the per-run bounds.
    log_bytes: usize,
    suppressed_log_lines: u64,
    suppressed_log_bytes: u64,
    denials: u64,
    notifications: u32,
    rng: ChaCha8Rng,
    tally: Tally,
    /// Terminations the host carried out (or allowed, in a dry run), in order.
    pub terminations: Vec<Termination>,
    /// Victims whose recovery the host is watching.
    pub watch: Watch,
    /// The capacity last journalled per group: a reading is journalled
    /// only when it differs.
    journalled_capacity: BTreeMap<String, Capacity>,
    /// Inert sessions refuse every import (for `metadata()`).
    inert: bool,
}

/// What became of a terminate call that failed.
enum Settled {
    /// The instance is going away: the call took effect.
    Happened,
    /// It did not, or (`uncertain`) nobody can tell.
    Failed { uncertain: bool, seen: String },
}

/// Why a session operation ended the run rather than answering the plugin.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error(transparent)]
    Breach(#[from] LimitBreach),
    #[error("journal failure, stopping before acting: {0:#}")]
    Journal(anyhow::Error),
    #[error("{0}")]
    Contract(String),
    /// The run was stopped (a stop condition, the kill switch) and the
    /// plugin's grace is over.
    #[error("{0}")]
    Stopped(String),
}

/// The plugin's run ended because the run was stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Stopped(pub String);

/// A failure of the host itself during a plugin call (its journal could not
/// be written): the run stops, and the plugin is not blamed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HostFault(pub String);

/// The backend of an inert session: there is none.
struct NoCloud;

#[async_trait::async_trait]
impl Cloud for NoCloud {
    fn kind(&self) -> &'static str {
        "none"
    }
    fn now_ms(&self) -> Millis {
        0
    }
    async fn sleep_ms(&self, _ms: Millis) {}
    async fn groups(
        &self,
        _names: Option<&[String]>,
    ) -> Result<Vec<Arc<GroupSnapshot>>, CloudError> {
        Err(NoCloud::refused())
    }
    async fn instances(&self, _query: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        Err(NoCloud::refused())
    }
    async fn instances_by_id(&self, _ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        Err(NoCloud::refused())
    }
    async fn terminate(&self, _id: &str, _via: TerminateVia) -> Result<(), CloudError> {
        Err(NoCloud::refused())
    }
    async fn publish(&self, _topic: &str, _subject: &str, _body: &str) -> Result<(), CloudError> {
        Err(NoCloud::refused())
    }
}

impl NoCloud {
    fn refused() -> CloudError {
        CloudError::Backend("no cloud outside a run".into())
    }
}

impl Session {
    /// Start a session; the run's clock reads 0 for the plugin from now.
    pub fn new(setup: SessionSetup) -> Session {
        let mut rng = ChaCha8Rng::seed_from_u64(setup.seed);
        // Each experiment of a run draws its own stream from the same seed.
        rng.set_stream(setup.experiment as u64);
        Session {
            started_ms: setup.cloud.now_ms(),
            host_calls: 0,
            log_bytes: 0,
            suppressed_log_lines: 0,
            suppressed_log_bytes: 0,
            denials: 0,
            notifications: 0,
            rng,
            tally: Tally::default(),
            terminations: Vec::new(),
            watch: Watch::default(),
            journalled_capacity: BTreeMap::new(),
            inert: false,
            setup,
        }
    }

    /// A session for calls that must not touch anything, like `metadata()`:
    /// every import ends the call with an error.
    pub fn inert(limits: &Limits) -> Session {
        let policy = Policy {
            scope: crate::policy::Scope {
                groups: GroupPatterns::none(),
                tags: Vec::new(),
                opt_in: None,
                opt_out: None,
                standalone: false,
            },
            blast_radius: crate::policy::BlastRadius::default(),
            dry_run: true,
            grants: Default::default(),
        };
        let loading = PluginLabel {
            name: "(loading)".into(),
            version: String::new(),
        };
        let mut session = Session::new(SessionSetup::new(
            loading,
            0,
            Arc::new(NoCloud),
            policy,
            *limits,
        ));
        session.inert = true;
        session
    }

    /// The plugin this session runs.
    pub fn plugin(&self) -> &PluginLabel {
        &self.setup.plugin
    }

    /// The limits the plugin runs under.
    pub fn limits(&self) -> &Limits {
        &self.setup.limits
    }

    /// The backend.
    pub fn cloud(&self) -> &Arc<dyn Cloud> {
        &self.setup.cloud
    }

    /// Count a host call and check its argument size. Called by the contract
    /// before every import.
    pub fn enter(&mut self, operation: &str, argument_bytes: usize) -> Result<(), Fatal> {
        if self.inert {
            return Err(Fatal::Contract(format!(
                "{operation} was called outside run(); metadata() must not call imports"
            )));
        }
        self.stopped_past_grace()?;
        self.host_calls += 1;
        let limits = &self.setup.limits;
        if self.host_calls > limits.host_calls {
            return Err(LimitBreach::new(
                Limit::HostCalls,
                format!(
                    "more than {} host calls (the last was {operation})",
                    limits.host_calls
                ),
            )
            .into());
        }
        if argument_bytes > limits.host_call_bytes() {
            return Err(LimitBreach::new(
                Limit::HostCallBytes,
                format!(
                    "{operation} was passed {argument_bytes} bytes; at most {} are allowed",
                    limits.host_call_bytes()
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Once the run is stopped, the plugin has [`crate::guard::GRACE_MS`]
    /// on the run's clock to return.
    fn stopped_past_grace(&self) -> Result<(), Fatal> {
        let Some(trip) = self.setup.guard.tripped() else {
            return Ok(());
        };
        if self.setup.cloud.now_ms() < trip.at_ms.saturating_add(crate::guard::GRACE_MS) {
            return Ok(());
        }
        Err(Fatal::Stopped(format!(
            "the run was stopped by {} ({}) and the plugin did not return within {} s",
            trip.condition,
            text::one_line(&trip.saw),
            crate::guard::GRACE_MS / 1000
        )))
    }

    /// Look at the stop conditions and the kill switch now, journalling a
    /// trip the first time it is seen.
    pub async fn check_guard(&self) -> Result<Verdict, Fatal> {
        let oldest: Vec<(String, Millis)> = self.watch.oldest_pending().into_iter().collect();
        let verdict = self.setup.guard.check(&self.setup.view, &oldest).await;
        if let Some(trip) = self.setup.guard.unjournalled() {
            tracing::warn!(condition = %trip.condition, "the run is stopped: {}", text::one_line(&trip.saw));
            self.journal(trip.into_event())?;
        }
        Ok(verdict)
    }

    /// Write a journal entry stamped with this experiment.
    pub fn journal(&self, event: Event) -> Result<(), Fatal> {
        let Some(journal) = &self.setup.journal else {
            return Ok(());
        };
        journal
            .append(
                self.setup.cloud.now_ms(),
                Some(self.setup.experiment),
                event,
            )
            .map(drop)
            .map_err(Fatal::Journal)
    }

    fn deny(
        &mut self,
        operation: &str,
        target: &str,
        denial: &Denial,
    ) -> Result<PluginError, Fatal> {
        self.denials += 1;
        if self.denials <= DENIALS_PER_RUN {
            let target = text::bounded(target, MAX_NAME_BYTES);
            let message = text::bounded(&denial.to_string(), MAX_DENIAL_BYTES).into_owned();
            tracing::info!(plugin = %self.setup.plugin, operation, target = %text::one_line(&target), rule = denial.rule(), "denied: {}", text::one_line(&message));
            self.journal(Event::Denied {
                operation: operation.to_owned(),
                target: target.into_owned(),
                rule: denial.rule().to_owned(),
                message,
            })?;
        }
        let message = text::bounded(&denial.plugin_message(), MAX_DENIAL_BYTES).into_owned();
        Ok(if denial.is_budget() {
            PluginError::BudgetExhausted(message)
        } else {
            PluginError::Denied(message)
        })
    }

    /// Journal what the per-run bounds kept out, if anything. Called once,
    /// after the plugin returned.
    pub fn journal_suppressed(&self) -> Result<(), Fatal> {
        let denials = self.denials.saturating_sub(DENIALS_PER_RUN);
        if denials == 0 && self.suppressed_log_lines == 0 {
            return Ok(());
        }
        tracing::warn!(plugin = %self.setup.plugin, denials, log_lines = self.suppressed_log_lines, "plugin text over the per-run bounds was counted, not kept");
        self.journal(Event::Suppressed {
            log_lines: self.suppressed_log_lines,
            log_bytes: self.suppressed_log_bytes,
            denials,
        })
    }

    /// Run a backend call under the per-call timeout.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, PluginError> {
        let limit = self.setup.limits.host_call_timeout();
        match tokio::time::timeout(limit, fut).await {
            Ok(result) => result.map_err(PluginError::from),
            Err(_) => Err(PluginError::Backend(format!(
                "{what} timed out after {} s",
                limit.as_secs()
            ))),
        }
    }

    /// Every group, keyed by name, as the backend has them.
    async fn all_groups(&self) -> Result<Arc<Listing>, PluginError> {
        self.call("listing groups", self.setup.view.all_groups())
            .await
    }

    fn visible(&self, instance: &Instance, groups: &Listing) -> bool {
        let group = instance
            .group
            .as_ref()
            .and_then(|name| groups.get(name))
            .map(Arc::as_ref);
        self.setup
            .policy
            .instance_visibility(instance, group)
            .is_ok()
    }

    /// `cloud.list-groups`.
    pub async fn list_groups(
        &mut self,
        pattern: Option<String>,
    ) -> Result<Vec<Group>, PluginError> {
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

    /// `probe.instance`.
    pub async fn instance(&mut self, id: &str) -> Result<Instance, PluginError> {
        let groups = self.all_groups().await?;
        let found = self
            .call(
                "describing an instance",
                self.setup.view.describe_instance(id),
            )
            .await?;
        found.filter(|i| self.visible(i, &groups)).ok_or_else(|| {
            PluginError::NotFound(format!("no instance {id} in this experiment's view"))
        })
    }

    /// `probe.group-health`.
    pub async fn group_health(&mut self, name: &str) -> Result<Capacity, PluginError> {
        let groups = self.all_groups().await?;
        let not_found =
            || PluginError::NotFound(format!("no group {name} in this experiment's view"));
        let group = groups.get(name).ok_or_else(not_found)?;
        if self.setup.policy.group_visibility(group).is_err() {
            return Err(not_found());
        }
        let names = [name.to_owned()];
        let capacity = self
            .call("reading group health", self.setup.view.capacity(&names))
            .await?;
        capacity
            .into_iter()
            .next()
            .map(|(_, c)| c)
            .ok_or_else(not_found)
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
            Verdict::Clear => {}
            Verdict::Tripped(trip) => {
                let denial = Denial::Stopped {
                    condition: trip.condition,
                };
                return self.deny(OP, id, &denial).map(Err);
            }
            Verdict::Unknown(why) => {
                return self.deny(OP, id, &Denial::StopUnknown { why }).map(Err);
            }
        }
        let groups = match self.all_groups().await {
            Ok(groups) => groups,
            Err(err) => return Ok(Err(err)),
        };
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
        let group = instance
            .group
            .as_ref()
            .and_then(|name| groups.get(name))
            .map(Arc::as_ref);
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
            if let Err(err) = permitted {
                let detail = match err {
                    PluginError::Backend(m)
                    | PluginError::Throttled(m)
                    | PluginError::NotFound(m) => m,
                    other => format!("{other:?}"),
                };
                let denial = Denial::Permission {
                    instance: id.to_owned(),
                    detail,
                };
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
            if let Err(err) = self
                .call("terminating", self.setup.cloud.terminate(&instance.id, via))
                .await
            {
                match self.settle_ambiguous(&instance.id, &err).await {
                    Settled::Happened => confirmed_after = Some(err.to_string()),
                    Settled::Failed { uncertain, seen } => {
                        self.setup.view.settled(&instance.id);
                        self.journal(Event::TerminateFailed {
                            instance_id: instance.id.clone(),
                            error: format!("{err}; {seen}"),
                            uncertain,
                        })?;
                        return Ok(Err(err));
                    }
                }
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

    /// After a terminate call failed: did it happen anyway? A throttled or
    /// not-found answer is a definite no. Any other failure (a timeout, a
    /// lost answer, a 5xx) may have come after the backend acted, so the
    /// instance is described again.
    async fn settle_ambiguous(&self, id: &str, err: &PluginError) -> Settled {
        if !matches!(err, PluginError::Backend(_)) {
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
                tracing::warn!(plugin = %self.setup.plugin, instance = id, "the terminate call failed ({err}), but the instance is {:?}: counted as a victim", now.state);
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
    fn journal_capacity(&mut self, group: &str, capacity: Capacity) -> Result<(), Fatal> {
        if self.journalled_capacity.get(group) == Some(&capacity) {
            return Ok(());
        }
        self.journalled_capacity.insert(group.to_owned(), capacity);
        self.journal(Event::Capacity {
            group: group.to_owned(),
            capacity,
        })
    }

    /// `probe.targets`: like `notify.channels`, empty without the grant,
    /// so a plugin learns no name it could not use.
    pub fn targets(&self) -> Vec<String> {
        if self.setup.policy.require(Grant::ProbeTargets).is_err() {
            return Vec::new();
        }
        self.setup.targets.keys().cloned().collect()
    }

    /// `probe.check`.
    pub async fn check(&mut self, target: &str) -> Result<Result<CheckResult, PluginError>, Fatal> {
        if let Err(denial) = self.setup.policy.require(Grant::ProbeTargets) {
            return self.deny("check", target, &denial).map(Err);
        }
        Ok(self.check_target(target).await)
    }

    async fn check_target(&self, target: &str) -> Result<CheckResult, PluginError> {
        let spec = self
            .setup
            .targets
            .get(target)
            .ok_or_else(|| PluginError::NotFound(format!("no target named {target}")))?;
        let check = crate::probe::check(
            &self.setup.view,
            spec,
            self.setup.limits.host_call_timeout(),
        )
        .await
        .map_err(|err| match err {
            crate::probe::CheckError::Invalid(why) => PluginError::Invalid(why),
            crate::probe::CheckError::Cloud(err) => PluginError::from(err),
        })?;
        Ok(CheckResult {
            target: target.to_owned(),
            healthy: check.healthy,
            detail: check.detail,
            latency_ms: check.latency_ms,
        })
    }

    /// `notify.channels`.
    pub fn channels(&self) -> Vec<String> {
        if self.setup.policy.require(Grant::Notify).is_err() {
            return Vec::new();
        }
        self.setup.channels.keys().cloned().collect()
    }

    /// `notify.publish`: journalled, retried, never silent; the subject and
    /// body cut to SNS's limits, and at most [`NOTIFICATIONS_PER_RUN`].
    pub async fn publish(
        &mut self,
        channel: &str,
        subject: &str,
        body: &str,
    ) -> Result<Result<(), PluginError>, Fatal> {
        if let Err(denial) = self.setup.policy.require(Grant::Notify) {
            return self.deny("publish", channel, &denial).map(Err);
        }
        let Some(topic) = self.setup.channels.get(channel).map(|c| c.topic.clone()) else {
            return Ok(Err(PluginError::NotFound(format!(
                "no channel named {}",
                text::bounded(channel, MAX_NAME_BYTES)
            ))));
        };
        if self.notifications >= NOTIFICATIONS_PER_RUN {
            let denial = Denial::NotifyBudget {
                max: NOTIFICATIONS_PER_RUN,
            };
            return self.deny("publish", channel, &denial).map(Err);
        }
        self.notifications += 1;
        let timeout = self.setup.limits.host_call_timeout();
        let cloud = std::sync::Arc::clone(&self.setup.cloud);
        let sent = crate::notify::publish(
            cloud.as_ref(),
            timeout,
            channel,
            &topic,
            &text::bounded(subject, SUBJECT_BYTES),
            &text::bounded(body, BODY_BYTES),
            |event| self.journal(event),
        )
        .await?;
        Ok(sent.map_err(PluginError::from))
    }

    /// `runtime.log`: each line cut to [`MAX_LOG_LINE_BYTES`], and at most
    /// [`LOG_BYTES_PER_RUN`] per run, to the journal and the host log alike.
    /// Never synced on its own.
    pub fn log(&mut self, level: tracing::Level, message: &str) -> Result<(), Fatal> {
        let message = text::bounded(message, MAX_LOG_LINE_BYTES);
        if self.log_bytes.saturating_add(message.len()) > LOG_BYTES_PER_RUN {
            self.suppressed_log_lines += 1;
            self.suppressed_log_bytes += message.len() as u64;
            return Ok(());
        }
        // An empty line still costs a journal line.
        self.log_bytes += message.len().max(1);
        let plugin = &self.setup.plugin;
        let shown = text::one_line(&message);
        match level {
            tracing::Level::ERROR => tracing::error!(%plugin, "{shown}"),
            tracing::Level::WARN => tracing::warn!(%plugin, "{shown}"),
            tracing::Level::INFO => tracing::info!(%plugin, "{shown}"),
            tracing::Level::DEBUG => tracing::debug!(%plugin, "{shown}"),
            tracing::Level::TRACE => tracing::trace!(%plugin, "{shown}"),
        }
        self.journal(Event::PluginLog {
            level: level.as_str().to_ascii_lowercase(),
            message: message.into_owned(),
        })
    }

    /// `runtime.now-ms`: the run's clock as the plugin sees it.
    pub fn now_ms(&self) -> Millis {
        self.setup.cloud.now_ms() - self.started_ms
    }

    /// `runtime.random-u64`.
    pub fn random_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// `runtime.sleep-ms`: waits on the run's clock, watching recovery on the
    /// way. Sleeping past the run's deadline ends the run.
    pub async fn sleep_ms(&mut self, ms: Millis) -> Result<(), Fatal> {
        let deadline = self.started_ms + self.setup.limits.timeout_secs.saturating_mul(1000);
        let now = self.setup.cloud.now_ms();
        let wake = now.saturating_add(ms);
        if wake > deadline {
            self.pass_time(deadline.saturating_sub(now)).await?;
            return Err(LimitBreach::new(
                Limit::Timeout,
                format!(
                    "sleeping {ms} ms would pass the run's deadline of {} s on the run clock",
                    self.setup.limits.timeout_secs
                ),
            )
            .into());
        }
        self.pass_time(ms).await
    }

    /// Let `ms` pass on the backend's clock, looking at pending victims every
    /// poll interval.
    pub async fn pass_time(&mut self, ms: Millis) -> Result<(), Fatal> {
        // New victims are looked at before the clock moves on: a fleet that
        // recovers at once is seen to.
        if self.watch.has_unseen() {
            self.observe().await?;
        }
        let mut left = ms;
        while left > 0 {
            // Every poll interval: the victims, the stop conditions and the
            // kill switch.
            let step = left.min(self.setup.poll_ms);
            self.setup.cloud.sleep_ms(step).await;
            left -= step;
            self.observe().await?;
            self.stopped_past_grace()?;
        }
        Ok(())
    }

    /// Look at every pending victim once, and at the stop conditions.
    pub async fn observe(&mut self) -> Result<(), Fatal> {
        self.check_guard().await?;
        if self.watch.is_empty() {
            return Ok(());
        }
        let mut targets_ok = true;
        for target in self.setup.recovery_targets.clone() {
            targets_ok &= matches!(
                self.check_target(&target).await,
                Ok(CheckResult { healthy: true, .. })
            );
        }
        let (events, capacity) = self
            .watch
            .observe(&self.setup.view, self.setup.recovery_timeout_ms, targets_ok)
            .await;
        self.setup.progress.waiting(self.now_ms(), &capacity);
        for (group, capacity) in &capacity {
            self.journal_capacity(group, *capacity)?;
        }
        for event in events {
            self.journal(event)?;
        }
        Ok(())
    }

    /// After the plugin returned: keep watching until every victim recovered
    /// or timed out.
    pub async fn finish_watching(&mut self) -> Result<(), Fatal> {
        self.observe().await?;
        while !self.watch.is_empty() {
            self.setup.cloud.sleep_ms(self.setup.poll_ms).await;
            self.observe().await?;
        }
        self.setup.progress.finish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose every import the policy would refuse, journalling
    /// to `journal`.
    fn session(journal: Arc<Journal>) -> Session {
        Session::new(Session::inert(&Limits::default()).setup.journal(journal))
    }

    fn journal() -> (tempfile::TempDir, Arc<Journal>) {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::create(&dir.path().join("j.jsonl")).unwrap());
        (dir, journal)
    }

    #[test]
    fn plugin_log_lines_cost_no_fsync() {
        let (_dir, journal) = journal();
        let mut session = session(Arc::clone(&journal));
        for _ in 0..10_000 {
            session.log(tracing::Level::INFO, "").unwrap();
        }
        assert_eq!(journal.syncs(), 0);
        assert_eq!(
            crate::journal::read(journal.path()).unwrap().entries.len(),
            10_000
        );
    }

    #[test]
    fn plugin_logs_are_bounded_per_line_and_per_run() {
        let (_dir, journal) = journal();
        let mut session = session(Arc::clone(&journal));
        let line = "x".repeat(MAX_LOG_LINE_BYTES * 4);
        let lines = 2 * LOG_BYTES_PER_RUN / MAX_LOG_LINE_BYTES;
        for _ in 0..lines {
            session.log(tracing::Level::INFO, &line).unwrap();
        }
        session.journal_suppressed().unwrap();
        let entries = crate::journal::read(journal.path()).unwrap().entries;
        let kept: Vec<usize> = entries
            .iter()
            .filter_map(|e| match &e.event {
                Event::PluginLog { message, .. } => Some(message.len()),
                _ => None,
            })
            .collect();
        assert!(kept.iter().all(|&len| len <= MAX_LOG_LINE_BYTES));
        assert!(kept.iter().sum::<usize>() <= LOG_BYTES_PER_RUN);
        assert!(kept.len() >= lines / 2 - 1, "{}", kept.len());
        let Some(Event::Suppressed { log_lines, .. }) = entries.last().map(|e| &e.event) else {
            panic!("no suppressed entry: {:?}", entries.last());
        };
        assert_eq!(*log_lines as usize, lines - kept.len());
    }
}
