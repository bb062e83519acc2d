//! Organisation scale on the simulator: `simulate` of a daily schedule over
//! ACCOUNTS accounts × REGIONS regions, each account-region a fleet of
//! GROUPS groups of 3, for DAYS days: the time taken, the simulated API
//! calls of each account-region, and the peak memory.
//!
//! classic-monkey kills an in-service instance of a group with probability
//! `WASMONKEY_BENCH_PROBABILITY` (default 0.01), the host allowing at most
//! `WASMONKEY_BENCH_CAP` (default 300) terminations a run and one kill of
//! a group per working day. Sizes: `WASMONKEY_BENCH_ACCOUNTS` (10),
//! `WASMONKEY_BENCH_REGIONS` (3), `WASMONKEY_BENCH_GROUPS` (1000),
//! `WASMONKEY_BENCH_DAYS` (365). Needs `cargo xtask plugins`. Run with
//! `cargo bench -p wasmonkey --bench org_scale --no-default-features`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops on the first failure"
)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmonkey::config::Config;
use wasmonkey::daemon;

const REGIONS: [&str; 6] = [
    "us-east-1",
    "eu-west-1",
    "ap-southeast-2",
    "us-west-2",
    "eu-central-1",
    "sa-east-1",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().parse().ok().expect("a number"))
        .unwrap_or(default)
}

/// `groups` groups of 3 over three zones, opted in.
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

fn config(dir: &Path, accounts: usize, regions: usize, groups: u32) -> PathBuf {
    std::fs::write(dir.join("fleet.toml"), fleet(groups)).expect("fleet");
    let probability: f64 = var("WASMONKEY_BENCH_PROBABILITY", 0.01);
    let cap: u32 = var("WASMONKEY_BENCH_CAP", 300);
    let regions: Vec<String> = REGIONS[..regions]
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    let mut listed = String::new();
    for a in 0..accounts {
        let _ = writeln!(
            listed,
            "[[account]]\nid = \"acct-{a:02}\"\nregions = [{}]\n",
            regions.join(", ")
        );
    }
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
max_terminations = {cap}
max_terminations_per_run = {cap}
min_healthy_per_group = 2
max_fraction_per_group = 0.34
min_time_between_kills = "1 workday"
[recovery]
timeout_secs = 600
poll_secs = 5
[schedule]
time_zone = "Europe/Berlin"
hours = "09:00-15:00"
[fan_out]
workers = 4
{listed}
[[experiment]]
plugin = "classic-monkey"
grants = ["terminate"]
params = {{ probability = {probability}, poll-secs = 5 }}
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

/// Peak resident memory of this process, in MB.
fn peak_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert!(
        root().join("target/plugins/classic-monkey.wasm").is_file(),
        "build the plugins first: cargo xtask plugins"
    );
    let accounts: usize = var("WASMONKEY_BENCH_ACCOUNTS", 10);
    let regions: usize = var("WASMONKEY_BENCH_REGIONS", 3);
    let groups: u32 = var("WASMONKEY_BENCH_GROUPS", 1000);
    let days: u32 = var("WASMONKEY_BENCH_DAYS", 365);
    assert!(
        regions <= REGIONS.len(),
        "at most {} regions",
        REGIONS.len()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = config(dir.path(), accounts, regions, groups);
    let config = Config::load(&path).expect("config");
    let began = Instant::now();
    let simulation = daemon::simulate(&config, 7, start(), days)
        .await
        .expect("simulate");
    let took = began.elapsed().as_secs_f64();
    let mut calls: Vec<u64> = simulation.api_calls.values().copied().collect();
    calls.sort_unstable();
    let total: u64 = calls.iter().sum();
    println!(
        "{accounts} accounts x {regions} regions x {groups} groups ({} groups, {} instances), {days} days",
        accounts * regions * groups as usize,
        accounts * regions * groups as usize * 3
    );
    println!(
        "runs {}, kills {}, simulate {took:.1} s ({:.0} ms per run), peak RSS {:.0} MB",
        simulation.runs,
        simulation.kills,
        took * 1000.0 / f64::from(simulation.runs.max(1)),
        peak_mb()
    );
    println!(
        "API calls: {total} in all; per account-region min {}, median {}, max {}; per account-region per run {:.1}",
        calls.first().copied().unwrap_or(0),
        calls.get(calls.len() / 2).copied().unwrap_or(0),
        calls.last().copied().unwrap_or(0),
        total as f64 / calls.len().max(1) as f64 / f64::from(simulation.runs.max(1))
    );
    assert_eq!(calls.len(), accounts * regions, "every account-region ran");
}
