//! The kill history in PostgreSQL: one database that several hosts share
//! (`state = "postgres://…"`), with the same rows and rules as the SQLite
//! file. The kill ledger is what stops a double kill: a group's last kill
//! is read and the new one written in one transaction, under an advisory
//! lock on the group, so two daemons (or a daemon that wakes from a pause)
//! can never both pass `min_time_between_kills`.
//!
//! The [`History`] interface is synchronous and is called from async code,
//! so the connection lives on a thread of its own and each call is a
//! message to it, answered within [`CALL_TIMEOUT`]: a database that does not
//! answer is an error, never a hang, and an error is never a permission.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::Context as _;

use super::{
    Filter, History, KillPoint, KillRow, LedgerKill, RunRow, SlotMark, SlotStatus, UnfinishedSlot,
    KILLED,
};
pub use crate::database::Database;
use crate::kill_switch::{Pause, Switch, SwitchScope};
use crate::report::{HostVerdict, Report, VictimStatus};
use crate::schedule::EpochMs;

/// How long a call may wait for the database's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Set on every session: no statement or lock wait outlives it, and a
/// transaction left idle (a host that stopped mid-way) is ended by the
/// server, releasing its locks.
const SESSION: &str =
    "SET client_min_messages = warning; SET statement_timeout = '20s'; SET lock_timeout = '20s'; \
     SET idle_in_transaction_session_timeout = '30s'; SET search_path TO wasmonkey";

/// Each migration takes the schema from its index to the next version.
const MIGRATIONS: &[&str] = &["
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    origin_ms BIGINT NOT NULL,
    backend TEXT NOT NULL,
    seed TEXT NOT NULL,
    dry_run BOOLEAN NOT NULL,
    complete BOOLEAN NOT NULL,
    interrupted BOOLEAN NOT NULL,
    outcome TEXT NOT NULL,
    stopped_by TEXT,
    journal TEXT NOT NULL
);
CREATE TABLE experiments (
    run_id TEXT NOT NULL,
    experiment BIGINT NOT NULL,
    plugin TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    finished BOOLEAN NOT NULL,
    error TEXT,
    PRIMARY KEY (run_id, experiment)
);
CREATE TABLE victims (
    run_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    experiment BIGINT NOT NULL,
    group_name TEXT,
    zone TEXT NOT NULL,
    killed_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    dry_run BOOLEAN NOT NULL,
    recovery_ms BIGINT,
    host_verdict TEXT NOT NULL,
    plugin_verdict TEXT,
    PRIMARY KEY (run_id, instance_id)
);
CREATE INDEX victims_by_group ON victims (group_name, killed_ms);
CREATE INDEX victims_by_time ON victims (killed_ms);
CREATE TABLE denials (
    run_id TEXT NOT NULL,
    experiment BIGINT NOT NULL,
    rule TEXT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (run_id, experiment, rule)
);
CREATE TABLE trips (
    run_id TEXT NOT NULL,
    condition_name TEXT NOT NULL,
    paused BOOLEAN NOT NULL,
    saw TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, condition_name)
);
CREATE TABLE slots (
    slot TEXT PRIMARY KEY,
    experiment BIGINT NOT NULL,
    due_ms BIGINT NOT NULL,
    run_id TEXT,
    status TEXT NOT NULL,
    journal TEXT
);
CREATE TABLE last_kills (
    group_name TEXT PRIMARY KEY,
    executed_ms BIGINT,
    any_ms BIGINT
);
CREATE TABLE daemon_seen (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_ms BIGINT NOT NULL
);
CREATE TABLE ledger (
    run_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    group_name TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, instance_id)
);
CREATE INDEX ledger_by_group ON ledger (group_name, at_ms);
ALTER TABLE slots ADD COLUMN owner TEXT;
CREATE TABLE pause (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    reason TEXT NOT NULL,
    since TEXT NOT NULL,
    by_whom TEXT NOT NULL
);
"];

