//! The kill history: every run, experiment, victim, denial count and stop
//! trip, in an embedded SQLite database in the state directory.
//!
//! Rows are written from the journal (through [`Report::from_journal`], the
//! one reader of journals), replacing whatever the history held for that
//! run: writing the same journal twice, or a journal cut short and later the
//! whole one, leaves the rows the last journal says. The SQL is portable
//! (no SQLite-only types or functions) so another store can serve the
//! [`History`] trait later; migrations are numbered from the first schema.

pub mod html;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rusqlite::{params, Connection, OptionalExtension as _};
use serde::Serialize;

use crate::config::Config;
use crate::report::{HostVerdict, Report, VictimStatus};
use crate::schedule::{Calendar, EpochMs};

/// The history's file in the state directory.
pub(crate) const FILE: &str = "history.sqlite";

/// Most bytes of a queued import's file (a journal's path).
const MAX_QUEUED_BYTES: u64 = 16 * 1024;

/// Queue `journal` for the next run to import into the history in the
/// state directory: a file in `dir` naming it, written whole.
pub(crate) fn queue_import(dir: &Path, journal: &Path) -> anyhow::Result<()> {
    crate::files::create_private_dir(dir)
        .with_context(|| format!("{}: creating it", dir.display()))?;
    let journal = std::path::absolute(journal)
        .with_context(|| format!("{}: its absolute path", journal.display()))?;
    let name = format!(
        "{}.path",
        journal
            .file_name()
            .map_or_else(|| "journal".into(), |n| n.to_string_lossy().into_owned())
    );
    crate::files::write_atomic(&dir.join(name), journal.as_os_str().as_encoded_bytes())
}

/// Import every journal queued in `dir` into `history`, removing each
/// queue entry once its journal is in. An entry is read as state is (a
/// regular file, bounded, no link followed); one that cannot be read, or
/// whose journal cannot, is an error naming it, left for the next time.
pub(crate) fn import_pending(history: &mut dyn History, dir: &Path) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(anyhow::anyhow!("{}: {err}", dir.display())),
    };
    let mut problems = Vec::new();
    for entry in entries.flatten() {
        let queued = entry.path();
        if queued.extension().is_none_or(|e| e != "path") {
            continue;
        }
        let imported = (|| -> anyhow::Result<()> {
            let (file, _) = crate::files::open_no_follow(&queued, MAX_QUEUED_BYTES)?;
            let bytes = crate::files::read(file, MAX_QUEUED_BYTES)?;
            let journal = PathBuf::from(String::from_utf8(bytes)?);
            let replay = crate::journal::read(&journal)?;
            history.record(&Report::from_journal(&replay, &journal))?;
            std::fs::remove_file(&queued)?;
            tracing::info!("imported {} into the kill history", journal.display());
            Ok(())
        })();
        if let Err(err) = imported {
            problems.push(format!("{}: {err:#}", queued.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "journals queued for the kill history could not be imported: {}",
            problems.join("; ")
        )
    }
}

/// How long a writer waits for another process's write to end.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Statuses of a victim that count as a kill: it went (for real or in a dry
/// run), or nobody can say it did not (fail closed for the spacing rule).
/// Queries choose whether dry-run ones count by `dry_run`.
const KILLED: &str = "('terminated', 'unknown', 'uncertain', 'dry-run')";

/// Each migration takes the schema from its index to the next version.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    origin_ms INTEGER NOT NULL,
    backend TEXT NOT NULL,
    seed TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    interrupted INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    stopped_by TEXT,
    journal TEXT NOT NULL
);
CREATE TABLE experiments (
    run_id TEXT NOT NULL,
    experiment INTEGER NOT NULL,
    plugin TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    finished INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (run_id, experiment)
);
CREATE TABLE victims (
    run_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    experiment INTEGER NOT NULL,
    group_name TEXT,
    zone TEXT NOT NULL,
    killed_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    recovery_ms INTEGER,
    host_verdict TEXT NOT NULL,
    plugin_verdict TEXT,
    PRIMARY KEY (run_id, instance_id)
);
CREATE INDEX victims_by_group ON victims (group_name, killed_ms);
CREATE INDEX victims_by_time ON victims (killed_ms);
CREATE TABLE denials (
    run_id TEXT NOT NULL,
    experiment INTEGER NOT NULL,
    rule TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (run_id, experiment, rule)
);
CREATE TABLE trips (
    run_id TEXT NOT NULL,
    condition_name TEXT NOT NULL,
    paused INTEGER NOT NULL,
    saw TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, condition_name)
);
CREATE TABLE slots (
    slot TEXT PRIMARY KEY,
    experiment INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    run_id TEXT,
    status TEXT NOT NULL,
    journal TEXT
);
",
    "
CREATE TABLE last_kills (
    group_name TEXT PRIMARY KEY,
    executed_ms INTEGER,
    any_ms INTEGER
);
INSERT INTO last_kills (group_name, executed_ms, any_ms)
SELECT group_name,
       MAX(CASE WHEN dry_run = 0 THEN killed_ms END),
       MAX(killed_ms)
