//! Running experiments: config → policy → plugin → cloud → journal → report.
//!
//! Each experiment runs in its own store under its own limits. A plugin that
//! fails to load or breaks a limit ends only its own experiment; the next
//! one still runs. Victims terminated before a failure are still watched
//! until they recover, and the report is rendered from the journal.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::cloud::view::FleetView;
use crate::cloud::{ApiCalls, Cloud, TerminateVia};
use crate::config::{BackendConfig, Config, ExperimentConfig};
use crate::contract::{Outcome, RunError};
use crate::guard::{Guard, STEADY_STATE};
use crate::history::History;
use crate::journal::{Event, Journal, Phase, PluginOutcome, PluginVictim};
use crate::limits::{Limit, LimitBreach};
use crate::plugins::Catalog;
use crate::policy::{Policy, Tally};
use crate::progress::Progress;
use crate::report::Report;
use crate::run_plan::{Ready, RunPlan};
use crate::sandbox::{RunFailure, Sandbox};
use crate::session::{PluginLabel, Session, SessionSetup, BODY_BYTES};
use crate::spacing::KillSpacing;
use crate::text;

/// The directory, in the state directory, of journals waiting to be
/// imported into the kill history.
const PENDING_IMPORTS: &str = "pending-imports";

/// Most bytes kept of a plugin's summary.
pub(crate) const MAX_SUMMARY_BYTES: usize = 16 * 1024;
/// Most bytes kept of why an experiment failed (it may quote the plugin).
pub(crate) const MAX_ERROR_BYTES: usize = 4 * 1024;

/// What the operator asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run config's path.
    pub config: PathBuf,
    /// Run only the experiments of this plugin.
    pub plugin: Option<String>,
    /// Overrides the config's seed.
    pub seed: Option<u64>,
    /// Act for real. Without it every termination is a dry run.
    pub execute: bool,
    /// Journal file to create (default: a new file in the journal dir).
    pub journal: Option<PathBuf>,
    /// In a dry run, also check the cloud permission for every termination
    /// policy allows (EC2 DryRun), so a missing IAM action shows before
    /// anything real happens.
    pub preflight: bool,
    /// Show a live progress line while waiting (on a terminal only).
    pub progress: bool,
    /// Run only the experiment at this index of the config (the daemon's
    /// slots).
    pub only: Option<usize>,
    /// Epoch ms the run's clock 0 stands for (default: now less the
    /// backend's clock). `simulate` sets its simulated calendar here.
    pub clock_origin_ms: Option<i64>,
    /// The kill history to read and write (default: the one in the
    /// config's state directory).
    pub history: Option<SharedHistory>,
    /// A scheduled run: terminate nothing at or after this instant (epoch
    /// ms), the end of its working window.
    pub kill_deadline_ms: Option<i64>,
    /// Leave the journal's syncs to the system: for throw-away runs on the
    /// simulated fleet only, where nothing real can be lost.
    pub unsynced_journal: bool,
    /// The kill switches to honour (default: every one in force for the
    /// config, see [`Config::switches`]). `simulate` honours its own only.
    pub switches: Option<crate::kill_switch::Switches>,
}

pub use crate::history::SharedHistory;

/// A finished (or interrupted) run.
pub struct RunOutput {
    /// The report, rendered from the journal.
    pub report: Report,
    /// The run's journal.
    pub journal: PathBuf,
    /// The seed every experiment's randomness came from.
    pub seed: u64,
    /// The cloud API calls the run made.
    pub api_calls: ApiCalls,
}

/// A seed for runs the operator did not seed: reported, so it can be reused.
pub(crate) fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

pub use crate::backend::backend;

