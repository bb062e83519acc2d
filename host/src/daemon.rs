//! Unattended chaos: the loop that runs the schedule's slots, on the wall
//! clock (`wasmonkey daemon`) or on the simulated fleet's virtual clock
//! (`wasmonkey simulate`). Both are this one loop; only the clock, the
//! backend and the history differ.
//!
//! A slot is marked in the history before its run starts, so a restart never
//! runs it twice; a slot missed while the daemon was down still runs if its
//! working window is still open, and is marked missed otherwise. Every run
//! goes through the runner: the kill switch, stop conditions and blast
//! radius (with `min_time_between_kills`) hold as for `wasmonkey run`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use sha2::Digest as _;
use tokio::sync::watch;

use crate::cloud::Cloud;
use crate::config::Config;
use crate::history::{self, Filter, GroupStats, History as _, SlotMark, SlotStatus};
use crate::metrics::Metrics;
use crate::runner::{self, RunOptions, SharedHistory};
use crate::schedule::{self, CatchUp, EpochMs, Schedule, Skip, Slot};

/// The longest the wall clock sleeps at once: a suspended machine or a
/// changed system clock is noticed within it.
const WALL_NAP_MS: EpochMs = 60_000;

/// A slot due at most this long ago is on time: the loop woke for it.
/// Older ones passed while no daemon could run them (it was down, the
/// machine slept, the clock jumped, a run held the loop).
const ON_TIME_MS: EpochMs = 2 * WALL_NAP_MS;

/// Most missed slots recorded at one wake-up (a per-second cron over a
/// day's downtime would be tens of thousands).
const MAX_MISSED_MARKED: usize = 1000;

/// What the loop does with a due slot.
enum Picked {
    /// It passed: recorded as missed.
    Missed(Slot),
    /// It runs now.
    Run(Slot),
}

/// Whose time the daemon keeps.
#[derive(Clone)]
pub enum Clock {
    /// The system's: each slot's run builds its backend as `wasmonkey run`
    /// does.
    Wall,
    /// The simulated fleet's: every run acts on this one fleet, and
    /// `origin_ms` is the calendar instant of its clock's 0.
    Sim {
        /// The fleet every run acts on (one, or one per account-region).
        cloud: Arc<dyn Cloud>,
        /// The calendar instant of the virtual clock's 0, epoch ms.
        origin_ms: EpochMs,
    },
}

impl Clock {
    /// Now, epoch ms.
    pub fn now_ms(&self) -> EpochMs {
        match self {
            Clock::Wall => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Clock::Sim { cloud, origin_ms } => {
                origin_ms.saturating_add(i64::try_from(cloud.now_ms()).unwrap_or(i64::MAX))
            }
        }
    }