FROM victims
WHERE group_name IS NOT NULL AND status IN ('terminated', 'unknown', 'uncertain', 'dry-run')
GROUP BY group_name;
",
    "
CREATE TABLE daemon_seen (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_ms INTEGER NOT NULL
);
",
    "
CREATE TABLE ledger (
    run_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    group_name TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, instance_id)
);
CREATE INDEX ledger_by_group ON ledger (group_name, at_ms);
",
    "
ALTER TABLE slots ADD COLUMN owner TEXT;
",
];

/// A kill about to happen, as the ledger keeps it.
#[derive(Debug, Clone, Copy)]
pub struct LedgerKill<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The victim.
    pub instance: &'a str,
    /// Its group.
    pub group: &'a str,
    /// When, epoch ms.
    pub at: EpochMs,
}

/// One kill (or dry-run kill) as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KillRow {
    /// The run that killed it.
    pub run_id: String,
    /// The victim.
    pub instance_id: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Its zone.
    pub zone: String,
    /// Epoch ms of the termination request.
    pub killed_ms: EpochMs,
    /// What became of the termination.
    pub status: VictimStatus,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// The host's measure: termination to recovered group, ms.
    pub recovery_ms: Option<i64>,
    /// The host's verdict.
    pub host_verdict: HostVerdict,
    /// The plugin's verdict, if it gave one.
    pub plugin_verdict: Option<String>,
    /// The plugin that killed it.
    pub plugin: String,
    /// The plugin's version.
    pub version: String,
    /// The plugin component's sha256.
    pub sha256: String,
    /// The run's seed, as text (SQLite has no u64).
    pub seed: String,
}

/// What the statistics need of a kill.
#[derive(Debug, Clone, PartialEq)]
pub struct KillPoint {
    /// The victim's group, if any.
    pub group: Option<String>,
    /// When, epoch ms.
    pub killed_ms: EpochMs,
    /// The host's measure of its recovery, ms.
    pub recovery_ms: Option<i64>,
    /// The host's verdict.
    pub host_verdict: HostVerdict,
}

impl From<&KillRow> for KillPoint {
    fn from(row: &KillRow) -> KillPoint {
        KillPoint {
            group: row.group.clone(),
            killed_ms: row.killed_ms,
            recovery_ms: row.recovery_ms,
            host_verdict: row.host_verdict,
        }
    }
}

/// Statuses and verdicts are kept by name; a name this host does not know
/// is an error naming it, not a guess.
macro_rules! by_name {
    ($($name:ident),+) => {$(
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.name().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {text:?}", stringify!($name)).into(),
                    )
                })
            }
        }
    )+};
}

crate::names::named! {
    /// What became of a schedule slot.
    SlotStatus {
        /// Its run began (and, if the daemon died, never ended).
        Started = "started",
        /// Its run went as intended.
        Succeeded = "succeeded",
        /// A victim did not recover, or a termination failed.
        NotRecovered = "not-recovered",
        /// An experiment failed.
        ExperimentFailed = "experiment-failed",
        /// Its run could not see all it needed (a failed call, an
        /// undelivered notification).
        Inconclusive = "inconclusive",
        /// A stop condition tripped.
        Stopped = "stopped",
        /// The kill switch was set.
        Paused = "paused",
        /// The run could not start.
        Failed = "failed",
        /// Its time passed while the daemon was not running.
        Missed = "missed",
        /// The history already had it.
        Done = "done",
        /// The daemon stopped during its run.
        Interrupted = "interrupted",
    }
}

impl From<crate::report::RunOutcome> for SlotStatus {
    fn from(outcome: crate::report::RunOutcome) -> SlotStatus {
        use crate::report::RunOutcome;
        match outcome {
            RunOutcome::Succeeded => SlotStatus::Succeeded,
            RunOutcome::NotRecovered => SlotStatus::NotRecovered,
            RunOutcome::ExperimentFailed => SlotStatus::ExperimentFailed,
            RunOutcome::Stopped => SlotStatus::Stopped,
            RunOutcome::Paused => SlotStatus::Paused,
            RunOutcome::Inconclusive => SlotStatus::Inconclusive,
            RunOutcome::Interrupted => SlotStatus::Interrupted,
        }
    }
}

by_name!(VictimStatus, HostVerdict, SlotStatus);

/// One run as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    /// The run's id.
    pub run_id: String,
    /// When its clock began, epoch ms.
    pub origin_ms: EpochMs,
    /// `sim` or `aws`.
    pub backend: String,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Whether its journal records its end.
    pub complete: bool,
    /// What became of it (the report's outcome).
    pub outcome: String,
    /// What stopped it, if something did.
    pub stopped_by: Option<String>,
    /// How many instances it terminated.
    pub victims: u32,
    /// Its journal.
    pub journal: String,
}

/// What the history says of one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    /// The group.
    pub group: String,
    /// Kills in the period.
    pub kills: u32,
    /// Mean of the gaps between consecutive kills, hours.
    pub mean_gap_hours: Option<f64>,
    /// The same in working days of the schedule, when there is one.
    pub mean_gap_workdays: Option<f64>,
    /// The shortest gap between two kills, hours.
    pub shortest_gap_hours: Option<f64>,
    /// The same in working days of the schedule, when there is one.
    pub shortest_gap_workdays: Option<u32>,
    /// Median recovery time of its recovered kills.
    pub recovery_p50_seconds: Option<f64>,
    /// 95th percentile of the same (nearest rank).
    pub recovery_p95_seconds: Option<f64>,
    /// The longest of the same.
    pub recovery_max_seconds: Option<f64>,
    /// Kills its group did not recover from in time.
    pub not_recovered: u32,
}

