//! One plugin run, seen from the host: the implementation behind every
//! import, in domain types. The versioned contract modules translate WIT
//! calls into calls here.
//!
//! Every operation is checked against the policy, journalled before it acts,
//! and bounded in time; the session also watches victims' recovery.
//!
//! This module holds the run's state and what every interface shares
//! (entering a call, the journal, denials, the guard); each interface's
//! half is its own module: `cloud`, `probe`, `notify` and
//! `runtime`, as the WIT names them.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cloud::view::{FleetView, Listing};
use crate::cloud::{
    Capacity, Cloud, CloudError, Group, GroupSnapshot, Instance, InstanceQuery, InstanceState,
    Millis, TerminateVia,
};
use crate::config::{ChannelConfig, TargetConfig};
use crate::guard::{BrakeState, Guard};
use crate::journal::{Event, Journal};
use crate::limits::{Limit, LimitBreach, Limits};
use crate::policy::{Denial, GroupPatterns, Policy, Tally};
use crate::progress::Progress;
use crate::recovery::Watch;
use crate::spacing::KillSpacing;
use crate::text;

// The host half of each interface, over the one run state below.
mod cloud;
mod faults;
mod notify;
mod probe;
mod runtime;
mod termination;

/// Most bytes kept of an id, channel or target name a plugin passed.
pub(crate) const MAX_NAME_BYTES: usize = 256;
/// Most bytes kept of a termination reason.
pub(crate) const MAX_REASON_BYTES: usize = 1024;
/// Most bytes kept of one plugin log line.
pub(crate) const MAX_LOG_LINE_BYTES: usize = 4096;
/// Most plugin log bytes per run, in the journal and in the host log alike;
/// the rest are counted.
pub(crate) const LOG_BYTES_PER_RUN: usize = 1024 * 1024;
/// Most plugin log lines per run, whatever their size: an empty line still
/// costs a journal entry; the rest are counted.
pub(crate) const LOG_LINES_PER_RUN: u64 = 2000;
/// Most failed backend calls journalled per run; the rest are counted.
pub(crate) const CALL_FAILURES_PER_RUN: u64 = 100;
/// Most denials journalled and logged per run; the rest are counted (the
/// plugin still gets each typed error).
pub(crate) const DENIALS_PER_RUN: u64 = 1000;
/// Most bytes kept of a denial's message (it quotes the target).
const MAX_DENIAL_BYTES: usize = 2 * MAX_NAME_BYTES + 512;
/// How every answer to a stopped run's plugin begins: `denied` with this
/// text is the contract's "the run is stopped" (0.1 has no variant of its
/// own for it).
pub const STOPPED_PREFIX: &str = "the run is stopped by ";
/// Most notifications a plugin may publish per run.
pub(crate) const NOTIFICATIONS_PER_RUN: u32 = 20;
pub(crate) use crate::notify::{BODY_BYTES, SUBJECT_BYTES};
pub use faults::{Fault, MAX_FAULT_MS};

/// A plugin's name and version, as every error and log line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginLabel {
    /// Its metadata's name.
    pub name: String,
    /// Its metadata's version.
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
    /// The policy refused; the text says which rule, never what lies out of
    /// scope.
    #[error("denied: {0}")]
    Denied(String),
    /// Nothing of that name in the plugin's view.
    #[error("not found: {0}")]
    NotFound(String),
    /// A budget of the run is spent (terminations, notifications).
    #[error("budget exhausted: {0}")]
    BudgetExhausted(String),
    /// The cloud refused for rate; the plugin may try again.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The plugin's argument makes no sense (a bad pattern, a bad name).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The backend failed.
    #[error("backend failure: {0}")]
    Backend(String),
}

impl From<CloudError> for PluginError {
    fn from(err: CloudError) -> Self {
        match err {
            CloudError::NotFound(msg) => PluginError::NotFound(msg),
            CloudError::Throttled(msg) => PluginError::Throttled(msg),
            CloudError::Backend(msg) | CloudError::Refused(msg) => PluginError::Backend(msg),
        }
    }
}

