//! The unattended commands: `daemon`, `simulate`, `history`, and what
//! `status` says of the schedule and the last runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr as _;
use std::sync::Arc;

use clap::Subcommand;

use crate::config::Config;
use crate::daemon::{self, Clock, Daemon};
use crate::history::{self, Filter, SharedHistory, SqliteHistory};
use crate::metrics::Metrics;
use crate::report::Report;
use crate::schedule::{self, EpochMs};
use crate::text::{self, one_line};

/// Kill history commands.
#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Per group: kills, mean and shortest time between kills, recovery
    /// p50 / p95 / max, not recovered.
    Stats,
    /// Bring a journal's run into the history (also one cut short by a
    /// crash; importing it again changes nothing).
    Import {
        /// Journal file (JSONL).
        journal: PathBuf,
    },
}

/// What `wasmonkey history` is asked.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HistoryArgs {
    /// A run config whose state_dir holds the history (and whose
    /// [schedule] counts working days); default: the operator's state
    /// directory.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Only this group.
    #[arg(long, global = true)]
    pub group: Option<String>,
    /// Only kills since a date (2026-11-01) or a span back (30d, 12h).
    #[arg(long, global = true)]
    pub since: Option<String>,
    /// Count dry-run kills too.
    #[arg(long, global = true)]
    pub dry_runs: bool,
    /// Print the kills (or the statistics) as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Also write the kills as an HTML page: per-group statistics, kills
    /// per day, recovery times.
    #[arg(long, global = true, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

fn now_ms() -> EpochMs {
    Clock::Wall.now_ms()
}

/// `--since`: a date (`2026-11-01`) or a span back from now (`30d`,
/// `12h`, `2 weeks`).
pub(super) fn parse_since(text: &str, now: EpochMs) -> anyhow::Result<EpochMs> {
    if let Ok(date) = jiff::civil::Date::from_str(text) {
        let zoned = date.to_zoned(jiff::tz::TimeZone::UTC)?;
        return Ok(zoned.timestamp().as_millisecond());
    }
    let span = jiff::Span::from_str(text).map_err(|_| {
        anyhow::anyhow!("--since {text:?}: give a date (2026-11-01) or a span such as 30d or 12h")
    })?;
    let back = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|err| anyhow::anyhow!("--since {text:?}: {err}"))?;
    Ok(now.saturating_sub(i64::try_from(back.as_millis()).unwrap_or(i64::MAX)))
}

/// The history of a config (its database, or its state directory's
/// file), or of the operator's state directory.
fn history_of(config: Option<&Config>) -> anyhow::Result<SharedHistory> {
    if let Some(config) = config {
        return crate::history::open_shared(config);
    }
    let dir = crate::kill_switch::operator_state_dir().ok_or_else(|| {
        anyhow::anyhow!("no state directory: set XDG_STATE_HOME or HOME, or pass --config")
    })?;
    Ok(Arc::new(std::sync::Mutex::new(
        SqliteHistory::in_state_dir(&dir)?,
    )))
}

fn load(config: Option<&Path>) -> anyhow::Result<Option<Config>> {
    config.map(Config::load).transpose()
}