/// Which kills a query looks at.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only kills of this group.
    pub group: Option<String>,
    /// Only kills at or after this, epoch ms.
    pub since_ms: Option<EpochMs>,
    /// Count dry-run kills too.
    pub dry_runs: bool,
}

/// The history, whatever stores it.
pub trait History: Send + std::fmt::Debug {
    /// Where it is, for the operator: a file, or a database URL without
    /// its secrets.
    fn location(&self) -> String;
    /// Replace the rows of the report's run with what the report says.
    fn record(&mut self, report: &Report) -> anyhow::Result<()>;
    /// The last kill of each group, epoch ms (dry-run kills too when asked).
    fn last_kills(&self, dry_runs: bool) -> anyhow::Result<BTreeMap<String, EpochMs>>;
    /// Kills in time order.
    fn kills(&self, filter: &Filter) -> anyhow::Result<Vec<KillRow>>;
    /// Kills in time order, with only what [`stats`] needs: a year of a
    /// large fleet is read without its text.
    fn kill_points(&self, filter: &Filter) -> anyhow::Result<Vec<KillPoint>>;
    /// The latest runs, newest first.
    fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunRow>>;
    /// Whether a schedule slot has been run.
    fn slot_done(&self, slot: &str) -> anyhow::Result<bool>;
    /// Record what became of a schedule slot, and the journal of its run.
    fn mark_slot(&mut self, mark: &SlotMark<'_>) -> anyhow::Result<()>;
    /// Record a slot only if nobody has: false when another daemon on this
    /// history got there first.
    fn claim_slot(&mut self, mark: &SlotMark<'_>) -> anyhow::Result<bool>;
    /// Slots whose run started but was never marked ended (its daemon died
    /// during it, or, on a shared history, is running it now).
    fn unfinished_slots(&self) -> anyhow::Result<Vec<UnfinishedSlot>>;
    /// The last moment a daemon was seen running on this history (epoch
    /// ms), if one ever was.
    fn daemon_seen(&self) -> anyhow::Result<Option<EpochMs>>;
    /// A daemon is running at `at` (epoch ms): the latest such moment is
    /// kept.
    fn note_daemon(&mut self, at: EpochMs) -> anyhow::Result<()>;
    /// In one write transaction, across processes: the group's last
    /// executed kill (victims, summary, ledger) is read, `allowed` decides
    /// on it, and when it allows, the kill is written to the ledger before
    /// the transaction ends; whether it was. Two writers can never both
    /// pass the check.
    fn reserve_kill(
        &mut self,
        kill: &LedgerKill<'_>,
        allowed: &mut dyn FnMut(Option<EpochMs>) -> bool,
    ) -> anyhow::Result<bool>;
    /// A reserved kill that certainly did not happen (the backend refused
    /// it) leaves the ledger.
    fn release_kill(&mut self, run_id: &str, instance: &str) -> anyhow::Result<()>;
}

/// What became of a schedule slot.
#[derive(Debug, Clone, Copy)]
pub struct SlotMark<'a> {
    /// The slot's key: experiment and due time.
    pub slot: &'a str,
    /// The experiment's position in the config, from 0.
    pub experiment: usize,
    /// When it was due, epoch ms.
    pub due_ms: EpochMs,
    /// Its run, once known.
    pub run_id: Option<&'a str>,
    /// `started` until the run ends, then what became of it.
    pub status: SlotStatus,
    /// Its run's journal, when the slot is taken.
    pub journal: Option<&'a str>,
    /// The daemon that took it (`HOST:PID`), when it is taken.
    pub owner: Option<&'a str>,
}

/// A slot whose run started and was never marked ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedSlot {
    /// The slot's key.
    pub slot: String,
    /// Its run's journal.
    pub journal: Option<String>,
    /// The daemon that took it (`HOST:PID`); none in histories of older
    /// hosts.
    pub owner: Option<String>,
}

/// The SQLite store.
pub struct SqliteHistory {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHistory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqliteHistory {
    /// Open (or create) the history in a state directory.
    pub fn in_state_dir(dir: &Path) -> anyhow::Result<SqliteHistory> {
        crate::files::create_private_dir(dir)
            .with_context(|| format!("{}: creating the state directory", dir.display()))?;
        SqliteHistory::open(&dir.join(FILE))
    }

    /// Open (or create) a history file and bring its schema up to date.
    pub fn open(path: &Path) -> anyhow::Result<SqliteHistory> {
        let conn = Connection::open(path)
            .with_context(|| format!("{}: opening the kill history", path.display()))?;
        let mut history = SqliteHistory {
            conn,
            path: path.to_owned(),
        };
        history
            .migrate()
            .with_context(|| format!("{}: the kill history", path.display()))?;
        Ok(history)
    }