/// Filter of `cloud.list-instances`, in domain types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Only instances of groups matching this glob.
    pub group_pattern: Option<String>,
    /// Only instances carrying all these tags.
    pub tags: BTreeMap<String, String>,
    /// Only instances in this zone.
    pub zone: Option<String>,
    /// Only instances in one of these states; empty means any.
    pub states: Vec<InstanceState>,
}

/// Answer to `cloud.terminate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The victim.
    pub instance_id: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Its zone.
    pub zone: String,
    /// Whether it was a dry run: nothing was terminated.
    pub dry_run: bool,
    /// When, on the plugin's clock.
    pub at_ms: Millis,
}

/// Answer to `probe.check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The target's name.
    pub target: String,
    /// Whether it is healthy.
    pub healthy: bool,
    /// What was seen, in a line.
    pub detail: String,
    /// How long the check took.
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
    /// Send a dry run's notifications (marked) instead of withholding them.
    notify_dry_runs: bool,
    /// The run's owed undos; without it, no fault is applied.
    faults: Option<crate::faults::SharedLedger>,
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
            notify_dry_runs: false,
            faults: None,
        }
    }

    /// Owe the undos of this experiment's faults in the run's ledger.
    pub(crate) fn faults(mut self, ledger: crate::faults::SharedLedger) -> Self {
        self.faults = Some(ledger);
        self
    }

    /// Send a dry run's notifications, marked as a dry run's (the config's
    /// `notify_dry_runs`), instead of only journalling them.
    pub fn notify_dry_runs(mut self, notify: bool) -> Self {
        self.notify_dry_runs = notify;
        self
    }

    /// Keep kills of a group apart by the run's spacing rule.
    pub(crate) fn spacing(mut self, spacing: Option<Arc<KillSpacing>>) -> Self {
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
    pub(crate) fn guard(mut self, guard: Arc<Guard>) -> Self {
        self.guard = guard;
        self
    }

    /// Journal every operation here, before it acts.
    pub fn journal(mut self, journal: Arc<Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Count terminations against this run-wide tally too.
    pub(crate) fn run_tally(mut self, tally: Arc<std::sync::Mutex<Tally>>) -> Self {
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
    pub(crate) fn targets_and_channels(
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
    pub(crate) fn progress(mut self, progress: Progress) -> Self {
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
    log_lines: u64,
    suppressed_log_lines: u64,
    suppressed_log_bytes: u64,
    denials: u64,
    /// Backend calls made for the plugin that failed.
    call_failures: std::sync::atomic::AtomicU64,
    notifications: u32,
    rng: ChaCha8Rng,
    tally: Tally,
    /// Terminations the host carried out (or allowed, in a dry run), in order.
    pub terminations: Vec<Termination>,
    /// Victims whose recovery the host is watching.
    pub watch: Watch,
    /// The listing the plugin is reading page by page (contract 0.2).
    paging: Option<cloud::Paging>,
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
    /// The plugin went over one of its limits (calls, victims, time).
    #[error(transparent)]
    Breach(#[from] LimitBreach),
    /// The journal could not be written, so nothing more may happen.
    #[error("journal failure, stopping before acting: {0:#}")]
    Journal(anyhow::Error),
    /// The plugin called an import where the contract forbids it (from
    /// `metadata()`, say).
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
pub(crate) struct HostFault(pub String);

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
    async fn terminate(
        &self,
        _id: &str,
        _via: TerminateVia,
    ) -> Result<Option<InstanceState>, CloudError> {
        Err(NoCloud::refused())
    }
    fn messaging(&self) -> &dyn crate::notify::Messaging {
        self
    }
}

#[async_trait::async_trait]
impl crate::notify::Messaging for NoCloud {
    async fn publish(
        &self,
        _topic: &str,
        _role: Option<&crate::notify::ChannelRole>,
        _subject: &str,
        _body: &str,
    ) -> Result<(), CloudError> {
        Err(NoCloud::refused())
    }
    async fn check_topic(
        &self,
        _topic: &str,
        _role: Option<&crate::notify::ChannelRole>,
    ) -> Result<(), CloudError> {
        Err(NoCloud::refused())
    }
    async fn put_events(
        &self,
        _bus: &str,
        _role: Option<&crate::notify::ChannelRole>,
        _events: &[crate::notify::BusEvent],
    ) -> Result<Vec<(usize, String)>, CloudError> {
        Err(NoCloud::refused())
    }
    async fn check_bus(
        &self,
        _bus: &str,
        _role: Option<&crate::notify::ChannelRole>,
    ) -> Result<(), CloudError> {
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
            log_lines: 0,
            suppressed_log_lines: 0,
            suppressed_log_bytes: 0,
            denials: 0,
            call_failures: std::sync::atomic::AtomicU64::new(0),
            notifications: 0,
            rng,
            tally: Tally::default(),
            terminations: Vec::new(),
            watch: Watch::default(),
            paging: None,
            journalled_capacity: BTreeMap::new(),
            inert: false,
            setup,
        }
    }

    /// A session for calls that must not touch anything, like `metadata()`:
    /// every import ends the call with an error.
    pub(crate) fn inert(limits: &Limits) -> Session {
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
    pub(crate) fn enter(&mut self, operation: &str, argument_bytes: usize) -> Result<(), Fatal> {
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
    /// to return, on the run's clock or the wall clock, whichever runs out
    /// first (a virtual clock does not move while a plugin computes).
    pub(crate) fn stopped_past_grace(&self) -> Result<(), Fatal> {
        let Some(trip) = self.setup.guard.tripped() else {
            return Ok(());
        };
        if self.grace_left_ms(&trip) > 0 {
            return Ok(());
        }
        Err(Fatal::Stopped(Guard::past_grace(&trip)))
    }

    /// What is left of the plugin's grace after `trip`, in ms.
    fn grace_left_ms(&self, trip: &crate::guard::Trip) -> Millis {
        let grace = std::time::Duration::from_millis(crate::guard::GRACE_MS);
        let wall_left = self
            .setup
            .guard
            .stopped_for()
            .map_or(grace, |since| grace.saturating_sub(since));
        let clock_left = trip
            .at_ms
            .saturating_add(crate::guard::GRACE_MS)
            .saturating_sub(self.setup.cloud.now_ms());
        clock_left.min(u64::try_from(wall_left.as_millis()).unwrap_or(Millis::MAX))
    }

    /// The answer to every call that reads or acts once the run is
    /// stopped: the plugin hears the brake as a typed `denied` that names
    /// it, and has its grace to return its outcome.
    pub(crate) fn stop_answer(&self) -> Option<PluginError> {
        let trip = self.setup.guard.tripped()?;
        Some(PluginError::Denied(format!(
            "{}{}: return your outcome",
            STOPPED_PREFIX, trip.condition
        )))
    }

    /// The run's brakes, which the sandbox also enforces on the clock.
    pub(crate) fn guard(&self) -> &Arc<Guard> {
        &self.setup.guard
    }

    /// Look at the stop conditions and the kill switch now, journalling a
    /// trip the first time it is seen.
    pub(crate) async fn check_guard(&self) -> Result<BrakeState, Fatal> {
        let oldest: Vec<(String, Millis)> = self.watch.oldest_pending().into_iter().collect();
        let verdict = self.setup.guard.check(&self.setup.view, &oldest).await;
        if let Some(trip) = self.setup.guard.unjournalled() {
            tracing::warn!(condition = %trip.condition, "the run is stopped: {}", text::one_line(&trip.saw));
            self.journal(trip.into_event())?;
        }
        Ok(verdict)
    }

    /// The backend-clock time the plugin's clock counts from.
    pub(crate) fn clock_origin_ms(&self) -> Millis {
        self.started_ms
    }

    /// Write a journal entry stamped with this experiment.
    pub fn journal(&self, event: Event) -> Result<(), Fatal> {
        self.journal_at(self.setup.cloud.now_ms(), event)
    }

    /// Write a journal entry for something that happens at `clock_ms`, an
    /// instant read earlier (and no later than now).
    pub(crate) fn journal_at(&self, clock_ms: Millis, event: Event) -> Result<(), Fatal> {
        let Some(journal) = &self.setup.journal else {
            return Ok(());
        };
        journal
            .append(clock_ms, Some(self.setup.experiment), event)
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
    pub(crate) fn journal_suppressed(&self) -> Result<(), Fatal> {
        let denials = self.denials.saturating_sub(DENIALS_PER_RUN);
        let call_failures = self
            .call_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(CALL_FAILURES_PER_RUN);
        if denials == 0 && self.suppressed_log_lines == 0 && call_failures == 0 {
            return Ok(());
        }
        tracing::warn!(plugin = %self.setup.plugin, denials, log_lines = self.suppressed_log_lines, "plugin text over the per-run bounds was counted, not kept");
        self.journal(Event::Suppressed {
            log_lines: self.suppressed_log_lines,
            log_bytes: self.suppressed_log_bytes,
            denials,
            call_failures,
        })
    }

    /// Run a backend call under the per-call timeout. A failure (or a
    /// throttle) is journalled: the run's view of the fleet is incomplete,
    /// and its report cannot say "succeeded".
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, PluginError> {
        let limit = self.setup.limits.host_call_timeout();
        let answer = match tokio::time::timeout(limit, fut).await {
            Ok(result) => result.map_err(PluginError::from),
            Err(_) => Err(PluginError::Backend(format!(
                "{what} timed out after {} s",
                limit.as_secs()
            ))),
        };
        if let Err(err) = &answer {
            self.note_call_failure(what, err);
        }
        answer
    }

    /// Journal a backend failure (or throttle) answered to the plugin: the
    /// run could not see what it asked for. Other errors are the plugin's
    /// own (a bad name, a denial) and say nothing of the fleet.
    pub(crate) fn note_call_failure(&self, what: &str, err: &PluginError) {
        if !matches!(err, PluginError::Backend(_) | PluginError::Throttled(_)) {
            return;
        }
        let seen = self
            .call_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if seen < CALL_FAILURES_PER_RUN {
            // Unsynced, as a denial is: the next action's sync carries it.
            let _ = self.journal(Event::CallFailed {
                operation: what.to_owned(),
                error: text::bounded(&err.to_string(), MAX_DENIAL_BYTES).into_owned(),
            });
        }
    }

    /// Every group, keyed by name, as the backend has them.
    async fn all_groups(&self) -> Result<Arc<Listing>, PluginError> {
        self.call("listing groups", self.setup.view.all_groups())
            .await
    }

    /// One group, from a read no older than the view's bound, without
    /// listing every group again when the listing is stale.
    async fn group_named(&self, name: &str) -> Result<Option<Arc<Group>>, PluginError> {
        self.call("reading a group", self.setup.view.group(name))
            .await
    }

    /// The group of an instance (none for a standalone one, or one whose
    /// group is gone).
    async fn group_of(&self, instance: &Instance) -> Result<Option<Arc<Group>>, PluginError> {
        match &instance.group {
            Some(name) => self.group_named(name).await,
            None => Ok(None),
        }
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
    fn plugin_log_lines_cost_no_fsync_and_are_bounded_by_count() {
        let (_dir, journal) = journal();
        let mut session = session(Arc::clone(&journal));
        for _ in 0..10_000 {
            session.log(tracing::Level::INFO, "").unwrap();
        }
        assert_eq!(journal.syncs(), 0);
        session.journal_suppressed().unwrap();
        let entries = crate::journal::read(journal.path()).unwrap().entries;
        assert_eq!(entries.len() as u64, LOG_LINES_PER_RUN + 1);
        let Some(Event::Suppressed { log_lines, .. }) = entries.last().map(|e| &e.event) else {
            panic!("no suppressed entry: {:?}", entries.last());
        };
        assert_eq!(*log_lines, 10_000 - LOG_LINES_PER_RUN);
        // Empty lines cost their entries, not a megabyte of journal.
        let size = std::fs::metadata(journal.path()).unwrap().len();
        assert!(size < 512 * 1024, "{size} bytes of journal");
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