/// Load the config, build its backend, run.
pub async fn run(
    options: &RunOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<RunOutput> {
    let config = Config::load(&options.config)?;
    let seed = options.seed.or(config.seed).unwrap_or_else(fresh_seed);
    let cloud = backend(&config, seed).await?;
    run_on(&config, cloud, seed, options, shutdown).await
}

/// Run a config's experiments on a given backend: the steps of a run.
/// Everything that can refuse the run (what to run, pins, each experiment
/// made ready, the history it needs) comes before the journal; once the
/// journal has begun, the run ends with a report.
pub async fn run_on(
    config: &Config,
    cloud: Arc<dyn Cloud>,
    seed: u64,
    options: &RunOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<RunOutput> {
    let experiments = select_experiments(config, options)?;
    let catalog = pinned_catalog(config, options, &experiments)?;
    let sandbox = Sandbox::new(&config.cache_dir()?)?;
    let calls_before = cloud.api_calls();
    recover_owed_faults(config, cloud.as_ref()).await?;
    let view = Arc::new(FleetView::new(Arc::clone(&cloud), config.max_read_age_ms()));
    // A run that would publish checks its channels first: a rehearsal
    // publishes only under `notify_dry_runs`.
    let publishes = options.execute || options.preflight || config.notify_dry_runs;
    let run_plan =
        RunPlan::build(config, &catalog, &sandbox, &view, &experiments, publishes).await?;
    if let Some(unknown) = run_plan.unknown_scope() {
        tracing::warn!("{unknown}; the run starts, and every termination reads the fleet anew");
    }
    let in_force = run_plan.in_force(config, options.preflight && !options.execute);
    let ready = run_plan
        .into_runnable(config)
        .map_err(|problems| {
            anyhow::anyhow!(
                "{}: the run would not start, so nothing was run (`wasmonkey plan` shows the same):\n  {}",
                config.path.display(),
                problems.join("\n  ")
            )
        })?;
    let switches = match &options.switches {
        Some(switches) => switches.clone(),
        None => crate::history::switches(config, cloud.as_ref())?,
    };
    let guard = Arc::new(Guard::for_config(config, switches));
    let (run_id, origin_ms) = identify(cloud.as_ref(), seed, options);
    let dry_run = !options.execute;
    let history = open_history(config, options)?;
    let pending = import_pending(config, history.as_ref())?;
    let spacing = spacing_for(config, options, history.as_ref(), origin_ms, &run_id)?;
    let journal = Arc::new(create_journal(options, config, &run_id)?);
    let whereabouts = cloud.whereabouts().await;
    journal.append(
        cloud.now_ms(),
        None,
        Event::RunStarted {
            run_id: run_id.clone(),
            backend: cloud.kind().to_owned(),
            seed,
            dry_run,
            config: config.path.display().to_string(),
            host_version: env!("CARGO_PKG_VERSION").to_owned(),
            clock_origin_ms: Some(origin_ms),
            operator: Some(operator()),
            target: Some(cloud.identity()),
            account: whereabouts.account,
            region: whereabouts.region,
        },
    )?;
    journal.append(cloud.now_ms(), None, in_force)?;
    check_before_start(&guard, &view, &journal).await?;
    check_steady_state(config, &guard, &view, &journal, Phase::Before).await?;
    let ctx = RunContext {
        config,
        cloud: &cloud,
        view: &view,
        guard: &guard,
        sandbox: &sandbox,
        journal: &journal,
        seed,
        dry_run,
        options,
        run_tally: Arc::default(),
        spacing,
        history: history.as_ref(),
        pending: pending.clone(),
        terminate_via: match &config.backend {
            BackendConfig::Aws(settings) => settings.terminate_via,
            BackendConfig::Sim { .. } => TerminateVia::default(),
        },
        steps_put: std::sync::Mutex::default(),
        faults: Arc::new(crate::faults::Ledger::new(
            &run_id,
            cloud.identity(),
            Some(crate::faults::owed_dir(&config.state_dir()?)),
        )),
    };
    let conducted = ctx.conduct(ready, shutdown).await;
    // Whatever ended the run, what it owes is undone before it returns
    // (the conduct undoes at each experiment's end; this is the last net).
    if let Err(err) = ctx
        .faults
        .undo(None, cloud.as_ref(), Some(journal.as_ref()))
        .await
    {
        tracing::error!("undoing the run's faults: {err:#}");
    }
    let report = match conducted {
        Ok(report) => report,
        Err(err) => cut_short(history.as_ref(), &journal, pending.as_deref(), err)?,
    };
    Ok(RunOutput {
        report,
        journal: journal.path().to_owned(),
        seed,
        api_calls: crate::metrics::calls_since(&calls_before, &cloud.api_calls()),
    })
}

/// The experiments this run runs: all of the config's, or those
/// `--plugin` (or a daemon's slot) names; none is an error.
fn select_experiments<'a>(
    config: &'a Config,
    options: &RunOptions,
) -> anyhow::Result<Vec<(usize, &'a ExperimentConfig)>> {
    let experiments: Vec<(usize, &ExperimentConfig)> = config
        .experiments
        .iter()
        .enumerate()
        .filter(|(_, e)| options.plugin.as_ref().is_none_or(|p| *p == e.plugin))
        .filter(|(i, _)| options.only.is_none_or(|only| only == *i))
        .collect();
    if experiments.is_empty() {
        let listed: Vec<&str> = config
            .experiments
            .iter()
            .map(|e| e.plugin.as_str())
            .collect();
        anyhow::bail!(
            "{}: no experiment to run{} (experiments: {listed:?})",
            config.path.display(),
            options
                .plugin
                .as_ref()
                .map_or(String::new(), |p| format!(" for plugin {p}"))
        );
    }
    Ok(experiments)
}

/// The plugin directory with the operator's pins; under `--execute` with
/// `require_pins`, every experiment's plugin must be pinned.
fn pinned_catalog(
    config: &Config,
    options: &RunOptions,
    experiments: &[(usize, &ExperimentConfig)],
) -> anyhow::Result<Catalog> {
    let catalog = Catalog::scan(&config.plugin_dir())
        .with_context(|| {
            format!(
                "{}: plugins.dir (build the plugins first: `cargo xtask plugins`)",
                config.path.display()
            )
        })?
        .with_pins(config.pins())
        .with_provenance(crate::provenance::Provenance::of(config)?);
    if options.execute && config.plugins.require_pins {
        let unpinned: Vec<&str> = experiments
            .iter()
            .map(|(_, e)| e.plugin.as_str())
            .filter(|name| catalog.pin(name).is_none())
            .collect();
        if !unpinned.is_empty() {
            anyhow::bail!(
                "{}: plugins.require_pins refuses to --execute unpinned plugins: {} (pin each in [plugins] pins with the sha256 `wasmonkey plugins inspect` shows); nothing was run",
                config.path.display(),
                unpinned.join(", ")
            );
        }
    }
    Ok(catalog)
}

/// The run's id and the calendar instant of its clock's 0 (epoch ms).
fn identify(cloud: &dyn Cloud, seed: u64, options: &RunOptions) -> (String, i64) {
    let clock_ms = i64::try_from(cloud.now_ms()).unwrap_or(i64::MAX);
    let origin_ms = options
        .clock_origin_ms
        .unwrap_or_else(|| epoch_ms_now().saturating_sub(clock_ms));
    let stamp = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(origin_ms.saturating_add(clock_ms)) * 1_000_000,
    )
    .ok()
    .and_then(|at| {
        at.format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .ok()
    })
    .unwrap_or_default();
    // The start second and the seed alone can repeat (two runs started in
    // the same second): a UUIDv7's random part makes the id the run's own.
    let unique = uuid::Uuid::now_v7().simple().to_string();
    let run_id = format!("{stamp}-{seed}-{}", &unique[unique.len() - 8..]);
    (run_id, origin_ms)
}