/// The advisory lock key every migration takes: two hosts starting on a new
/// database do not both create its tables.
const MIGRATION_LOCK: i64 = 0x7761_736d_6f6e_6b79; // "wasmonky"

/// One job for the connection's thread.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The connection, on its thread: opened at first use, and again after
/// the server closed it.
struct Connection {
    database: Database,
    client: Option<postgres::Client>,
}

impl Connection {
    fn client(&mut self) -> anyhow::Result<&mut postgres::Client> {
        if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            self.client = None;
            let password = std::env::var("PGPASSWORD").ok();
            let mut config = self.database.config().clone();
            if let Some(password) = &password {
                config.password(password);
            }
            let mut client = config.connect(postgres::NoTls).context("connecting")?;
            client
                .batch_execute(SESSION)
                .context("setting up the session")?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("{}: no connection", self.database.shown()))
    }
}

/// The kill history in a PostgreSQL database.
pub struct PostgresHistory {
    jobs: mpsc::Sender<Job>,
    database: Database,
}

impl std::fmt::Debug for PostgresHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresHistory({})", self.database.shown())
    }
}

impl PostgresHistory {
    /// Connect, and bring the schema up to this host's version (refusing a
    /// database a newer release has migrated).
    pub fn connect(database: &Database) -> anyhow::Result<PostgresHistory> {
        PostgresHistory::connect_for(database, "the kill history")
    }

    /// The same, saying in its errors what the connection is `for`.
    fn connect_for(database: &Database, what: &str) -> anyhow::Result<PostgresHistory> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let mut connection = Connection {
            database: database.clone(),
            client: None,
        };
        std::thread::Builder::new()
            .name("wasmonkey-postgres".into())
            .spawn(move || {
                while let Ok(job) = queue.recv() {
                    job(&mut connection);
                }
            })
            .context("starting the database thread")?;
        let history = PostgresHistory {
            jobs,
            database: database.clone(),
        };
        history.call(migrate).context(what.to_owned())?;
        Ok(history)
    }

    /// Send `job` to the connection's thread without waiting: its answer
    /// comes on the returned channel.
    fn start<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<mpsc::Receiver<anyhow::Result<T>>> {
        let (answer, answered) = mpsc::sync_channel(1);
        let shown = self.database.shown().to_owned();
        self.jobs
            .send(Box::new(move |connection: &mut Connection| {
                let result = connection.client().and_then(job);
                if result.is_err() && connection.client.as_ref().is_some_and(|c| c.is_closed()) {
                    connection.client = None;
                }
                let _ = answer.send(result.with_context(|| shown));
            }))
            .map_err(|_| {
                anyhow::anyhow!("{}: the database thread is gone", self.database.shown())
            })?;
        Ok(answered)
    }

    /// Run `job` on the connection and wait for its answer.
    fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        wait(&self.start(job)?, &self.database)
    }
}