/// `wasmonkey history [stats | import JOURNAL]`.
pub(super) fn history(
    args: &HistoryArgs,
    command: Option<HistoryCommand>,
) -> anyhow::Result<ExitCode> {
    let config = load(args.config.as_deref())?;
    let shared = history_of(config.as_ref())?;
    let mut store = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let calendar = config
        .as_ref()
        .map(Config::calendar)
        .transpose()
        .map_err(|err| anyhow::anyhow!("{err}"))?
        .flatten();
    let filter = Filter {
        group: args.group.clone(),
        since_ms: args
            .since
            .as_deref()
            .map(|s| parse_since(s, now_ms()))
            .transpose()?,
        dry_runs: args.dry_runs,
    };
    let tz = calendar
        .as_ref()
        .map_or(jiff::tz::TimeZone::UTC, |c| c.time_zone().clone());
    if let Some(path) = &args.html {
        let kills = store.kill_points(&filter)?;
        let stats = history::stats(&kills, calendar.as_ref());
        let page = crate::history::html::KillsPage {
            title: "wasmonkey kill history".into(),
            facts: vec![
                ("History", store.location()),
                ("Group", args.group.clone().unwrap_or_else(|| "all".into())),
                (
                    "Since",
                    args.since.clone().unwrap_or_else(|| "the start".into()),
                ),
                (
                    "Dry runs",
                    if args.dry_runs { "counted" } else { "left out" }.into(),
                ),
            ],
            stats: &stats,
            kills: &kills,
            time_zone: &tz,
            days: None,
        };
        super::write_html(path, &crate::history::html::render(&page))?;
    }
    match command {
        Some(HistoryCommand::Import { journal }) => {
            let replay = crate::journal::read(&journal)?;
            let report = Report::from_journal(&replay, &journal);
            store.record(&report)?;
            outln!(
                "imported run {} ({} victim(s){}) into {}",
                one_line(report.run_id.as_deref().unwrap_or("?")),
                report.victims.len(),
                if report.complete {
                    ""
                } else {
                    ", journal cut short"
                },
                one_line(&store.location())
            )?;
        }
        Some(HistoryCommand::Stats) => {
            let kills = store.kill_points(&filter)?;
            let stats = history::stats(&kills, calendar.as_ref());
            if args.json {
                outln!(
                    "{}",
                    text::json_safe(&serde_json::to_string_pretty(&stats)?)
                )?;
            } else {
                outln!(
                    "{:<24} {:>5} {:>11} {:>11} {:>8} {:>8} {:>8} {:>6}",
                    "group",
                    "kills",
                    "mean gap h",
                    "shortest h",
                    "p50 s",
                    "p95 s",
                    "max s",
                    "not ok"
                )?;
                let num = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
                for s in &stats {
                    outln!(
                        "{:<24} {:>5} {:>11} {:>11} {:>8} {:>8} {:>8} {:>6}",
                        one_line(&s.group),
                        s.kills,
                        num(s.mean_gap_hours),
                        num(s.shortest_gap_hours),
                        num(s.recovery_p50_seconds),
                        num(s.recovery_p95_seconds),
                        num(s.recovery_max_seconds),
                        s.not_recovered
                    )?;
                }
            }
        }
        None => {
            let kills = store.kills(&filter)?;
            if args.json {
                outln!(
                    "{}",
                    text::json_safe(&serde_json::to_string_pretty(&kills)?)
                )?;
            } else {
                for k in &kills {
                    outln!(
                        "{}  {:<20} {:<21} {:<11} {:<14} {:>8}  {}@{}{}",
                        schedule::show(k.killed_ms, &tz),
                        one_line(k.group.as_deref().unwrap_or("-")),
                        one_line(&k.instance_id),
                        k.status,
                        k.host_verdict,
                        k.recovery_ms
                            .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                        one_line(&k.plugin),
                        one_line(&k.version),
                        if k.dry_run { " (dry run)" } else { "" }
                    )?;
                }
                outln!(
                    "{} kill(s){}",
                    kills.len(),
                    if args.dry_runs {
                        ""
                    } else {
                        " (executed runs; --dry-runs adds the dry-run ones)"
                    }
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A watch that turns true on SIGTERM or SIGINT.
fn stop_on_signals() -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::warn!("{name}: finishing the current run's journal, then stopping");
        let _ = tx.send(true);
    });
    Ok(rx)
}

/// `wasmonkey daemon`.
pub(super) async fn daemon(
    config: &Path,
    execute: bool,
    seed: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let seed = seed
        .or(config.seed)
        .unwrap_or_else(crate::runner::fresh_seed);
    let listen = config
        .daemon
        .listen_address()
        .map_err(|err| anyhow::anyhow!("{}: {err}", config.path.display()))?;
    let shared = crate::history::open_shared(&config)?;
    let location = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .location();
    // The backend the slots run on: its switches (the account's too), and
    // the account and region every series is labelled with.
    let backend = crate::runner::backend(&config, seed).await?;
    let switches = crate::history::switches(&config, backend.as_ref())?;
    let metrics = Arc::new(Metrics::for_config(&config, &backend.whereabouts().await));
    let daemon = Daemon::new(config, Arc::clone(&shared), Clock::Wall, execute, seed)?
        .with_metrics(Arc::clone(&metrics));
    let stop = stop_on_signals()?;
    if let Some(address) = listen {
        let listener = crate::metrics::http::bind(address).await?;
        let bound = listener.local_addr()?;
        if !bound.ip().is_loopback() {
            tracing::warn!("daemon.listen: /metrics is served beyond loopback, on {bound}");
        }
        tracing::info!("serving /metrics and /healthz on http://{bound}");
        let served = crate::metrics::http::Served {
            metrics,
            switches,
            history: Some(Arc::clone(&shared)),
        };
        tokio::spawn(crate::metrics::http::serve(listener, served, stop.clone()));
    }
    tracing::info!(
        seed,
        history = %crate::text::one_line(&location),
        "daemon started ({})",
        if execute { "executing" } else { "dry run: nothing is changed" }
    );
    daemon
        .run(None, stop, |slot| {
            // A daemon whose stdout nobody reads goes on: each slot is in
            // the history and the log as well.
            let _ = outln!(
                "{} {}: {}{}{}",
                one_line(&slot.slot.key),
                schedule::show(slot.slot.at, daemon.schedule().calendar.time_zone()),
                slot.status,
                slot.run_id.as_deref().map_or(String::new(), |id| format!(
                    " (run {}, {} victim(s))",
                    one_line(id),
                    slot.victims
                )),
                slot.error.as_deref().map_or(String::new(), |e| format!(
                    ": {}",
                    text::bounded(&one_line(e), 1024)
                ))
            );
        })
        .await?;
    tracing::info!("daemon stopped");
    Ok(ExitCode::SUCCESS)
}

/// `wasmonkey simulate`.
pub(super) async fn simulate(
    config: &Path,
    days: u32,
    start: Option<&str>,
    seed: Option<u64>,
    json: bool,
    (html, junit): (Option<&Path>, Option<&Path>),
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config)?;
    let seed = seed
        .or(config.seed)
        .unwrap_or_else(crate::runner::fresh_seed);
    let calendar = config
        .calendar()
        .map_err(|err| anyhow::anyhow!("{}: {err}", config.path.display()))?
        .ok_or_else(|| anyhow::anyhow!("{}: simulate needs a [schedule]", config.path.display()))?;
    let tz = calendar.time_zone().clone();
    let date = match start {
        Some(text) => jiff::civil::Date::from_str(text)
            .map_err(|_| anyhow::anyhow!("--start {text:?} is not a date (YYYY-MM-DD)"))?,
        None => jiff::Timestamp::now().to_zoned(tz.clone()).date(),
    };
    let start_ms = date.to_zoned(tz)?.timestamp().as_millisecond();
    let simulation = daemon::simulate(&config, seed, start_ms, days).await?;
    if let Some(path) = html {
        let stats: Vec<history::GroupStats> =
            simulation.groups.iter().map(|g| g.stats.clone()).collect();
        let page = crate::history::html::KillsPage {
            title: format!("wasmonkey simulate: {days} days"),
            facts: vec![
                ("Config", config.path.display().to_string()),
                ("Seed", simulation.seed.to_string()),
                ("From", simulation.start.clone()),
                ("To", simulation.end.clone()),
                ("Runs", simulation.runs.to_string()),
                (
                    "Aimed mean time between kills",
                    simulation
                        .configured_mean_time_between_kills
                        .clone()
                        .unwrap_or_else(|| "-".into()),
                ),
            ],
            stats: &stats,
            kills: &simulation.kill_points,
            time_zone: calendar.time_zone(),
            days: Some(simulation.dates),
        };
        super::write_html(path, &crate::history::html::render(&page))?;
    }
    if let Some(path) = junit {
        super::write_junit(path, &crate::junit::render_simulation(&simulation)?)?;
    }
    if json {
        outln!(
            "{}",
            text::json_safe(&serde_json::to_string_pretty(&simulation)?)
        )?;
    } else {
        out!("{}", simulation.render_text())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What `status --config` adds: the next slots and the last runs.
pub(super) fn status(config: &Config) -> anyhow::Result<()> {
    let seed = config.seed.unwrap_or(0);
    let schedule = config
        .schedule(seed)
        .map_err(|err| anyhow::anyhow!("{}: {err}", config.path.display()))?;
    match schedule {
        Some(schedule) if !schedule.is_empty() => {
            let tz = schedule.calendar.time_zone().clone();
            outln!("next slots:")?;
            for slot in schedule.next(now_ms(), 5) {
                let when = if config.seed.is_some() {
                    schedule::show(slot.at, &tz)
                } else {
                    // Without a seed in the config the daemon draws its own,
                    // so only the day is known.
                    slot.key.clone()
                };
                outln!(
                    "  {} experiment {} ({})",
                    one_line(&when),
                    slot.experiment + 1,
                    one_line(&config.experiments[slot.experiment].plugin)
                )?;
            }
        }
        _ => outln!("schedule: none (no [schedule], or no experiment with a when)")?,
    }
    let shared = history_of(Some(config))?;
    let store = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runs = store.runs(5)?;
    if runs.is_empty() {
        outln!("last runs: none in {}", one_line(&store.location()))?;
    } else {
        outln!("last runs:")?;
        for run in runs {
            outln!(
                "  {} {} {}{} {} victim(s){}",
                schedule::show(run.origin_ms, &jiff::tz::TimeZone::UTC),
                one_line(&run.run_id),
                one_line(&run.outcome),
                if run.dry_run { " (dry run)" } else { "" },
                run.victims,
                run.stopped_by
                    .as_deref()
                    .map_or(String::new(), |by| format!(", stopped by {}", one_line(by)))
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_date_or_a_span_back() {
        let now = 10 * 86_400_000;
        assert_eq!(parse_since("30d", 40 * 86_400_000).unwrap(), now);
        assert_eq!(parse_since("12h", now).unwrap(), now - 12 * 3_600_000);
        assert_eq!(parse_since("1970-01-02", now).unwrap(), 86_400_000);
        let err = parse_since("last tuesday", now).unwrap_err().to_string();
        assert!(err.contains("--since"), "{err}");
    }
}