/// Journals earlier runs could not write to the history come in first:
/// the spacing rule must know their kills. Where such journals are queued.
fn import_pending(
    config: &Config,
    history: Option<&SharedHistory>,
) -> anyhow::Result<Option<PathBuf>> {
    let pending = config.state_dir().ok().map(|dir| dir.join(PENDING_IMPORTS));
    if let (Some(history), Some(dir)) = (history, &pending) {
        let imported = crate::history::import_pending(&mut *lock(history), dir);
        if let Err(err) = imported {
            if config.blast_radius.min_time_between_kills.is_some() {
                return Err(err.context(format!(
                    "{}: blast_radius.min_time_between_kills needs every earlier run in the kill history; nothing was run",
                    config.path.display()
                )));
            }
            tracing::warn!("{err:#}");
        }
    }
    Ok(pending)
}

/// `min_time_between_kills` (and a scheduled run's end), shared by the
/// run's experiments: the last kills from the history, and for an executed
/// run the ledger every process records its kills in.
fn spacing_for(
    config: &Config,
    options: &RunOptions,
    history: Option<&SharedHistory>,
    origin_ms: i64,
    run_id: &str,
) -> anyhow::Result<Option<Arc<KillSpacing>>> {
    let gap = config.blast_radius.min_time_between_kills;
    if gap.is_none() && options.kill_deadline_ms.is_none() {
        return Ok(None);
    }
    let dry_run = !options.execute;
    let last = match (history, gap) {
        (Some(history), Some(_)) => lock(history).last_kills(dry_run).with_context(|| {
            format!(
                "{}: blast_radius.min_time_between_kills needs the kill history",
                config.path.display()
            )
        })?,
        _ => BTreeMap::new(),
    };
    let calendar = config
        .calendar()
        .map_err(|err| anyhow::anyhow!("{}: {err}", config.path.display()))?;
    let mut spacing = KillSpacing::new(gap, calendar, origin_ms, last);
    if let (Some(history), Some(_), false) = (history, gap, dry_run) {
        spacing = spacing.with_ledger(Arc::clone(history), run_id);
    }
    Ok(Some(Arc::new(match options.kill_deadline_ms {
        Some(end) => spacing.until(end),
        None => spacing,
    })))
}

/// Who runs this process: the login name (`$USER`, else the user id) at
/// the machine's name, for the journal's first entry.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()));
    let host = rustix::system::uname();
    let host = host.nodename().to_string_lossy();
    text::shown(&format!("{user}@{host}"), 256)
}