impl PostgresHistory {
    /// The rows of `sql`, whose condition is [`kill_filter`]'s, bound to
    /// `filter`, each made a `T` by `read`.
    fn filtered<T: Send + 'static>(
        &self,
        sql: String,
        filter: &Filter,
        read: fn(&postgres::Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<Vec<T>> {
        let (dry_runs, group, since) = (
            filter.dry_runs,
            filter.group.clone(),
            filter.since_ms.unwrap_or(i64::MIN),
        );
        self.call(move |client| {
            client
                .query(&sql, &[&dry_runs, &group, &since])?
                .iter()
                .map(read)
                .collect()
        })
    }

    /// The shared kill switch's pause, if it is set.
    pub fn paused(&self) -> anyhow::Result<Option<Pause>> {
        self.call(|client| {
            pause_of(
                client.query_opt("SELECT reason, since, by_whom FROM pause WHERE id = 1", &[])?,
            )
        })
    }

    /// Set the shared kill switch (again, with this reason, if it was).
    pub fn pause(&self, pause: &Pause) -> anyhow::Result<()> {
        let pause = pause.clone();
        self.call(move |client| {
            client.execute(
                "INSERT INTO pause (id, reason, since, by_whom) VALUES (1, $1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET reason = excluded.reason, since = excluded.since, by_whom = excluded.by_whom",
                &[&pause.reason, &pause.since, &pause.by],
            )?;
            Ok(())
        })
    }

    /// Clear the shared kill switch; the pause it held.
    pub fn resume(&self) -> anyhow::Result<Option<Pause>> {
        self.call(|client| {
            pause_of(client.query_opt(
                "DELETE FROM pause WHERE id = 1 RETURNING reason, since, by_whom",
                &[],
            )?)
        })
    }
}

/// The pause a `reason, since, by_whom` row holds, if there is one.
fn pause_of(row: Option<postgres::Row>) -> anyhow::Result<Option<Pause>> {
    row.map(|row| {
        Ok(Pause {
            reason: row.try_get(0)?,
            since: row.try_get(1)?,
            by: row.try_get(2)?,
        })
    })
    .transpose()
}

/// The kill switch every host on one database honours: a row of its own
/// beside the history, on a connection of its own. One that cannot be read
/// counts as set (the switches' timeout bounds the wait).
pub struct SharedSwitch {
    history: Arc<PostgresHistory>,
}

impl SharedSwitch {
    /// The switch of `database`.
    pub fn connect(database: &Database) -> anyhow::Result<SharedSwitch> {
        Ok(SharedSwitch {
            history: Arc::new(PostgresHistory::connect_for(
                database,
                "the shared kill switch",
            )?),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&PostgresHistory) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let history = Arc::clone(&self.history);
        tokio::task::spawn_blocking(move || job(&history))
            .await
            .map_err(|err| anyhow::anyhow!("the database call did not finish: {err}"))?
    }
}

#[async_trait::async_trait]
impl Switch for SharedSwitch {
    async fn paused(&self) -> Option<Pause> {
        match self.blocking(PostgresHistory::paused).await {
            Ok(pause) => pause,
            Err(err) => Some(Pause::unreadable(
                &self.location(),
                &crate::text::one_line(&format!("{err:#}")),
            )),
        }
    }

    async fn pause(&self, reason: &str) -> anyhow::Result<Pause> {
        let pause = Pause::now(reason);
        let set = pause.clone();
        self.blocking(move |history| history.pause(&set)).await?;
        Ok(pause)
    }

    async fn resume(&self) -> anyhow::Result<Option<Pause>> {
        self.blocking(PostgresHistory::resume).await
    }

    fn scope(&self) -> SwitchScope {
        SwitchScope::Shared
    }

    fn location(&self) -> String {
        self.history.database.shown().to_owned()
    }

    fn remote(&self) -> bool {
        true
    }
}

/// The answer on `answered`, within [`CALL_TIMEOUT`].
fn wait<T>(answered: &mpsc::Receiver<anyhow::Result<T>>, database: &Database) -> anyhow::Result<T> {
    match answered.recv_timeout(CALL_TIMEOUT) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => anyhow::bail!(
            "{}: no answer within {} s",
            database.shown(),
            CALL_TIMEOUT.as_secs()
        ),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            anyhow::bail!("{}: the database thread is gone", database.shown())
        }
    }
}

fn migrate(client: &mut postgres::Client) -> anyhow::Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // Under the lock: two hosts starting on a new database would otherwise
    // both create the schema, and one would fail on the catalog's key.
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS wasmonkey;
         CREATE TABLE IF NOT EXISTS schema_version (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL
         )",
    )?;
    let version: i32 = tx
        .query_opt("SELECT version FROM schema_version WHERE id = 1", &[])?
        .map_or(0, |row| row.get(0));
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if version > known {
        anyhow::bail!(
            "schema version {version} is newer than this wasmonkey knows ({known}): it was written by a newer release; nothing was changed"
        );
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.batch_execute(sql)
            .with_context(|| format!("migration {}", index + 1))?;
        let next = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_version (id, version) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            &[&next],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A named enum from its column: a name this host does not know is an
/// error naming it, not a guess.
fn named<T>(row: &postgres::Row, column: usize, parse: fn(&str) -> Option<T>) -> anyhow::Result<T> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| anyhow::anyhow!("unknown value {text:?} in column {column}"))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The condition every kill query shares: `$1` dry runs too, `$2` the
/// group, `$3` since.
fn kill_filter() -> String {
    format!(
        "status IN {KILLED} AND (dry_run = false OR $1) AND ($2::text IS NULL OR group_name = $2) AND killed_ms >= $3"
    )
}