    /// A history in memory, gone with the process (`simulate`).
    pub(crate) fn in_memory() -> anyhow::Result<SqliteHistory> {
        let mut history = SqliteHistory {
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":memory:"),
        };
        history.migrate()?;
        Ok(history)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        // Several processes may share the file: wait for a writer rather
        // than fail at once, and let readers go on beside one (WAL).
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        if self.path != Path::new(":memory:") {
            self.write_ahead()
                .context("switching to write-ahead logging")?;
        }
        // The version is read inside an exclusive transaction, so that two
        // processes opening a new history do not both create its tables.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            anyhow::bail!(
                "schema version {version} is newer than this wasmonkey knows ({known}): it was written by a newer release; nothing was changed"
            );
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", index + 1))?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Switch the file to write-ahead logging. On a new file several
    /// processes may try at once, and the switch answers SQLITE_BUSY at
    /// once, without the busy handler: try again until the busy timeout.
    /// The mode is kept in the file, so once one process has switched the
    /// others find it switched.
    fn write_ahead(&self) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        loop {
            let tried = self
                .conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| {
                    row.get::<_, String>(0)
                });
            match tried {
                Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
                Ok(mode) => anyhow::bail!("the file stays in journal mode {mode:?}"),
                Err(rusqlite::Error::SqliteFailure(err, _))
                    if err.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Insert a slot's row, or on a slot already there do `on_conflict`;
    /// the rows changed.
    fn insert_slot(&self, mark: &SlotMark<'_>, on_conflict: &str) -> anyhow::Result<usize> {
        Ok(self.conn.execute(
            &format!(
                "INSERT INTO slots (slot, experiment, due_ms, run_id, status, journal, owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (slot) {on_conflict}"
            ),
            params![
                mark.slot,
                to_i64(mark.experiment as u64),
                mark.due_ms,
                mark.run_id,
                mark.status,
                mark.journal,
                mark.owner
            ],
        )?)
    }

    /// The rows of one run as plain values, table by table, in key order:
    /// what tests compare.
    pub fn dump(&self, run_id: &str) -> anyhow::Result<Vec<String>> {
        let mut rows = Vec::new();
        for (table, key) in [
            ("runs", "run_id"),
            ("experiments", "experiment"),
            ("victims", "instance_id"),
            ("denials", "experiment, rule"),
            ("trips", "condition_name"),
        ] {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT * FROM {table} WHERE run_id = ?1 ORDER BY {key}"
            ))?;
            let columns = stmt.column_count();
            let mut query = stmt.query([run_id])?;
            while let Some(row) = query.next()? {
                let mut line = format!("{table}:");
                for i in 0..columns {
                    let value: rusqlite::types::Value = row.get(i)?;
                    line.push_str(&format!(" {value:?}"));
                }
                rows.push(line);
            }
        }
        Ok(rows)
    }
}

/// The condition every kill query shares: `?1` dry runs too, `?2` the
/// group, `?3` since (see [`bound`]).
fn kill_filter() -> String {
    format!(
        "status IN {KILLED} AND (dry_run = 0 OR ?1) AND (?2 IS NULL OR group_name = ?2) AND killed_ms >= ?3"
    )
}

/// A filter's values for [`kill_filter`].
fn bound(filter: &Filter) -> (bool, Option<&str>, i64) {
    (
        filter.dry_runs,
        filter.group.as_deref(),
        filter.since_ms.unwrap_or(i64::MIN),
    )
}