fn epoch_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The shared history, locked (a panic elsewhere does not lose it).
pub(crate) fn lock(history: &SharedHistory) -> std::sync::MutexGuard<'_, dyn History + 'static> {
    history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The history the run writes: the one given, else the state directory's.
/// Without `min_time_between_kills` a history that cannot be opened costs
/// only a warning (the journal keeps everything; `wasmonkey history import`
/// brings it in); with the rule, the run cannot decide and does not start.
fn open_history(config: &Config, options: &RunOptions) -> anyhow::Result<Option<SharedHistory>> {
    if let Some(history) = &options.history {
        return Ok(Some(Arc::clone(history)));
    }
    match crate::history::open_shared(config) {
        Ok(history) => Ok(Some(history)),
        Err(err) if config.blast_radius.min_time_between_kills.is_some() => {
            Err(err.context(format!(
                "{}: blast_radius.min_time_between_kills needs the kill history; nothing was run",
                config.path.display()
            )))
        }
        Err(err) => {
            tracing::warn!("the kill history is not written: {err:#}");
            Ok(None)
        }
    }
}

/// Bring the history up to what the journal says so far; the report of
/// the journal as it is. A write that fails (a history another process
/// holds past the busy timeout, a full disk) is tried once more; if it
/// still fails, the run goes on and keeps its report, the journal is
/// queued for the next run to import (`pending`), and the report says so:
/// a kill is never lost from the history, and a run that acted never ends
/// without its report.
fn record_history(
    history: Option<&SharedHistory>,
    journal: &Journal,
    pending: Option<&std::path::Path>,
) -> Report {
    let mut report = Report::from_journal(&journal.replay(), journal.path());
    let Some(history) = history else {
        return report;
    };
    let mut failed = None;
    for attempt in 0..2 {
        match lock(history).record(&report) {
            Ok(()) => return report,
            Err(err) => {
                tracing::warn!(
                    attempt = attempt + 1,
                    "writing the kill history failed: {err:#}"
                );
                failed = Some(err);
            }
        }
    }
    let err = failed.map_or_else(String::new, |err| format!("{err:#}"));
    let queued = match pending {
        Some(dir) => crate::history::queue_import(dir, journal.path())
            .map(|()| "the next run on this state imports this journal".to_owned())
            .unwrap_or_else(|why| {
                format!("it could not be queued for the next run either ({why:#})")
            }),
        None => "nothing queues it".to_owned(),
    };
    tracing::error!(
        "the kill history could not be written ({}); {queued}; `wasmonkey history import {}` brings it in by hand",
        text::one_line(&err),
        journal.path().display()
    );
    report.notes.push(format!(
        "the kill history could not be written ({err}); {queued} (`wasmonkey history import {}` does it by hand)",
        journal.path().display()
    ));
    report
}

/// A run that failed after it acted (a journal write refused by a full
/// disk, a lost history) still ends with its report and the outcome of
/// what it did, never with "nothing was done": the report is what the
/// journal holds, with the failure in its notes, and the history gets it
/// (or the next run does). A run that had not acted yet fails as before.
fn cut_short(
    history: Option<&SharedHistory>,
    journal: &Journal,
    pending: Option<&std::path::Path>,
    err: anyhow::Error,
) -> anyhow::Result<Report> {
    if !journal.replay().acted() {
        return Err(err);
    }
    tracing::error!("the run could not go on after it acted: {err:#}");
    let mut report = record_history(history, journal, pending);
    report.notes.push(format!(
        "the host could not go on: {}",
        text::one_line(&format!("{err:#}"))
    ));
    Ok(report)
}

/// Before anything runs, every brake is read and journalled: a set kill
/// switch, a tripped condition, or one whose state cannot be read stops the
/// run (fail closed).
async fn check_before_start(
    guard: &Guard,
    view: &FleetView,
    journal: &Journal,
) -> anyhow::Result<()> {
    let readings = guard.readings(view).await;
    let now = view.cloud().now_ms();
    journal.append(
        now,
        None,
        Event::Brakes {
            phase: Phase::Before,
            readings: readings.clone(),
        },
    )?;
    guard.trip_on(&readings, now);
    if let Some(trip) = guard.unjournalled() {
        journal_trip(journal, now, trip)?;
    }
    Ok(())
}

/// Read every steady-state check and journal each reading. Before the run
/// (and only when no brake is set already), one that does not hold or
/// cannot be read stops the run before any action. After it (not after an
/// interrupted run, nor one the steady state itself stopped), for the
/// report's verdict.
async fn check_steady_state(
    config: &Config,
    guard: &Guard,
    view: &FleetView,
    journal: &Journal,
    phase: Phase,
) -> anyhow::Result<()> {
    if config.steady_state.is_empty() {
        return Ok(());
    }
    if phase == Phase::Before && guard.tripped().is_some() {
        return Ok(());
    }
    if phase == Phase::After
        && guard
            .tripped()
            .is_some_and(|trip| trip.condition.starts_with(STEADY_STATE))
    {
        return Ok(());
    }
    let mut broken = Vec::new();
    for (name, check) in &config.steady_state {
        let read = guard.steady_state(name, check, view).await;
        let now = view.cloud().now_ms();
        let (held, saw) = match read {
            Ok((held, saw)) => (Some(held), saw),
            Err(why) => (None, why),
        };
        if held != Some(true) {
            broken.push(format!(
                "{name} {}: {}",
                if held.is_some() {
                    "does not hold"
                } else {
                    "cannot be read"
                },
                text::one_line(&saw)
            ));
        }
        journal.append(
            now,
            None,
            Event::SteadyState {
                name: name.clone(),
                phase,
                held,
                saw,
            },
        )?;
    }
    if phase == Phase::Before && !broken.is_empty() {
        let now = view.cloud().now_ms();
        guard.stop(STEADY_STATE, broken.join("; "), now);
        if let Some(trip) = guard.unjournalled() {
            journal_trip(journal, now, trip)?;
        }
    }
    Ok(())
}

fn journal_trip(journal: &Journal, at_ms: u64, trip: crate::guard::Trip) -> anyhow::Result<()> {
    tracing::warn!(condition = %trip.condition, "the run is stopped: {}", text::one_line(&trip.saw));
    journal.append(at_ms, None, trip.into_event())?;
    Ok(())
}

fn create_journal(options: &RunOptions, config: &Config, run_id: &str) -> anyhow::Result<Journal> {
    let create = if options.unsynced_journal {
        Journal::create_unsynced
    } else {
        Journal::create
    };
    if let Some(path) = &options.journal {
        return create(path);
    }
    let dir = config.journal_dir();
    let mut path = dir.join(format!("run-{run_id}.jsonl"));
    for n in 2.. {
        if !path.exists() {
            break;
        }
        path = dir.join(format!("run-{run_id}-{n}.jsonl"));
    }
    create(&path)
}

/// The seed project's feature: every run ends with one notification giving
/// the recovery time of every victim. A failed publish is journalled and
/// reported; it never costs the report.
async fn notify_run(
    config: &Config,
    cloud: &dyn Cloud,
    journal: &Journal,
    channel: &str,
) -> anyhow::Result<()> {
    let Some(settings) = config.channels.get(channel) else {
        return Ok(());
    };
    let report = Report::from_journal(&journal.replay(), journal.path());
    let stopped = report
        .stopped
        .as_ref()
        .map(|stop| format!(" STOPPED by {}", stop.condition))
        .unwrap_or_default();
    let subject = format!(
        "wasmonkey run {}{stopped}: {} victim(s)",
        report.run_id.as_deref().unwrap_or("?"),
        report.victims.len()
    );
    let mut body = String::new();
    if let Some(stop) = &report.stopped {
        body.push_str(&format!("stopped by {}: {}\n", stop.condition, stop.saw));
    }
    body.push_str(&report.recovery_lines());
    let body = text::bounded(&body, BODY_BYTES).into_owned();
    let rehearsal =
        crate::notify::Rehearsal::of(report.dry_run.unwrap_or(true), config.notify_dry_runs);
    let sent = crate::notify::publish(
        cloud,
        config.default_limits().host_call_timeout(),
        rehearsal,
        channel,
        settings,
        &subject,
        &body,
        |event| journal.append(cloud.now_ms(), None, event).map(drop),
    )
    .await?;
    if let Err(err) = sent {
        tracing::warn!("the run notification to {channel} failed: {err}");
    }
    Ok(())
}

struct RunContext<'a> {
    config: &'a Config,
    cloud: &'a Arc<dyn Cloud>,
    /// The run's stop conditions and kill switch.
    guard: &'a Arc<Guard>,
    /// One view of the fleet for the whole run.
    view: &'a Arc<FleetView>,
    sandbox: &'a Sandbox,
    journal: &'a Arc<Journal>,
    seed: u64,
    dry_run: bool,
    options: &'a RunOptions,
    /// What every experiment of the run terminated so far.
    run_tally: Arc<std::sync::Mutex<Tally>>,
    /// `min_time_between_kills`, shared by the run's experiments.
    spacing: Option<Arc<KillSpacing>>,
    /// Where a journal the history could not take is queued.
    pending: Option<PathBuf>,
    /// Written when each experiment starts and ends.
    history: Option<&'a SharedHistory>,
    terminate_via: TerminateVia,
    /// The keys of the run's steps put on its `[report] channel` so far,
    /// when that is an event bus.
    steps_put: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The undos the run owes for its faults (contract 0.2).
    faults: crate::faults::SharedLedger,
}