/// A slot mark, owned, to send to the connection's thread.
struct OwnedMark {
    slot: String,
    experiment: i64,
    due_ms: i64,
    run_id: Option<String>,
    status: &'static str,
    journal: Option<String>,
    owner: Option<String>,
}

impl From<&SlotMark<'_>> for OwnedMark {
    fn from(mark: &SlotMark<'_>) -> OwnedMark {
        OwnedMark {
            slot: mark.slot.to_owned(),
            experiment: to_i64(mark.experiment as u64),
            due_ms: mark.due_ms,
            run_id: mark.run_id.map(str::to_owned),
            status: mark.status.name(),
            journal: mark.journal.map(str::to_owned),
            owner: mark.owner.map(str::to_owned),
        }
    }
}

/// Insert a slot's row, or on a slot already there do `on_conflict`; the
/// rows changed.
fn insert_slot(
    client: &mut postgres::Client,
    mark: &OwnedMark,
    on_conflict: &str,
) -> anyhow::Result<u64> {
    Ok(client.execute(
        &format!(
            "INSERT INTO slots (slot, experiment, due_ms, run_id, status, journal, owner) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (slot) {on_conflict}"
        ),
        &[
            &mark.slot,
            &mark.experiment,
            &mark.due_ms,
            &mark.run_id,
            &mark.status,
            &mark.journal,
            &mark.owner,
        ],
    )?)
}