impl History for SqliteHistory {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn record(&mut self, report: &Report) -> anyhow::Result<()> {
        let Some(run_id) = report.run_id.as_deref() else {
            anyhow::bail!("{}: the journal has no run-started entry", report.journal);
        };
        let origin = report.clock_origin_ms.unwrap_or(0);
        // A writer from the start: a reader that turns writer mid-way gets
        // SQLITE_BUSY at once, whatever the busy timeout.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Groups whose last kill this write may move: those of the run's
        // rows before and after it.
        let mut touched: std::collections::BTreeSet<String> = report
            .victims
            .iter()
            .filter_map(|v| v.group.clone())
            .collect();
        {
            let mut old = tx.prepare(
                "SELECT DISTINCT group_name FROM victims WHERE run_id = ?1 AND group_name IS NOT NULL",
            )?;
            for group in old.query_map([run_id], |row| row.get::<_, String>(0))? {
                touched.insert(group?);
            }
        }
        for table in ["runs", "experiments", "victims", "denials", "trips"] {
            tx.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [run_id])?;
        }
        tx.execute(
            "INSERT INTO runs (run_id, origin_ms, backend, seed, dry_run, complete, interrupted, outcome, stopped_by, journal)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                run_id,
                origin,
                report.backend.as_deref().unwrap_or(""),
                report.seed.map(|s| s.to_string()).unwrap_or_default(),
                report.dry_run.unwrap_or(true),
                report.complete,
                report.interrupted,
                report.outcome.name(),
                report.stopped.as_ref().map(|s| s.condition.as_str()),
                report.journal,
            ],
        )?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO experiments (run_id, experiment, plugin, version, sha256, finished, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut denials = tx.prepare(
                "INSERT INTO denials (run_id, experiment, rule, count) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for e in &report.experiments {
                insert.execute(params![
                    run_id,
                    to_i64(e.index as u64),
                    e.plugin,
                    e.version,
                    e.sha256,
                    e.finished,
                    e.error
                ])?;
                let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
                for d in &e.denials {
                    *counts.entry(d.rule.as_str()).or_default() += 1;
                }
                for (rule, count) in counts {
                    denials.execute(params![run_id, to_i64(e.index as u64), rule, count])?;
                }
            }
            let mut insert = tx.prepare(
                "INSERT INTO victims (run_id, instance_id, experiment, group_name, zone, killed_ms, status, dry_run, recovery_ms, host_verdict, plugin_verdict)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for v in &report.victims {
                insert.execute(params![
                    run_id,
                    v.instance_id,
                    to_i64(v.experiment as u64),
                    v.group,
                    v.zone,
                    origin.saturating_add(to_i64(v.run_clock_ms)),
                    v.status,
                    v.dry_run,
                    v.recovery_seconds.map(|s| (s * 1000.0).round() as i64),
                    v.host_verdict,
                    v.plugin_verdict,
                ])?;
            }
            if let Some(stop) = &report.stopped {
                tx.execute(
                    "INSERT INTO trips (run_id, condition_name, paused, saw, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        run_id,
                        stop.condition,
                        stop.paused,
                        stop.saw,
                        origin.saturating_add((stop.at_seconds * 1000.0) as i64)
                    ],
                )?;
            }
            // Each group's last kill, kept in a table of its own so a run's
            // start reads one row per group, not a year of victims. The
            // latest matching row comes first off the (group, time) index.
            let mut latest = tx.prepare(&format!(
                "SELECT killed_ms FROM victims
                 WHERE group_name = ?1 AND status IN {KILLED} AND (dry_run = 0 OR ?2)
                 ORDER BY killed_ms DESC LIMIT 1"
            ))?;
            let mut upsert = tx.prepare(
                "INSERT INTO last_kills (group_name, executed_ms, any_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (group_name) DO UPDATE SET executed_ms = excluded.executed_ms, any_ms = excluded.any_ms",
            )?;
            for group in &touched {
                let executed: Option<i64> = latest
                    .query_row(params![group, false], |row| row.get(0))
                    .optional()?;
                let any: Option<i64> = latest
                    .query_row(params![group, true], |row| row.get(0))
                    .optional()?;
                upsert.execute(params![group, executed, any])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The latest kill of each group, from the victims themselves as well
    /// as from the summary table (a summary is never trusted over the
    /// rows it sums up). A time that is not a number is "unreadable"
    /// ([`EpochMs::MAX`]), which the spacing rule counts as just now.
    fn last_kills(&self, dry_runs: bool) -> anyhow::Result<BTreeMap<String, EpochMs>> {
        let (column, executed) = if dry_runs {
            ("any_ms", "")
        } else {
            ("executed_ms", "AND dry_run = 0")
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT group_name, MAX(at) FROM (
                 SELECT group_name, killed_ms AS at FROM victims
                 WHERE group_name IS NOT NULL AND status IN {KILLED} {executed}
                 UNION ALL
                 SELECT group_name, {column} FROM last_kills WHERE {column} IS NOT NULL
                 UNION ALL
                 SELECT group_name, at_ms FROM ledger
             ) GROUP BY group_name"
        ))?;
        let rows = stmt.query_map([], |row| {
            let at = match row.get::<_, rusqlite::types::Value>(1)? {
                rusqlite::types::Value::Integer(at) => at,
                _ => EpochMs::MAX,
            };
            Ok((row.get(0)?, at))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn kills(&self, filter: &Filter) -> anyhow::Result<Vec<KillRow>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT v.run_id, v.instance_id, v.group_name, v.zone, v.killed_ms, v.status, v.dry_run,
                    v.recovery_ms, v.host_verdict, v.plugin_verdict,
                    COALESCE(e.plugin, ''), COALESCE(e.version, ''), COALESCE(e.sha256, ''), r.seed
             FROM (SELECT * FROM victims WHERE {}) v
             JOIN runs r ON r.run_id = v.run_id
             LEFT JOIN experiments e ON e.run_id = v.run_id AND e.experiment = v.experiment
             ORDER BY v.killed_ms, v.instance_id",
            kill_filter()
        ))?;
        let rows = stmt.query_map(bound(filter), |row| {
            Ok(KillRow {
                run_id: row.get(0)?,
                instance_id: row.get(1)?,
                group: row.get(2)?,
                zone: row.get(3)?,
                killed_ms: row.get(4)?,
                status: row.get(5)?,
                dry_run: row.get(6)?,
                recovery_ms: row.get(7)?,
                host_verdict: row.get(8)?,
                plugin_verdict: row.get(9)?,
                plugin: row.get(10)?,
                version: row.get(11)?,
                sha256: row.get(12)?,
                seed: row.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn kill_points(&self, filter: &Filter) -> anyhow::Result<Vec<KillPoint>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT group_name, killed_ms, recovery_ms, host_verdict FROM victims
             WHERE {}
             ORDER BY killed_ms, instance_id",
            kill_filter()
        ))?;
        let rows = stmt.query_map(bound(filter), |row| {
            Ok(KillPoint {
                group: row.get(0)?,
                killed_ms: row.get(1)?,
                recovery_ms: row.get(2)?,
                host_verdict: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT r.run_id, r.origin_ms, r.backend, r.dry_run, r.complete, r.outcome, r.stopped_by, r.journal,
                    (SELECT COUNT(*) FROM victims v WHERE v.run_id = r.run_id)
             FROM runs r ORDER BY r.origin_ms DESC, r.run_id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([to_i64(limit as u64)], |row| {
            Ok(RunRow {
                run_id: row.get(0)?,
                origin_ms: row.get(1)?,
                backend: row.get(2)?,
                dry_run: row.get(3)?,
                complete: row.get(4)?,
                outcome: row.get(5)?,
                stopped_by: row.get(6)?,
                journal: row.get(7)?,
                victims: row.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn slot_done(&self, slot: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM slots WHERE slot = ?1", [slot], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn mark_slot(&mut self, mark: &SlotMark<'_>) -> anyhow::Result<()> {
        self.insert_slot(
            mark,
            "DO UPDATE SET
                 run_id = COALESCE(excluded.run_id, slots.run_id),
                 status = excluded.status,
                 journal = COALESCE(excluded.journal, slots.journal),
                 owner = COALESCE(excluded.owner, slots.owner)",
        )?;
        Ok(())
    }

    fn claim_slot(&mut self, mark: &SlotMark<'_>) -> anyhow::Result<bool> {
        Ok(self.insert_slot(mark, "DO NOTHING")? == 1)
    }

    fn unfinished_slots(&self) -> anyhow::Result<Vec<UnfinishedSlot>> {
        let mut stmt = self.conn.prepare(
            "SELECT slot, journal, owner FROM slots WHERE status = 'started' ORDER BY due_ms",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(UnfinishedSlot {
                slot: row.get(0)?,
                journal: row.get(1)?,
                owner: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn daemon_seen(&self) -> anyhow::Result<Option<EpochMs>> {
        Ok(self
            .conn
            .query_row("SELECT last_ms FROM daemon_seen WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()?)
    }

    fn note_daemon(&mut self, at: EpochMs) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO daemon_seen (id, last_ms) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET last_ms = MAX(last_ms, excluded.last_ms)",
            [at],
        )?;
        Ok(())
    }

    fn reserve_kill(
        &mut self,
        kill: &LedgerKill<'_>,
        allowed: &mut dyn FnMut(Option<EpochMs>) -> bool,
    ) -> anyhow::Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let last = tx.query_row(
            &format!(
                "SELECT MAX(at) FROM (
                     SELECT killed_ms AS at FROM victims
                     WHERE group_name = ?1 AND status IN {KILLED} AND dry_run = 0
                     UNION ALL
                     SELECT executed_ms FROM last_kills WHERE group_name = ?1 AND executed_ms IS NOT NULL
                     UNION ALL
                     SELECT at_ms FROM ledger WHERE group_name = ?1
                 )"
            ),
            [kill.group],
            |row| row.get::<_, rusqlite::types::Value>(0),
        )?;
        let last = match last {
            rusqlite::types::Value::Null => None,
            rusqlite::types::Value::Integer(at) => Some(at),
            // Unreadable: the spacing rule counts it as just now.
            _ => Some(EpochMs::MAX),
        };
        if !allowed(last) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO ledger (run_id, instance_id, group_name, at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id, instance_id) DO UPDATE SET at_ms = excluded.at_ms",
            params![kill.run_id, kill.instance, kill.group, kill.at],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn release_kill(&mut self, run_id: &str, instance: &str) -> anyhow::Result<()> {
        self.conn.execute(
            "DELETE FROM ledger WHERE run_id = ?1 AND instance_id = ?2",
            [run_id, instance],
        )?;
        Ok(())
    }
}

/// The `q`-quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Per-group statistics of kills (in time order, as [`History::kills`]
/// gives them).
pub fn stats(kills: &[KillPoint], calendar: Option<&Calendar>) -> Vec<GroupStats> {
    let mut by_group: BTreeMap<&str, Vec<&KillPoint>> = BTreeMap::new();
    for kill in kills {
        if let Some(group) = &kill.group {
            by_group.entry(group).or_default().push(kill);
        }
    }
    by_group
        .into_iter()
        .map(|(group, kills)| {
            let hours: Vec<f64> = kills
                .windows(2)
                .map(|w| (w[1].killed_ms - w[0].killed_ms) as f64 / 3_600_000.0)
                .collect();
            let workdays: Option<Vec<u32>> = calendar.map(|c| {
                kills
                    .windows(2)
                    .map(|w| c.workdays_between(w[0].killed_ms, w[1].killed_ms))
                    .collect()
            });
            let mut recovery: Vec<f64> = kills
                .iter()
                .filter(|k| k.host_verdict == HostVerdict::Recovered)
                .filter_map(|k| k.recovery_ms.map(|ms| ms as f64 / 1000.0))
                .collect();
            recovery.sort_by(f64::total_cmp);
            let mean = |values: &[f64]| {
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
            };
            GroupStats {
                group: group.to_owned(),
                kills: u32::try_from(kills.len()).unwrap_or(u32::MAX),
                mean_gap_hours: mean(&hours),
                mean_gap_workdays: workdays
                    .as_ref()
                    .and_then(|w| mean(&w.iter().map(|&d| f64::from(d)).collect::<Vec<_>>())),
                shortest_gap_hours: hours.iter().copied().min_by(f64::total_cmp),
                shortest_gap_workdays: workdays.as_ref().and_then(|w| w.iter().copied().min()),
                recovery_p50_seconds: quantile(&recovery, 0.5),
                recovery_p95_seconds: quantile(&recovery, 0.95),
                recovery_max_seconds: recovery.last().copied(),
                not_recovered: u32::try_from(
                    kills
                        .iter()
                        .filter(|k| k.host_verdict == HostVerdict::NotRecovered)
                        .count(),
                )
                .unwrap_or(u32::MAX),
            }
        })
        .collect()
}

/// A history several runs (and the daemon) share.
pub type SharedHistory = Arc<Mutex<dyn History>>;

/// The kill history of a config, to share: its database (`state`), else
/// the SQLite file of its state directory. The one way every command opens
/// it.
pub(crate) fn open_shared(config: &Config) -> anyhow::Result<SharedHistory> {
    match &config.state {
        Some(url) => open_database(config, url),
        None => Ok(Arc::new(Mutex::new(SqliteHistory::in_state_dir(
            &config.state_dir()?,
        )?))),
    }
}

/// The database `state` names, its problem named by the config's path.
#[cfg(feature = "postgres")]
fn database_of(config: &Config, url: &str) -> anyhow::Result<postgres::Database> {
    postgres::Database::parse(url)
        .map_err(|why| anyhow::anyhow!("{}: state {why}", config.path.display()))
}

#[cfg(feature = "postgres")]
fn open_database(config: &Config, url: &str) -> anyhow::Result<SharedHistory> {
    let database = database_of(config, url)?;
    let history = postgres::PostgresHistory::connect(&database)
        .with_context(|| format!("{}: state", config.path.display()))?;
    Ok(Arc::new(Mutex::new(history)))
}

/// Every kill switch in force for a run of `config` on `cloud` (see
/// [`Config::switches`]), and the shared state's when it names one, read
/// no more often than the fleet.
pub(crate) fn switches(
    config: &Config,
    cloud: &dyn crate::cloud::Cloud,
) -> anyhow::Result<crate::kill_switch::Switches> {
    let switches = config.switches(cloud)?;
    Ok(match shared_switch(config)? {
        Some(shared) => switches.with(Arc::new(crate::kill_switch::Cached::new(
            shared,
            std::time::Duration::from_millis(config.max_read_age_ms()),
        ))),
        None => switches,
    })
}

/// The shared state's kill switch, when the config names a database.
pub(crate) fn shared_switch(
    config: &Config,
) -> anyhow::Result<Option<Arc<dyn crate::kill_switch::Switch>>> {
    let Some(url) = &config.state else {
        return Ok(None);
    };
    shared_switch_of(config, url)
}

#[cfg(feature = "postgres")]
fn shared_switch_of(
    config: &Config,
    url: &str,
) -> anyhow::Result<Option<Arc<dyn crate::kill_switch::Switch>>> {
    let database = database_of(config, url)?;
    let switch = postgres::SharedSwitch::connect(&database)
        .with_context(|| format!("{}: state", config.path.display()))?;
    Ok(Some(Arc::new(switch)))
}

#[cfg(not(feature = "postgres"))]
fn shared_switch_of(
    config: &Config,
    url: &str,
) -> anyhow::Result<Option<Arc<dyn crate::kill_switch::Switch>>> {
    open_database(config, url).map(|_| None)
}

#[cfg(not(feature = "postgres"))]
fn open_database(config: &Config, _url: &str) -> anyhow::Result<SharedHistory> {
    anyhow::bail!(
        "{}: state names a PostgreSQL database, and this wasmonkey was built without PostgreSQL (build it with the default features)",
        config.path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(run: &str, kills: &[(&str, u64, &str, bool)]) -> Report {
        Report {
            run_id: Some(run.into()),
            backend: Some("sim".into()),
            seed: Some(1),
            dry_run: Some(false),
            clock_origin_ms: Some(1_000_000),
            config: None,
            host_version: None,
            operator: None,
            target: None,
            started_at: None,
            ended_at: None,
            wall_seconds: None,
            complete: true,
            interrupted: false,
            stopped: None,
            outcome: crate::report::RunOutcome::Succeeded,
            journal: format!("{run}.jsonl"),
            faults: Vec::new(),
            steady_state: Vec::new(),
            in_force: None,
            account: None,
            region: None,
            brakes: Vec::new(),
            experiments: Vec::new(),
            victims: kills
                .iter()
                .enumerate()
                .map(
                    |(i, (group, at, status, dry_run))| crate::report::VictimReport {
                        experiment: 0,
                        plugin: "p".into(),
                        instance_id: format!("i-{i}"),
                        group: Some((*group).into()),
                        zone: "z".into(),
                        zone_id: None,
                        reason: String::new(),
                        dry_run: *dry_run,
                        status: VictimStatus::parse(status).unwrap(),
                        terminated_at_ms: *at,
                        run_clock_ms: *at,
                        recovery_seconds: None,
                        host_verdict: HostVerdict::Pending,
                        plugin_verdict: None,
                        plugin_recovery_seconds: None,
                    },
                )
                .collect(),
            notifications: Vec::new(),
            unknowns: Vec::new(),
            notes: Vec::new(),
            capacity: Vec::new(),
            last_clock_ms: 0,
        }
    }

    #[test]
    fn a_verdict_this_host_does_not_know_is_an_error_naming_it() {
        let mut history = SqliteHistory::in_memory().unwrap();
        history
            .record(&report("a", &[("web", 10, "terminated", false)]))
            .unwrap();
        assert_eq!(
            history.kills(&Filter::default()).unwrap()[0].host_verdict,
            HostVerdict::Pending
        );
        history
            .conn
            .execute("UPDATE victims SET host_verdict = 'exploded'", [])
            .unwrap();
        let err = history.kills(&Filter::default()).unwrap_err();
        assert!(format!("{err:#}").contains("\"exploded\""), "{err:#}");
        assert!(history.kill_points(&Filter::default()).is_err());
    }

    #[test]
    fn the_last_kill_of_each_group_follows_every_write_of_a_run() {
        let mut history = SqliteHistory::in_memory().unwrap();
        history
            .record(&report(
                "a",
                &[
                    ("web", 10, "terminated", false),
                    ("api", 20, "failed", false),
                ],
            ))
            .unwrap();
        history
            .record(&report(
                "b",
                &[("web", 50, "unknown", false), ("db", 30, "dry-run", true)],
            ))
            .unwrap();
        let last = history.last_kills(false).unwrap();
        assert_eq!(
            last,
            BTreeMap::from([("web".into(), 1_000_050)]),
            "failed and dry runs do not count"
        );
        let with_dry = history.last_kills(true).unwrap();
        assert_eq!(with_dry.get("db"), Some(&1_000_030));
        // Run b written again with less in it (a journal cut shorter): the
        // last kill of web goes back to run a's.
        history.record(&report("b", &[])).unwrap();
        assert_eq!(
            history.last_kills(false).unwrap(),
            BTreeMap::from([("web".into(), 1_000_010)])
        );
        assert!(!history.last_kills(true).unwrap().contains_key("db"));
    }

    #[test]
    fn a_history_of_the_first_schema_is_brought_up_to_date_with_its_last_kills() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO victims VALUES ('r', 'i-1', 0, 'web', 'z', 42, 'terminated', 0, NULL, 'recovered', NULL);
             INSERT INTO victims VALUES ('r', 'i-2', 0, 'api', 'z', 43, 'dry-run', 1, NULL, 'unchecked', NULL);",
        )
        .unwrap();
        drop(conn);
        let history = SqliteHistory::open(&path).unwrap();
        assert_eq!(
            history.last_kills(false).unwrap(),
            BTreeMap::from([("web".into(), 42)])
        );
        assert_eq!(history.last_kills(true).unwrap().get("api"), Some(&43));
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), Some(10.0));
        assert_eq!(quantile(&values, 0.95), Some(19.0));
        assert_eq!(quantile(&values, 1.0), Some(20.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0], 0.95), Some(3.0));
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        SqliteHistory::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = format!("{:#}", SqliteHistory::open(&path).unwrap_err());
        assert!(
            err.contains("history.sqlite") && err.contains("newer"),
            "{err}"
        );
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 99);
    }

    #[test]
    fn slots_are_marked_once_and_updated() {
        let mut history = SqliteHistory::in_memory().unwrap();
        assert!(!history.slot_done("1@2026-12-07").unwrap());
        let mut mark = SlotMark {
            slot: "1@2026-12-07",
            experiment: 0,
            due_ms: 5,
            run_id: None,
            status: SlotStatus::Started,
            journal: Some("j.jsonl"),
            owner: Some("host:1"),
        };
        history.mark_slot(&mark).unwrap();
        assert!(history.slot_done("1@2026-12-07").unwrap());
        assert_eq!(
            history.unfinished_slots().unwrap(),
            [UnfinishedSlot {
                slot: "1@2026-12-07".to_owned(),
                journal: Some("j.jsonl".to_owned()),
                owner: Some("host:1".to_owned()),
            }]
        );
        assert!(!history.claim_slot(&mark).unwrap(), "already there");
        let other = SlotMark {
            slot: "2@2026-12-07",
            ..mark
        };
        assert!(history.claim_slot(&other).unwrap());
        mark.run_id = Some("r");
        mark.status = SlotStatus::Succeeded;
        mark.journal = None;
        mark.owner = None;
        history.mark_slot(&mark).unwrap();
        let row: (String, String, String) = history
            .conn
            .query_row("SELECT status, run_id, journal FROM slots", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(row, ("succeeded".into(), "r".into(), "j.jsonl".into()));
        assert_eq!(
            history.unfinished_slots().unwrap().len(),
            1,
            "slot 2 is started"
        );
    }
}