impl RunContext<'_> {
    /// The experiments in turn, until the last, a brake or the operator
    /// (Ctrl-C, SIGTERM); then the run's notification, its end, and the
    /// history. Only a failure of the host's own (the journal) comes back
    /// as an error.
    async fn conduct(
        &self,
        ready: Vec<(usize, &ExperimentConfig, Ready)>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<Report> {
        let (config, cloud, journal) = (self.config, self.cloud, self.journal);
        let mut shutdown = std::pin::pin!(shutdown);
        let mut interrupted = false;
        let last = ready.last().map(|(index, _, _)| *index);
        self.put_steps(None).await?;
        for (index, experiment, prepared) in ready {
            if self.guard.tripped().is_some() {
                break;
            }
            tokio::select! {
                result = self.experiment(index, experiment, prepared) => {
                    result?;
                    self.put_steps(None).await?;
                    // The run's end writes the last one's.
                    if Some(index) != last && self.history.is_some() {
                        record_history(self.history, journal, self.pending.as_deref());
                    }
                }
                () = &mut shutdown => {
                    interrupted = true;
                    self.faults.undo(None, cloud.as_ref(), Some(journal.as_ref())).await?;
                    journal.append(cloud.now_ms(), Some(index), Event::ExperimentFinished {
                        plugin: experiment.plugin.clone(),
                        outcome: None,
                        error: Some("interrupted by the operator".into()),
                        limit: None,
                    })?;
                    break;
                }
            }
        }
        if let Some(trip) = self.guard.unjournalled() {
            journal_trip(journal, cloud.now_ms(), trip)?;
        }
        // An operator's Ctrl-C is not kept waiting on more reads.
        if !interrupted {
            check_steady_state(config, self.guard, self.view, journal, Phase::After).await?;
            let readings = self.guard.readings(self.view).await;
            journal.append(
                cloud.now_ms(),
                None,
                Event::Brakes {
                    phase: Phase::After,
                    readings,
                },
            )?;
        }
        if self.steps_channel().is_some() {
            self.put_steps(Some(interrupted)).await?;
        } else if let Some(channel) = &config.report.channel {
            notify_run(config, cloud.as_ref(), journal, channel).await?;
        }
        journal.append(cloud.now_ms(), None, Event::RunFinished { interrupted })?;
        Ok(record_history(
            self.history,
            journal,
            self.pending.as_deref(),
        ))
    }

    /// The `[report] channel`, when it is an event bus: it takes the run's
    /// steps as they settle, instead of one message at the end.
    fn steps_channel(&self) -> Option<(&str, &crate::config::ChannelConfig)> {
        let channel = self.config.report.channel.as_deref()?;
        let settings = self.config.channels.get(channel)?;
        settings.event_bus.as_ref().map(|_| (channel, settings))
    }

    /// Put the run's steps that settled since the last call on the steps
    /// channel, in order. `finishing` (whether the run was interrupted)
    /// adds its end, read as the journal will say it. A failure is
    /// journalled and reported, never retried out of order.
    async fn put_steps(&self, finishing: Option<bool>) -> anyhow::Result<()> {
        let Some((channel, settings)) = self.steps_channel() else {
            return Ok(());
        };
        let (cloud, journal) = (self.cloud, self.journal);
        let mut replay = journal.replay();
        if let Some(interrupted) = finishing {
            replay.entries.push(crate::journal::Entry {
                seq: replay.entries.len() as u64,
                at: time::OffsetDateTime::now_utc(),
                clock_ms: cloud.now_ms(),
                experiment: None,
                event: Event::RunFinished { interrupted },
            });
        }
        let report = Report::from_journal(&replay, journal.path());
        let events: Vec<crate::notify::BusEvent> = {
            let mut put = self
                .steps_put
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            crate::notify::steps::of_run(&report)
                .into_iter()
                .filter(|step| put.insert(step.key.clone()))
                .map(|step| step.event)
                .collect()
        };
        if events.is_empty() {
            return Ok(());
        }
        let rehearsal = crate::notify::Rehearsal::of(self.dry_run, self.config.notify_dry_runs);
        let sent = crate::notify::put_events(
            cloud.as_ref(),
            self.config.default_limits().host_call_timeout(),
            rehearsal,
            channel,
            settings,
            events,
            |event| journal.append(cloud.now_ms(), None, event).map(drop),
        )
        .await?;
        if let Err(err) = sent {
            tracing::warn!("the run's steps to {channel} were not all put: {err}");
        }
        Ok(())
    }

    /// Run one experiment; its failures go to the journal, only journal
    /// failures come back as errors.
    async fn experiment(
        &self,
        index: usize,
        experiment: &ExperimentConfig,
        ready: Ready,
    ) -> anyhow::Result<()> {
        let (outcome, error, limit) = match self.try_experiment(index, experiment, ready).await {
            Ok(ended) => ended,
            Err(err) => (None, Some(format!("{err:#}")), None),
        };
        if let Some(error) = &error {
            tracing::error!(plugin = %experiment.plugin, "experiment {} failed: {}", index + 1, text::one_line(error));
        }
        self.journal.append(
            self.cloud.now_ms(),
            Some(index),
            Event::ExperimentFinished {
                plugin: experiment.plugin.clone(),
                outcome,
                error,
                limit: limit.map(|l| l.key().to_owned()),
            },
        )?;
        Ok(())
    }

    async fn try_experiment(
        &self,
        index: usize,
        experiment: &ExperimentConfig,
        ready: Ready,
    ) -> anyhow::Result<(Option<PluginOutcome>, Option<String>, Option<Limit>)> {
        let config = self.config;
        let where_ = format!(
            "{}: experiment {} ({})",
            config.path.display(),
            index + 1,
            experiment.plugin
        );
        let Ready {
            plugin,
            grants,
            params,
        } = ready;
        let label = plugin.label();
        let limits = plugin.limits;
        let scope = config
            .policy_scope()
            .map_err(|err| anyhow::anyhow!("{where_}: {err:#}"))?;
        let policy = Policy {
            scope,
            blast_radius: config.blast_radius,
            dry_run: self.dry_run,
            grants: grants.clone(),
        };
        self.journal.append(
            self.cloud.now_ms(),
            Some(index),
            Event::ExperimentStarted {
                plugin: plugin.metadata.name.clone(),
                version: plugin.metadata.version.clone(),
                sha256: plugin.prepared.compiled.sha256.clone(),
                params: params
                    .iter()
                    .map(|p| (p.name.clone(), p.value.to_json()))
                    .collect::<BTreeMap<_, _>>(),
                grants: grants.iter().map(|g| g.name().to_owned()).collect(),
                limits,
            },
        )?;
        if self.history.is_some() {
            record_history(self.history, self.journal, self.pending.as_deref());
        }
        let plugin_label = PluginLabel {
            name: plugin.metadata.name.clone(),
            version: plugin.metadata.version.clone(),
        };
        let session = Session::new(
            SessionSetup::new(plugin_label, index, Arc::clone(self.cloud), policy, limits)
                .view(Arc::clone(self.view))
                .guard(Arc::clone(self.guard))
                .run_tally(Arc::clone(&self.run_tally))
                .spacing(self.spacing.clone())
                .journal(Arc::clone(self.journal))
                .seed(self.seed)
                .terminate_via(self.terminate_via)
                .targets_and_channels(
                    Arc::new(config.targets.clone()),
                    Arc::new(config.channels.clone()),
                )
                .recovery(
                    config.recovery.poll_ms(),
                    config.recovery.timeout_secs.saturating_mul(1000),
                    config.recovery.targets.clone(),
                )
                .preflight(self.options.preflight)
                .notify_dry_runs(config.notify_dry_runs)
                .faults(Arc::clone(&self.faults))
                .progress(Progress::new(self.options.progress)),
        );
        tracing::info!(plugin = %label, dry_run = self.dry_run, "experiment {} starting", index + 1);
        // The switches are watched while the plugin runs, whether or not it
        // calls the host: a pause during a long computation trips the run,
        // and the sandbox ends the plugin when its grace is over.
        let watcher = tokio::spawn(watch_switches(
            Arc::clone(self.guard),
            Arc::clone(self.cloud),
            Arc::clone(self.journal),
            index,
        ));
        // On a real clock, a fault is undone when its time is up even while
        // the plugin computes without calling the host. (The simulator's
        // clock moves only in sleeps, which undo what is due themselves.)
        let stop_undoer = Arc::new(tokio::sync::Notify::new());
        let undoer = (self.cloud.kind() != "sim").then(|| {
            tokio::spawn(undo_when_due(
                Arc::clone(&self.faults),
                Arc::clone(self.guard),
                Arc::clone(self.cloud),
                Arc::clone(self.journal),
                Arc::clone(&stop_undoer),
            ))
        });
        let (mut session, result) = self.sandbox.run(&plugin.prepared, session, params).await;
        watcher.abort();
        if let Some(undoer) = undoer {
            // Stopped between undos, never in one: an undo cut off halfway
            // would be neither done nor owed in memory.
            stop_undoer.notify_one();
            let _ = undoer.await;
        }
        // The experiment is over: so are its faults.
        self.faults
            .undo(None, self.cloud.as_ref(), Some(self.journal.as_ref()))
            .await
            .map_err(|err| anyhow::anyhow!("{where_}: {err:#}"))?;
        let result = result.and_then(|answer| {
            check_outcome(answer, &session, config.blast_radius.max_terminations)
        });
        session
            .journal_suppressed()
            .map_err(|err| anyhow::anyhow!("{where_}: {err}"))?;
        // Whatever the plugin did, its victims are watched to the end.
        session
            .finish_watching()
            .await
            .map_err(|err| anyhow::anyhow!("{where_}: {err}"))?;
        Ok(match result {
            Ok(outcome) => (Some(outcome), None, None),
            Err(failure) => (
                None,
                Some(format!(
                    "plugin {label}: {}",
                    text::bounded(&failure.to_string(), MAX_ERROR_BYTES)
                )),
                match &failure {
                    RunFailure::Limit(breach) => Some(breach.limit),
                    _ => None,
                },
            ),
        })
    }
}