fn record(client: &mut postgres::Client, report: &Report) -> anyhow::Result<()> {
    let Some(run_id) = report.run_id.as_deref() else {
        anyhow::bail!("{}: the journal has no run-started entry", report.journal);
    };
    let origin = report.clock_origin_ms.unwrap_or(0);
    let mut tx = client.transaction()?;
    // Groups whose last kill this write may move: those of the run's rows
    // before and after it.
    let mut touched: BTreeSet<String> = report
        .victims
        .iter()
        .filter_map(|v| v.group.clone())
        .collect();
    for row in tx.query(
        "SELECT DISTINCT group_name FROM victims WHERE run_id = $1 AND group_name IS NOT NULL",
        &[&run_id],
    )? {
        touched.insert(row.try_get(0)?);
    }
    for table in ["runs", "experiments", "victims", "denials", "trips"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE run_id = $1"),
            &[&run_id],
        )?;
    }
    tx.execute(
        "INSERT INTO runs (run_id, origin_ms, backend, seed, dry_run, complete, interrupted, outcome, stopped_by, journal)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &run_id,
            &origin,
            &report.backend.as_deref().unwrap_or(""),
            &report.seed.map(|s| s.to_string()).unwrap_or_default(),
            &report.dry_run.unwrap_or(true),
            &report.complete,
            &report.interrupted,
            &report.outcome.name(),
            &report.stopped.as_ref().map(|s| s.condition.as_str()),
            &report.journal,
        ],
    )?;
    let insert = tx.prepare(
        "INSERT INTO experiments (run_id, experiment, plugin, version, sha256, finished, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )?;
    let denials = tx
        .prepare("INSERT INTO denials (run_id, experiment, rule, count) VALUES ($1, $2, $3, $4)")?;
    for e in &report.experiments {
        let index = to_i64(e.index as u64);
        tx.execute(
            &insert,
            &[
                &run_id,
                &index,
                &e.plugin,
                &e.version,
                &e.sha256,
                &e.finished,
                &e.error,
            ],
        )?;
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for d in &e.denials {
            *counts.entry(d.rule.as_str()).or_default() += 1;
        }
        for (rule, count) in counts {
            tx.execute(&denials, &[&run_id, &index, &rule, &count])?;
        }
    }
    let insert = tx.prepare(
        "INSERT INTO victims (run_id, instance_id, experiment, group_name, zone, killed_ms, status, dry_run, recovery_ms, host_verdict, plugin_verdict)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )?;
    for v in &report.victims {
        tx.execute(
            &insert,
            &[
                &run_id,
                &v.instance_id,
                &to_i64(v.experiment as u64),
                &v.group,
                &v.zone,
                &origin.saturating_add(to_i64(v.run_clock_ms)),
                &v.status.name(),
                &v.dry_run,
                &v.recovery_seconds.map(|s| (s * 1000.0).round() as i64),
                &v.host_verdict.name(),
                &v.plugin_verdict,
            ],
        )?;
    }
    if let Some(stop) = &report.stopped {
        tx.execute(
            "INSERT INTO trips (run_id, condition_name, paused, saw, at_ms) VALUES ($1, $2, $3, $4, $5)",
            &[
                &run_id,
                &stop.condition,
                &stop.paused,
                &stop.saw,
                &origin.saturating_add((stop.at_seconds * 1000.0) as i64),
            ],
        )?;
    }
    // Each group's last kill, kept in a table of its own so a run's start
    // reads one row per group, not a year of victims.
    let latest = tx.prepare(&format!(
        "SELECT killed_ms FROM victims
         WHERE group_name = $1 AND status IN {KILLED} AND (dry_run = false OR $2)
         ORDER BY killed_ms DESC LIMIT 1"
    ))?;
    let upsert = tx.prepare(
        "INSERT INTO last_kills (group_name, executed_ms, any_ms) VALUES ($1, $2, $3)
         ON CONFLICT (group_name) DO UPDATE SET executed_ms = excluded.executed_ms, any_ms = excluded.any_ms",
    )?;
    for group in &touched {
        let executed: Option<i64> = tx
            .query_opt(&latest, &[group, &false])?
            .map(|row| row.try_get(0))
            .transpose()?;
        let any: Option<i64> = tx
            .query_opt(&latest, &[group, &true])?
            .map(|row| row.try_get(0))
            .transpose()?;
        tx.execute(&upsert, &[group, &executed, &any])?;
    }
    tx.commit()?;
    Ok(())
}

fn kill_row(row: &postgres::Row) -> anyhow::Result<KillRow> {
    Ok(KillRow {
        run_id: row.try_get(0)?,
        instance_id: row.try_get(1)?,
        group: row.try_get(2)?,
        zone: row.try_get(3)?,
        killed_ms: row.try_get(4)?,
        status: named(row, 5, VictimStatus::parse)?,
        dry_run: row.try_get(6)?,
        recovery_ms: row.try_get(7)?,
        host_verdict: named(row, 8, HostVerdict::parse)?,
        plugin_verdict: row.try_get(9)?,
        plugin: row.try_get(10)?,
        version: row.try_get(11)?,
        sha256: row.try_get(12)?,
        seed: row.try_get(13)?,
    })
}

impl History for PostgresHistory {
    fn location(&self) -> String {
        self.database.shown().to_owned()
    }

    fn record(&mut self, report: &Report) -> anyhow::Result<()> {
        let report = report.clone();
        self.call(move |client| record(client, &report))
    }

    /// The latest kill of each group, from the victims themselves as well
    /// as from the summary table and the ledger.
    fn last_kills(&self, dry_runs: bool) -> anyhow::Result<BTreeMap<String, EpochMs>> {
        let (column, executed) = if dry_runs {
            ("any_ms", "")
        } else {
            ("executed_ms", "AND dry_run = false")
        };
        let sql = format!(
            "SELECT group_name, MAX(at) FROM (
                 SELECT group_name, killed_ms AS at FROM victims
                 WHERE group_name IS NOT NULL AND status IN {KILLED} {executed}
                 UNION ALL
                 SELECT group_name, {column} FROM last_kills WHERE {column} IS NOT NULL
                 UNION ALL
                 SELECT group_name, at_ms FROM ledger
             ) AS kills GROUP BY group_name"
        );
        self.call(move |client| {
            client
                .query(&sql, &[])?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        })
    }

    fn kills(&self, filter: &Filter) -> anyhow::Result<Vec<KillRow>> {
        let sql = format!(
            "SELECT v.run_id, v.instance_id, v.group_name, v.zone, v.killed_ms, v.status, v.dry_run,
                    v.recovery_ms, v.host_verdict, v.plugin_verdict,
                    COALESCE(e.plugin, ''), COALESCE(e.version, ''), COALESCE(e.sha256, ''), r.seed
             FROM (SELECT * FROM victims WHERE {}) v
             JOIN runs r ON r.run_id = v.run_id
             LEFT JOIN experiments e ON e.run_id = v.run_id AND e.experiment = v.experiment
             ORDER BY v.killed_ms, v.instance_id",
            kill_filter()
        );
        self.filtered(sql, filter, kill_row)
    }

    fn kill_points(&self, filter: &Filter) -> anyhow::Result<Vec<KillPoint>> {
        let sql = format!(
            "SELECT group_name, killed_ms, recovery_ms, host_verdict FROM victims
             WHERE {}
             ORDER BY killed_ms, instance_id",
            kill_filter()
        );
        self.filtered(sql, filter, |row| {
            Ok(KillPoint {
                group: row.try_get(0)?,
                killed_ms: row.try_get(1)?,
                recovery_ms: row.try_get(2)?,
                host_verdict: named(row, 3, HostVerdict::parse)?,
            })
        })
    }

    fn runs(&self, limit: usize) -> anyhow::Result<Vec<RunRow>> {
        let limit = to_i64(limit as u64);
        self.call(move |client| {
            client
                .query(
                    "SELECT r.run_id, r.origin_ms, r.backend, r.dry_run, r.complete, r.outcome, r.stopped_by, r.journal,
                            (SELECT COUNT(*) FROM victims v WHERE v.run_id = r.run_id)
                     FROM runs r ORDER BY r.origin_ms DESC, r.run_id DESC LIMIT $1",
                    &[&limit],
                )?
                .iter()
                .map(|row| {
                    let victims: i64 = row.try_get(8)?;
                    Ok(RunRow {
                        run_id: row.try_get(0)?,
                        origin_ms: row.try_get(1)?,
                        backend: row.try_get(2)?,
                        dry_run: row.try_get(3)?,
                        complete: row.try_get(4)?,
                        outcome: row.try_get(5)?,
                        stopped_by: row.try_get(6)?,
                        journal: row.try_get(7)?,
                        victims: u32::try_from(victims).unwrap_or(u32::MAX),
                    })
                })
                .collect()
        })
    }

    fn slot_done(&self, slot: &str) -> anyhow::Result<bool> {
        let slot = slot.to_owned();
        self.call(move |client| {
            Ok(client
                .query_opt("SELECT 1 FROM slots WHERE slot = $1", &[&slot])?
                .is_some())
        })
    }

    fn mark_slot(&mut self, mark: &SlotMark<'_>) -> anyhow::Result<()> {
        let mark = OwnedMark::from(mark);
        self.call(move |client| {
            insert_slot(
                client,
                &mark,
                "DO UPDATE SET
                     run_id = COALESCE(excluded.run_id, slots.run_id),
                     status = excluded.status,
                     journal = COALESCE(excluded.journal, slots.journal),
                     owner = COALESCE(excluded.owner, slots.owner)",
            )
            .map(drop)
        })
    }

    fn claim_slot(&mut self, mark: &SlotMark<'_>) -> anyhow::Result<bool> {
        let mark = OwnedMark::from(mark);
        self.call(move |client| Ok(insert_slot(client, &mark, "DO NOTHING")? == 1))
    }

    fn unfinished_slots(&self) -> anyhow::Result<Vec<UnfinishedSlot>> {
        let started = SlotStatus::Started.name();
        self.call(move |client| {
            client
                .query(
                    "SELECT slot, journal, owner FROM slots WHERE status = $1 ORDER BY due_ms",
                    &[&started],
                )?
                .iter()
                .map(|row| {
                    Ok(UnfinishedSlot {
                        slot: row.try_get(0)?,
                        journal: row.try_get(1)?,
                        owner: row.try_get(2)?,
                    })
                })
                .collect()
        })
    }

    fn daemon_seen(&self) -> anyhow::Result<Option<EpochMs>> {
        self.call(|client| {
            client
                .query_opt("SELECT last_ms FROM daemon_seen WHERE id = 1", &[])?
                .map(|row| row.try_get(0))
                .transpose()
                .map_err(Into::into)
        })
    }

    fn note_daemon(&mut self, at: EpochMs) -> anyhow::Result<()> {
        self.call(move |client| {
            client.execute(
                "INSERT INTO daemon_seen (id, last_ms) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET last_ms = GREATEST(daemon_seen.last_ms, excluded.last_ms)",
                &[&at],
            )?;
            Ok(())
        })
    }

    /// The group's last kill is read and the new one written in one
    /// transaction that holds the group's advisory lock: a second host's
    /// reservation waits for it, then sees the kill.
    fn reserve_kill(
        &mut self,
        kill: &LedgerKill<'_>,
        allowed: &mut dyn FnMut(Option<EpochMs>) -> bool,
    ) -> anyhow::Result<bool> {
        let (run_id, instance, group, at) = (
            kill.run_id.to_owned(),
            kill.instance.to_owned(),
            kill.group.to_owned(),
            kill.at,
        );
        let (seen, last) = mpsc::sync_channel::<Option<EpochMs>>(1);
        let (decide, decision) = mpsc::sync_channel::<bool>(1);
        let done = self.start(move |client| {
            let mut tx = client.transaction()?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&format!("wasmonkey/group/{group}")],
            )?;
            let last: Option<i64> = tx
                .query_one(
                    &format!(
                        "SELECT MAX(at) FROM (
                             SELECT killed_ms AS at FROM victims
                             WHERE group_name = $1 AND status IN {KILLED} AND dry_run = false
                             UNION ALL
                             SELECT executed_ms FROM last_kills WHERE group_name = $1 AND executed_ms IS NOT NULL
                             UNION ALL
                             SELECT at_ms FROM ledger WHERE group_name = $1
                         ) AS kills"
                    ),
                    &[&group],
                )?
                .try_get(0)?;
            seen.send(last)
                .map_err(|_| anyhow::anyhow!("the caller is gone"))?;
            // Dropping the transaction unwritten rolls it back.
            if !decision.recv_timeout(CALL_TIMEOUT).unwrap_or(false) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO ledger (run_id, instance_id, group_name, at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (run_id, instance_id) DO UPDATE SET at_ms = excluded.at_ms",
                &[&run_id, &instance, &group, &at],
            )?;
            tx.commit()?;
            Ok(true)
        })?;
        let last = match last.recv_timeout(CALL_TIMEOUT) {
            Ok(last) => last,
            // The job ended before it read: its answer says why.
            Err(_) => return wait(&done, &self.database).map(|_| false),
        };
        let go = allowed(last);
        let _ = decide.send(go);
        wait(&done, &self.database)
    }

    fn release_kill(&mut self, run_id: &str, instance: &str) -> anyhow::Result<()> {
        let (run_id, instance) = (run_id.to_owned(), instance.to_owned());
        self.call(move |client| {
            client.execute(
                "DELETE FROM ledger WHERE run_id = $1 AND instance_id = $2",
                &[&run_id, &instance],
            )?;
            Ok(())
        })
    }
}