    /// Wait until `at`; false when shut down first.
    async fn sleep_until(&self, at: EpochMs, stop: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *stop.borrow() {
                return false;
            }
            let left = at.saturating_sub(self.now_ms());
            if left <= 0 {
                return true;
            }
            match self {
                Clock::Sim { cloud, .. } => cloud.sleep_ms(left.unsigned_abs()).await,
                Clock::Wall => {
                    let nap =
                        std::time::Duration::from_millis(left.min(WALL_NAP_MS).unsigned_abs());
                    tokio::select! {
                        () = tokio::time::sleep(nap) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }
}

/// What became of one slot.
#[derive(Debug, Clone, Serialize)]
pub struct SlotRun {
    /// The slot.
    pub slot: Slot,
    /// What became of it.
    pub status: SlotStatus,
    /// Its run's id, once the run started.
    pub run_id: Option<String>,
    /// How many instances its run terminated.
    pub victims: usize,
    /// Why the run could not start, for `failed`.
    pub error: Option<String>,
}

/// The daemon.
pub struct Daemon {
    config: Config,
    schedule: Schedule,
    history: SharedHistory,
    clock: Clock,
    execute: bool,
    seed: u64,
    /// Throw-away runs (`simulate`): journals unsynced.
    throwaway: bool,
    /// Counts every run, for `/metrics`.
    metrics: Option<Arc<Metrics>>,
}

/// This daemon's name on a shared history: `HOST:PID`.
fn owner() -> String {
    format!(
        "{}:{}",
        rustix::system::uname().nodename().to_string_lossy(),
        std::process::id()
    )
}

/// Whether the daemon `owner` names is known to be gone: one of this host
/// whose process is not running. Another host's is never known gone from
/// here.
fn owner_is_gone(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    let this_host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    host == this_host && pid.parse().is_ok_and(|pid| !crate::faults::alive(pid))
}

/// A slot's own seed: the same slot always runs with the same seed.
pub(crate) fn slot_seed(seed: u64, slot: &Slot) -> u64 {
    let mut hash = sha2::Sha256::new();
    hash.update(seed.to_le_bytes());
    hash.update(slot.key.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

impl Daemon {
    /// A daemon over the config's schedule. Errors name the config file.
    pub fn new(
        config: Config,
        history: SharedHistory,
        clock: Clock,
        execute: bool,
        seed: u64,
    ) -> anyhow::Result<Daemon> {
        let at = config.path.display().to_string();
        let schedule = config
            .schedule(seed)
            .map_err(|err| anyhow::anyhow!("{at}: {err}"))?
            .ok_or_else(|| {
                anyhow::anyhow!("{at}: the daemon needs a [schedule] (see docs/config.md)")
            })?;
        if schedule.is_empty() {
            anyhow::bail!(
                "{at}: no experiment has a when (e.g. when = \"daily\"), so the daemon has nothing to run"
            );
        }
        Ok(Daemon {
            config,
            schedule,
            history,
            clock,
            execute,
            seed,
            throwaway: false,
            metrics: None,
        })
    }

    /// Count every run in these metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Daemon {
        self.metrics = Some(metrics);
        self
    }

    /// Throw-away runs: journals are not synced (`simulate`).
    pub fn throwaway(mut self) -> Daemon {
        self.throwaway = true;
        self
    }

    /// The schedule it keeps.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn history(&self) -> std::sync::MutexGuard<'_, dyn crate::history::History + 'static> {
        runner::lock(&self.history)
    }

    /// Run slots until `until` (epoch ms, exclusive; none: forever) or until
    /// `stop` turns true. A stop during a run interrupts it as Ctrl-C does
    /// `wasmonkey run`: its journal is finished, then the loop ends.
    /// `each` hears of every slot as it ends.
    ///
    /// No storm, whatever the clock does: the slots due at each wake-up are
    /// taken together, and of each experiment only the latest may run,
    /// on time, or (`catch_up = "latest"`) as the one catch-up for slots
    /// that passed while no daemon could run them; the others are missed.
    /// On a first start (no daemon was ever seen on this history) no past
    /// slot is due.
    pub async fn run(
        &self,
        until: Option<EpochMs>,
        mut stop: watch::Receiver<bool>,
        mut each: impl FnMut(&SlotRun),
    ) -> anyhow::Result<Vec<SlotRun>> {
        self.recover_unfinished()?;
        let started = self.clock.now_ms();
        // Slots after the last moment a daemon was seen alive on this
        // history were missed while none ran; before it, they were its.
        let seen = self.history().daemon_seen()?;
        let mut cursor = match seen {
            Some(seen) => seen.min(started).saturating_add(1),
            None => started,
        };
        let mut ran = Vec::new();
        loop {
            if *stop.borrow() {
                break;
            }
            let now = self.clock.now_ms();
            self.history().note_daemon(now)?;
            let Some(next) = self.schedule.next(cursor, 1).into_iter().next() else {
                anyhow::bail!(
                    "{}: no slot of the schedule within a year (a when that never falls in the working days and hours?): the daemon has nothing to run",
                    self.config.path.display()
                );
            };
            if let Some(metrics) = &self.metrics {
                metrics.set_next_slot(next.at as f64 / 1000.0);
            }
            if until.is_some_and(|until| next.at >= until) {
                break;
            }
            if next.at > now {
                tracing::info!(
                    slot = %next.key,
                    experiment = next.experiment + 1,
                    "next slot at {}",
                    schedule::show(next.at, self.schedule.calendar.time_zone())
                );
                if !self.clock.sleep_until(next.at, &mut stop).await {
                    break;
                }
                continue;
            }
            // Everything due by now, at once.
            let now = self.clock.now_ms();
            let end = until.map_or(now.saturating_add(1), |u| u.min(now.saturating_add(1)));
            let (due, _) = self.schedule.between(cursor, end);
            cursor = end;
            for slot in self.pick(due, now)? {
                if *stop.borrow() {
                    break;
                }
                match slot {
                    Picked::Missed(slot) => {
                        if self.claim(&slot, SlotStatus::Missed, None)? {
                            let missed = self.slot_run(slot, SlotStatus::Missed, None, 0, None);
                            each(&missed);
                            ran.push(missed);
                        }
                    }
                    Picked::Run(slot) => {
                        // Marked, with its journal, before the run: a crash
                        // mid-run never reruns the slot, and the next start
                        // brings its journal into the history.
                        let journal = self.journal_of(&slot);
                        if !self.claim(&slot, SlotStatus::Started, Some(&journal))? {
                            tracing::warn!(slot = %slot.key, "another daemon on this history took the slot");
                            continue;
                        }
                        let done = self.run_slot(slot, journal, &stop).await?;
                        self.mark(&done.slot, done.run_id.as_deref(), done.status)?;
                        self.history().note_daemon(self.clock.now_ms())?;
                        each(&done);
                        ran.push(done);
                    }
                }
            }
        }
        Ok(ran)
    }

    /// Of the slots due at `now`, what to run and what was missed. Per
    /// experiment, the latest slot not yet done runs if it is on time, or
    /// as a catch-up when `catch_up` allows it; every other one is missed
    /// (at most [`MAX_MISSED_MARKED`] of them recorded, the latest).
    fn pick(&self, due: Vec<Slot>, now: EpochMs) -> anyhow::Result<Vec<Picked>> {
        let mut latest: BTreeMap<usize, Slot> = BTreeMap::new();
        let mut missed = Vec::new();
        for slot in due {
            if self.history().slot_done(&slot.key)? {
                tracing::info!(slot = %slot.key, "already run");
                continue;
            }
            if let Some(earlier) = latest.insert(slot.experiment, slot) {
                missed.push(earlier);
            }
        }
        let mut picked = Vec::new();
        for slot in latest.into_values() {
            let on_time = slot.at >= now.saturating_sub(ON_TIME_MS);
            if on_time || self.may_catch_up(&slot, now) {
                if !on_time {
                    tracing::warn!(slot = %slot.key, "passed while no daemon could run it: run now, once (catch_up = \"latest\")");
                }
                picked.push(Picked::Run(slot));
            } else {
                missed.push(slot);
            }
        }
        missed.sort_by_key(|s| (s.at, s.experiment));
        if missed.len() > MAX_MISSED_MARKED {
            tracing::warn!(
                "{} slots passed while no daemon could run them; the latest {MAX_MISSED_MARKED} are recorded as missed",
                missed.len()
            );
            missed.drain(..missed.len() - MAX_MISSED_MARKED);
        }
        let mut all: Vec<Picked> = missed.into_iter().map(Picked::Missed).collect();
        all.extend(picked);
        Ok(all)
    }

    /// Whether a slot that passed may still run now: `catch_up =
    /// "latest"`, its working window still open, and its experiment's next
    /// slot no closer than the experiment's own interval (so two runs of
    /// it are never closer than its schedule allows).
    fn may_catch_up(&self, slot: &Slot, now: EpochMs) -> bool {
        let calendar = &self.schedule.calendar;
        let catch_up = self
            .config
            .schedule
            .as_ref()
            .map_or(CatchUp::default(), |s| s.catch_up);
        if catch_up == CatchUp::None
            || !calendar.in_window(now)
            || calendar.date_of(now) != calendar.date_of(slot.at)
        {
            return false;
        }
        if self.schedule.is_daily(slot.experiment) {
            // Its next slot is on another working day.
            return true;
        }
        match self
            .schedule
            .next_of(slot.experiment, now.saturating_add(1))[..]
        {
            [ref next, ref after] => {
                next.at.saturating_sub(now) >= after.at.saturating_sub(next.at)
            }
            _ => true,
        }
    }

    /// What became of a slot's run.
    fn mark(&self, slot: &Slot, run_id: Option<&str>, status: SlotStatus) -> anyhow::Result<()> {
        self.history().mark_slot(&SlotMark {
            slot: &slot.key,
            experiment: slot.experiment,
            due_ms: slot.at,
            run_id,
            status,
            journal: None,
            owner: None,
        })
    }

    /// Take a slot before its run (or mark it missed), unless another
    /// daemon on the same history took it first.
    fn claim(
        &self,
        slot: &Slot,
        status: SlotStatus,
        journal: Option<&std::path::Path>,
    ) -> anyhow::Result<bool> {
        let journal = journal.map(|p| p.display().to_string());
        self.history().claim_slot(&SlotMark {
            slot: &slot.key,
            experiment: slot.experiment,
            due_ms: slot.at,
            run_id: None,
            status,
            journal: journal.as_deref(),
            owner: Some(&owner()),
        })
    }

    /// The journal of a slot's run: named after the slot, so an operator
    /// finds it, and new (a slot never runs twice).
    fn journal_of(&self, slot: &Slot) -> PathBuf {
        let name: String = slot
            .key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.config.journal_dir().join(format!("slot-{name}.jsonl"))
    }

    /// Slots a previous daemon started and never ended (it died during the
    /// run): their journals go into the history, so that the spacing rule
    /// knows their kills, and the slots are marked interrupted. On a shared
    /// history, a slot another daemon took may still be running there: it
    /// is reported and left to it, never taken over.
    fn recover_unfinished(&self) -> anyhow::Result<()> {
        let unfinished = self.history().unfinished_slots()?;
        for slot in unfinished {
            if let Some(owner) = slot.owner.as_deref().filter(|o| !owner_is_gone(o)) {
                tracing::warn!(
                    slot = %crate::text::one_line(&slot.slot),
                    "its run started under {} and has not ended; it may still be running there, and is left to it",
                    crate::text::one_line(owner)
                );
                continue;
            }
            let (key, journal) = (slot.slot, slot.journal);
            let mut run_id = None;
            if let Some(path) = journal.as_deref().map(std::path::Path::new) {
                // Read back from the history: checked like any state the
                // host trusts (a regular file, bounded, no link followed).
                match crate::journal::read_no_follow(path) {
                    Ok(replay) => {
                        let report = crate::report::Report::from_journal(&replay, path);
                        run_id = report.run_id.clone();
                        self.history().record(&report)?;
                    }
                    // No journal entry: the run never started acting.
                    Err(err) => tracing::warn!(slot = %key, "{err:#}"),
                }
            }
            tracing::warn!(slot = %key, "its run was cut short (the daemon stopped during it); its journal is in the history");
            self.history().mark_slot(&SlotMark {
                slot: &key,
                experiment: 0,
                due_ms: 0,
                run_id: run_id.as_deref(),
                status: SlotStatus::Interrupted,
                journal: None,
                owner: None,
            })?;
        }
        Ok(())
    }

    fn slot_run(
        &self,
        slot: Slot,
        status: SlotStatus,
        run_id: Option<String>,
        victims: usize,
        error: Option<String>,
    ) -> SlotRun {
        SlotRun {
            slot,
            status,
            run_id,
            victims,
            error,
        }
    }

    async fn run_slot(
        &self,
        slot: Slot,
        journal: PathBuf,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<SlotRun> {
        let seed = slot_seed(self.seed, &slot);
        let calendar = &self.schedule.calendar;
        let window = calendar.window_of(calendar.date_of(slot.at));
        let mut options = RunOptions {
            kill_deadline_ms: Some(window.end),
            config: self.config.path.clone(),
            seed: Some(seed),
            execute: self.execute,
            only: Some(slot.experiment),
            journal: Some(journal),
            history: Some(Arc::clone(&self.history)),
            unsynced_journal: self.throwaway,
            // A rehearsal touches nothing real: the operator's switches do
            // not pause it, only its own throw-away one.
            switches: match (self.throwaway, &self.config.state_dir) {
                (true, Some(dir)) => Some(
                    crate::kill_switch::Switches::none()
                        .with(Arc::new(crate::kill_switch::FileSwitch::new(dir))),
                ),
                _ => None,
            },
            ..RunOptions::default()
        };
        let cloud: anyhow::Result<Arc<dyn Cloud>> = match &self.clock {
            Clock::Sim { cloud, origin_ms } => {
                options.clock_origin_ms = Some(*origin_ms);
                Ok(Arc::clone(cloud) as Arc<dyn Cloud>)
            }
            Clock::Wall => runner::backend(&self.config, seed).await,
        };
        let mut stopped = stop.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let output = match cloud {
            Ok(cloud) => runner::run_on(&self.config, cloud, seed, &options, shutdown).await,
            Err(err) => Err(err),
        };
        Ok(match output {
            Ok(output) => {
                if let Some(metrics) = &self.metrics {
                    let ended = self.clock.now_ms() as f64 / 1000.0;
                    metrics.record_run(&output.report, ended);
                    metrics.record_api_calls(&output.api_calls);
                }
                let report = output.report;
                let status = SlotStatus::from(report.outcome);
                tracing::info!(slot = %slot.key, run = report.run_id.as_deref().unwrap_or("?"), victims = report.victims.len(), "slot ran: {status}");
                let victims = report.victims.len();
                self.slot_run(slot, status, report.run_id, victims, None)
            }
            // One failing run is recorded; the next slot still runs.
            Err(err) => {
                let error = format!("{err:#}");
                tracing::error!(slot = %slot.key, "slot failed: {}", crate::text::one_line(&error));
                self.slot_run(slot, SlotStatus::Failed, None, 0, Some(error))
            }
        })
    }
}

/// `wasmonkey simulate`: what N days of the schedule did to the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    /// The seed it ran with: the same seed gives the same simulation.
    pub seed: u64,
    /// How many calendar days it covered.
    pub days: u32,
    /// The first instant simulated, in the schedule's zone.
    pub start: String,
    /// The end of the last day simulated (exclusive).
    pub end: String,
    /// The schedule's IANA time zone.
    pub time_zone: String,
    /// The operator's aim, from `[schedule] mean_time_between_kills`.
    pub configured_mean_time_between_kills: Option<String>,
    /// `min_time_between_kills` of the blast radius.
    pub min_time_between_kills: Option<String>,
    /// Slots that ran.
    pub runs: u32,
    /// Slots that did not run, by why: `outside-hours`, `holiday`,
    /// `paused`, `stopped`, `failed`, `missed`.
    pub skipped: BTreeMap<String, u32>,
    /// Instances terminated, over every run.
    pub kills: u32,
    /// Per-group figures, by name.
    pub groups: Vec<SimulatedGroup>,
    /// The simulated API calls, by account-region (`NAME/REGION`; `fleet`
    /// for a config without `[[account]]`).
    pub api_calls: BTreeMap<String, u64>,
    /// Checks the simulation left out: PromQL asks the operator's
    /// Prometheus about now, not about the simulated days.
    pub left_out: Vec<String>,
    /// Every kill, for `--html`.
    #[serde(skip)]
    pub kill_points: Vec<history::KillPoint>,
    /// The first and last day simulated.
    #[serde(skip)]
    pub dates: (jiff::civil::Date, jiff::civil::Date),
}

/// One group over the simulation.
#[derive(Debug, Clone, Serialize)]
pub struct SimulatedGroup {
    /// Its kills, gaps and recovery times.
    #[serde(flatten)]
    pub stats: GroupStats,
    /// Most of its victims down at once (terminated and not yet recovered).
    pub most_victims_at_once: u32,
    /// Times its healthy in-service count fell below
    /// `min_healthy_per_group`.
    pub below_healthy_floor: u32,
}

/// Most intervals open at once; ties of an end and a start count the end
/// first (a group that recovered as the next kill came held one at a time).
fn most_at_once(mut intervals: Vec<(EpochMs, EpochMs)>) -> u32 {
    let mut edges: Vec<(EpochMs, i32)> = Vec::with_capacity(intervals.len() * 2);
    for (start, end) in intervals.drain(..) {
        edges.push((start, 1));
        edges.push((end.max(start), -1));
    }
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        open += step;
        most = most.max(open);
    }
    u32::try_from(most).unwrap_or(0)
}

/// The longest `simulate` runs, in days.
pub const MAX_SIMULATED_DAYS: u32 = 3660;
/// The most slots `simulate` runs (each is a whole run of a plugin).
pub const MAX_SIMULATED_SLOTS: u64 = 200_000;

/// Run the daemon's loop over `days` from `start` (epoch ms) on the config's
/// simulated fleet, with a history in memory and the kill switch and
/// journals in a throw-away directory. Everything follows from the seed.
pub async fn simulate(
    config: &Config,
    seed: u64,
    start_ms: EpochMs,
    days: u32,
) -> anyhow::Result<Simulation> {
    let crate::config::BackendConfig::Sim { fleet } = &config.backend else {
        anyhow::bail!(
            "{}: simulate runs on the simulated fleet only (backend kind = \"sim\")",
            config.path.display()
        );
    };
    let scratch = tempfile::tempdir()?;
    let mut config = config.clone();
    config.state_dir = Some(scratch.path().join("state"));
    config.journal_dir = Some(scratch.path().join("journal"));
    // The operator's Prometheus knows today, not the simulated weeks: its
    // checks are left out, and the simulation says so.
    let mut left_out: Vec<String> = Vec::new();
    config.stop_conditions.retain(|name, condition| {
        let keep = !matches!(condition, crate::config::StopCondition::Prometheus { .. });
        if !keep {
            left_out.push(format!("stop condition {name}"));
        }
        keep
    });
    config.steady_state.retain(|name, check| {
        let keep = !matches!(check, crate::config::SteadyState::Prometheus(_));
        if !keep {
            left_out.push(format!("steady state {name}"));
        }
        keep
    });
    let simulated = crate::backend::simulated(&config, fleet, seed)?;
    for (_, fleet) in &simulated.fleets {
        fleet.keep_timeline(false);
        fleet.watch_floor(config.blast_radius.min_healthy_per_group);
    }
    let cloud = simulated.cloud;
    let history = Arc::new(std::sync::Mutex::new(history::SqliteHistory::in_memory()?));
    let shared: SharedHistory = history.clone();
    let clock = Clock::Sim {
        cloud: Arc::clone(&cloud),
        origin_ms: start_ms,
    };
    let daemon = Daemon::new(config.clone(), shared, clock, true, seed)?.throwaway();
    if days > MAX_SIMULATED_DAYS {
        anyhow::bail!(
            "simulate: at most {MAX_SIMULATED_DAYS} days (ten years) are simulated, not {days}"
        );
    }
    let estimate = daemon.schedule().estimate_slots(start_ms, days);
    if estimate > MAX_SIMULATED_SLOTS {
        anyhow::bail!(
            "{}: simulating {days} days would run about {estimate} slots; at most {MAX_SIMULATED_SLOTS} are simulated (fewer --days, or a sparser when)",
            config.path.display()
        );
    }
    // Calendar days: a day with a DST change is 23 or 25 hours long.
    let calendar = &daemon.schedule().calendar;
    let end_ms = calendar
        .date_of(start_ms)
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .ok()
        .and_then(|date| date.to_zoned(calendar.time_zone().clone()).ok())
        .map_or(i64::MAX, |end| end.timestamp().as_millisecond());
    let (_keep, stop) = watch::channel(false);
    let slots = daemon.run(Some(end_ms), stop, |_| {}).await?;
    let mut skipped: BTreeMap<String, u32> = BTreeMap::new();
    for (_, why) in daemon.schedule().between(start_ms, end_ms).1 {
        let name = match why {
            Skip::OutsideHours => "outside-hours",
            Skip::Holiday => "holiday",
        };
        *skipped.entry(name.to_owned()).or_default() += 1;
    }
    let mut runs = 0;
    for slot in &slots {
        match slot.status {
            SlotStatus::Paused | SlotStatus::Stopped | SlotStatus::Failed | SlotStatus::Missed
                if slot.victims == 0 =>
            {
                *skipped.entry(slot.status.name().to_owned()).or_default() += 1;
            }
            _ => runs += 1,
        }
    }
    // Points, not whole rows: a year of a large fleet is read without text.
    let points = history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .kill_points(&Filter::default())?;
    let timeout_ms =
        i64::try_from(config.recovery.timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    // Each fleet's dips, by the group's name as the runs saw it.
    let dips: BTreeMap<String, _> = simulated
        .fleets
        .iter()
        .flat_map(|(prefix, fleet)| {
            fleet
                .dips()
                .into_iter()
                .map(move |(group, dips)| (format!("{prefix}{group}"), dips))
        })
        .collect();
    // Each group's outage intervals, in one pass over a year of kills.
    let mut intervals: BTreeMap<&str, Vec<(EpochMs, EpochMs)>> = BTreeMap::new();
    for kill in &points {
        if let Some(group) = kill.group.as_deref() {
            let until = kill.killed_ms + kill.recovery_ms.unwrap_or(timeout_ms);
            intervals
                .entry(group)
                .or_default()
                .push((kill.killed_ms, until));
        }
    }
    let groups = history::stats(&points, Some(calendar))
        .into_iter()
        .map(|stats| {
            let intervals = intervals.remove(stats.group.as_str()).unwrap_or_default();
            SimulatedGroup {
                most_victims_at_once: most_at_once(intervals),
                below_healthy_floor: dips.get(&stats.group).map_or(0, |d| d.below_floor),
                stats,
            }
        })
        .collect();
    let tz = calendar.time_zone();
    Ok(Simulation {
        seed,
        days,
        start: schedule::show(start_ms, tz),
        end: schedule::show(end_ms, tz),
        time_zone: tz.iana_name().unwrap_or("UTC").to_owned(),
        configured_mean_time_between_kills: config
            .schedule
            .as_ref()
            .and_then(|s| s.mean_time_between_kills)
            .map(|g| g.to_string()),
        min_time_between_kills: config
            .blast_radius
            .min_time_between_kills
            .map(|g| g.to_string()),
        runs,
        skipped,
        kills: u32::try_from(points.len()).unwrap_or(u32::MAX),
        groups,
        api_calls: simulated
            .fleets
            .iter()
            .map(|(prefix, fleet)| {
                let name = prefix.trim_end_matches('/');
                let name = if name.is_empty() { "fleet" } else { name };
                (
                    name.to_owned(),
                    Cloud::api_calls(fleet.as_ref()).values().sum(),
                )
            })
            .collect(),
        left_out,
        kill_points: points,
        dates: (
            calendar.date_of(start_ms),
            calendar.date_of(end_ms.saturating_sub(1)),
        ),
    })
}

impl Simulation {
    /// The text `wasmonkey simulate` prints.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "simulated {} days from {} to {} ({}), seed {}",
            self.days, self.start, self.end, self.time_zone, self.seed
        );
        let skipped: Vec<String> = self
            .skipped
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        if !self.left_out.is_empty() {
            let _ = writeln!(
                out,
                "left out (PromQL asks the live Prometheus, not the simulated days): {}",
                self.left_out.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "{} run(s), {} kill(s); skipped: {}",
            self.runs,
            self.kills,
            if skipped.is_empty() {
                "none".to_owned()
            } else {
                skipped.join(", ")
            }
        );
        if self.api_calls.len() > 1 {
            let calls: Vec<u64> = self.api_calls.values().copied().collect();
            let _ = writeln!(
                out,
                "{} account-regions: {} API calls in all, {} to {} in each",
                calls.len(),
                calls.iter().sum::<u64>(),
                calls.iter().min().unwrap_or(&0),
                calls.iter().max().unwrap_or(&0)
            );
        }
        let _ = writeln!(
            out,
            "mean time between kills: aimed {}, min {}",
            self.configured_mean_time_between_kills
                .as_deref()
                .unwrap_or("(not set)"),
            self.min_time_between_kills
                .as_deref()
                .unwrap_or("(not set)")
        );
        let _ = writeln!(
            out,
            "{:<24} {:>5} {:>10} {:>9} {:>7} {:>8} {:>8} {:>6}",
            "group", "kills", "mean gap", "shortest", "at once", "p50 s", "p95 s", "floor"
        );
        let num =
            |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.1}{unit}"));
        for g in &self.groups {
            let s = &g.stats;
            let _ = writeln!(
                out,
                "{:<24} {:>5} {:>10} {:>9} {:>7} {:>8} {:>8} {:>6}",
                crate::text::one_line(&s.group),
                s.kills,
                num(s.mean_gap_workdays, " wd"),
                s.shortest_gap_workdays
                    .map_or("-".to_owned(), |d| format!("{d} wd")),
                g.most_victims_at_once,
                num(s.recovery_p50_seconds, ""),
                num(s.recovery_p95_seconds, ""),
                g.below_healthy_floor
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_daemon_of_this_host_is_known_gone() {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let dead = exited.id();
        exited.wait().unwrap();
        assert!(owner_is_gone(&format!("{host}:{dead}")));
        assert!(!owner_is_gone(&owner()), "this process");
        assert!(
            !owner_is_gone(&format!("another-{host}:{dead}")),
            "another host's"
        );
        assert!(!owner_is_gone("garbage"));
        assert!(!owner_is_gone(&format!("{host}:not-a-pid")));
    }

    #[test]
    fn most_at_once_counts_overlaps_only() {
        assert_eq!(most_at_once(vec![]), 0);
        assert_eq!(most_at_once(vec![(0, 10), (10, 20)]), 1, "end before start");
        assert_eq!(most_at_once(vec![(0, 10), (5, 20), (6, 7)]), 3);
        assert_eq!(most_at_once(vec![(0, 10), (11, 20)]), 1);
    }
}