/// How often the kill switches are read while a plugin runs; the remote
/// ones (an SSM parameter) every [`REMOTE_SWITCH_EVERY`]th time.
const SWITCH_WATCH: std::time::Duration = std::time::Duration::from_secs(1);
/// See [`SWITCH_WATCH`].
const REMOTE_SWITCH_EVERY: u64 = 5;

/// Trip `guard` when a kill switch is set, until aborted; the trip is
/// journalled when it is seen, not when the plugin next calls the host (a
/// plugin computing through its grace would have the journal say the
/// brake came after the undo it caused).
async fn watch_switches(
    guard: Arc<Guard>,
    cloud: Arc<dyn Cloud>,
    journal: Arc<Journal>,
    experiment: usize,
) {
    for tick in 1_u64.. {
        tokio::time::sleep(SWITCH_WATCH).await;
        guard
            .check_switches(cloud.now_ms(), tick % REMOTE_SWITCH_EVERY == 0)
            .await;
        if guard.tripped().is_some() {
            if let Some(trip) = guard.unjournalled() {
                let at_ms = trip.at_ms;
                if let Err(err) = journal.append(at_ms, Some(experiment), trip.into_event()) {
                    tracing::error!("journalling the brake: {err:#}");
                }
            }
            return;
        }
    }
}

