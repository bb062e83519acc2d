//! Unattended chaos at fleet scale: `simulate` of a daily schedule
//! (classic-monkey, probability 0.5, one kill per group per working day at
//! most) over fleets of groups of 3, and `history stats` over the history
//! such a run leaves.
//!
//! Sizes: `WASMONKEY_BENCH_GROUPS` (default `100,1000`) and
//! `WASMONKEY_BENCH_DAYS` (default `91,365`); every pair is run, so that the
//! growth with days and with groups shows. Needs `cargo xtask plugins`. Run
//! with `cargo bench -p wasmonkey --bench unattended` (a release build).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops on the first failure"
)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::config::Config;
use wasmonkey::daemon::{self, Clock, Daemon};
use wasmonkey::history::{self, Filter, History as _, SqliteHistory};
use wasmonkey::runner::SharedHistory;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sizes(var: &str, default: &str) -> Vec<u32> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("a number"))
        .collect()
}

/// A fleet of `groups` groups of 3 over three zones, opted in.
fn fleet(groups: u32) -> String {
    let mut text = String::new();
    for g in 0..groups {
        let _ = writeln!(
            text,
            "[[group]]\nname = \"g{g:04}\"\nzones = [\"us-east-1a\", \"us-east-1b\", \"us-east-1c\"]\n\
             desired = 3\nmin = 1\nmax = 4\ntags = {{ chaos = \"opt-in\" }}\n\
             launch_secs = 30\nlaunch_jitter_secs = 5\ndetect_secs = 10\nshutdown_secs = 5\n"
        );
    }
    text
}

fn config(dir: &Path, groups: u32) -> PathBuf {
    std::fs::write(dir.join("fleet.toml"), fleet(groups)).expect("fleet");
    let path = dir.join("wasmonkey.toml");
    std::fs::write(
        &path,
        format!(
            r#"journal_dir = "journal"
state_dir = "state"
[backend]
kind = "sim"
fleet = "fleet.toml"
[plugins]
dir = {plugins:?}
[scope]
opt_in = "chaos=opt-in"
[blast_radius]
max_terminations = {groups}
max_terminations_per_run = {groups}
min_healthy_per_group = 2
max_fraction_per_group = 0.34
min_time_between_kills = "1 workday"
[recovery]
timeout_secs = 600
poll_secs = 5
[schedule]
time_zone = "Europe/Berlin"
hours = "09:00-15:00"
mean_time_between_kills = "2 workdays"
[[experiment]]
plugin = "classic-monkey"
grants = ["terminate"]
params = {{ probability = 0.5, poll-secs = 5 }}
when = "daily"
"#,
            plugins = root().join("target/plugins").display().to_string()
        ),
    )
    .expect("config");
    path
}

fn start() -> i64 {
    "2026-12-07T00:00:00+01:00[Europe/Berlin]"
        .parse::<jiff::Zoned>()
        .expect("date")
        .timestamp()
        .as_millisecond()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(
        root().join("target/plugins/classic-monkey.wasm").is_file(),
        "build the plugins first: cargo xtask plugins"
    );
    let groups = sizes("WASMONKEY_BENCH_GROUPS", "100,1000");
    let days = sizes("WASMONKEY_BENCH_DAYS", "91,365");
    println!(
        "{:>6} {:>5} {:>6} {:>8} {:>10} {:>12} {:>12}",
        "groups", "days", "runs", "kills", "simulate s", "ms per run", "stats ms"
    );
    for &g in &groups {
        for &d in &days {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = config(dir.path(), g);
            let config = Config::load(&path).expect("config");
            // `wasmonkey simulate` itself.
            let began = Instant::now();
            let simulation = daemon::simulate(&config, 7, start(), d)
                .await
                .expect("simulate");
            let took = began.elapsed();
            // The same loop again with a history on disk, for the query.
            let file = dir.path().join("history.sqlite");
            let store = Arc::new(Mutex::new(SqliteHistory::open(&file).expect("history")));
            let shared: SharedHistory = store.clone();
            let cloud = Arc::new(
                SimCloud::from_fleet_file(&dir.path().join("fleet.toml"), 7).expect("fleet"),
            );
            cloud.keep_timeline(false);
            let clock = Clock::Sim {
                cloud,
                origin_ms: start(),
            };
            let daemon = Daemon::new(config.clone(), shared, clock, true, 7)
                .expect("daemon")
                .throwaway();
            let (_keep, stop) = tokio::sync::watch::channel(false);
            daemon
                .run(Some(start() + i64::from(d) * 86_400_000), stop, |_| {})
                .await
                .expect("daemon");
            drop(daemon);
            let calendar = config.calendar().expect("calendar");
            // A fresh process's view: open, query, compute.
            let mut best = f64::MAX;
            for _ in 0..5 {
                let began = Instant::now();
                let history = SqliteHistory::open(&file).expect("history");
                let kills = history.kill_points(&Filter::default()).expect("kills");
                let stats = history::stats(&kills, calendar.as_ref());
                assert!(!stats.is_empty(), "a history without kills");
                best = best.min(began.elapsed().as_secs_f64() * 1000.0);
            }
            println!(
                "{g:>6} {d:>5} {:>6} {:>8} {:>10.2} {:>12.1} {:>12.1}",
                simulation.runs,
                simulation.kills,
                took.as_secs_f64(),
                took.as_secs_f64() * 1000.0 / f64::from(simulation.runs.max(1)),
                best
            );
        }
    }
}