/// Undo each owed fault when it is due, and all of them once a brake
/// trips, on the backend's (real) clock, until `stop`.
async fn undo_when_due(
    ledger: crate::faults::SharedLedger,
    guard: Arc<Guard>,
    cloud: Arc<dyn Cloud>,
    journal: Arc<Journal>,
    stop: Arc<tokio::sync::Notify>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWITCH_WATCH) => {}
            () = stop.notified() => return,
        }
        let now = guard.tripped().is_none().then(|| cloud.now_ms());
        if let Err(err) = ledger
            .undo(now, cloud.as_ref(), Some(journal.as_ref()))
            .await
        {
            tracing::error!("undoing faults: {err:#}");
        }
    }
}

/// Undo what crashed runs left owed in the state directory, before a run
/// starts. An undo that still fails stops the run: chaos does not start on
/// top of a fault nobody could undo.
async fn recover_owed_faults(config: &Config, cloud: &dyn Cloud) -> anyhow::Result<()> {
    let state_dir = config.state_dir()?;
    let recovered = crate::faults::recover(&state_dir, cloud).await?;
    for (owed, how) in &recovered.done {
        tracing::warn!(
            "fault {} of run {} was left owed (a crash?): {how}",
            owed.fault_id,
            owed.run_id
        );
    }
    for (path, why) in &recovered.unreadable {
        tracing::warn!(
            "{}: not an owed undo this host wrote: {why}",
            path.display()
        );
    }
    for owed in &recovered.elsewhere {
        tracing::warn!(
            "fault {} of run {} is owed on {}, not this backend: `wasmonkey recover` with that backend's config undoes it",
            owed.fault_id,
            owed.run_id,
            owed.backend
        );
    }
    if let Some((owed, err)) = recovered.failed.first() {
        anyhow::bail!(
            "fault {} of run {} is still owed and its undo fails ({err}); finish it by hand ({}) and run `wasmonkey recover`, or the run will not start",
            owed.fault_id,
            owed.run_id,
            owed.undo.manual()
        );
    }
    Ok(())
}

/// Accept a plugin's outcome only if it is about victims the host
/// terminated, and no larger than the blast radius allows.
fn check_outcome(
    answer: Result<Outcome, RunError>,
    session: &Session,
    max_terminations: u32,
) -> Result<PluginOutcome, RunFailure> {
    let outcome = answer.map_err(|err| RunFailure::Plugin(err.text()))?;
    if outcome.victims.len() > max_terminations as usize {
        return Err(RunFailure::Limit(LimitBreach::new(
            Limit::OutcomeSize,
            format!(
                "the outcome lists {} victims, but the experiment may terminate at most {max_terminations}",
                outcome.victims.len()
            ),
        )));
    }
    if let Some(stranger) = outcome.victims.iter().find(|v| {
        !session
            .terminations
            .iter()
            .any(|t| t.instance_id == v.instance_id)
    }) {
        return Err(RunFailure::Plugin(format!(
            "the outcome lists {} as a victim, but the host never terminated it",
            stranger.instance_id
        )));
    }
    Ok(PluginOutcome {
        summary: text::bounded(&outcome.summary, MAX_SUMMARY_BYTES).into_owned(),
        victims: outcome
            .victims
            .into_iter()
            .map(|v| PluginVictim {
                instance_id: v.instance_id,
                verdict: v.verdict.name().to_owned(),
                recovered_at_ms: v.recovered_at_ms,
            })
            .collect(),
    })
}

#[cfg(all(test, not(feature = "aws")))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_build_without_the_aws_backend_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wasmonkey.toml");
        std::fs::write(
            &path,
            "[backend]\nkind = \"aws\"\nregion = \"eu-west-1\"\n[plugins]\ndir = \"p\"\n",
        )
        .unwrap();
        let config = Config::load(&path).unwrap();
        let err = backend(&config, 1)
            .await
            .err()
            .expect("no AWS here")
            .to_string();
        assert!(
            err.contains("wasmonkey.toml") && err.contains("cargo build -p wasmonkey"),
            "{err}"
        );
    }
}
