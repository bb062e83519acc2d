//! Pause to halt: after `wasmonkey pause`, how long a running experiment
//! can still terminate, how long until the run is stopped, and how long
//! until the plugin has returned.
//!
//! 1. **sim, the run's clock**: the `rolling` plugin terminates one
//!    instance at a time and waits for its group (40 s a replacement); the
//!    kill switch is set at a sweep of moments of the run's clock (a
//!    backend that sets it as its clock passes that moment, as an operator
//!    would). Per moment: terminations journalled after it, and the run
//!    clock until the trip is journalled.
//! 2. **sim, the wall clock, a plugin that never calls the host** (an
//!    endless loop): wall time from the pause to the plugin's end.
//! 3. **moto, the wall clock**: `wasmonkey run --execute` of `rolling`
//!    (moto replaces at once, so kills follow each other as fast as the
//!    calls go) as a child process; the
//!    operator's switch (`wasmonkey pause`) or the account's (`pause
//!    --account`, an SSM parameter) is set at a moment in the run. Per
//!    round: the latest termination intent after `pause` returned, and the
//!    trip after it, from the journal's wall-clock stamps.
//!
//! `WASMONKEY_BENCH_ROUNDS` (default 4) rounds of 3. for each switch.
//! Needs `cargo xtask plugins` and moto (`cargo xtask test` installs it).
//! Run with `cargo bench -p wasmonkey --bench brakes`; the figures are
//! bound by polls, sleeps and graces, not by CPU, so `cargo test -p
//! wasmonkey --bench brakes` (a dev build) measures the same.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops on the first failure"
)]

#[allow(dead_code)]
#[path = "../../tests/all/moto.rs"]
mod moto;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::cloud::{
    Cloud, CloudError, GroupSnapshot, Instance, InstanceQuery, InstanceState, Millis, TerminateVia,
};
use wasmonkey::config::Config;
use wasmonkey::journal::{self, Event};
use wasmonkey::kill_switch::FileSwitch;
use wasmonkey::runner::{self, RunOptions};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rounds() -> usize {
    std::env::var("WASMONKEY_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4)
}

/// The simulated fleet underneath, setting the kill switch of `dir` once
/// its clock passes `pause_at_ms`.
struct PausingAt {
    sim: SimCloud,
    pause_at_ms: Millis,
    dir: PathBuf,
}

#[async_trait::async_trait]
impl Cloud for PausingAt {
    fn kind(&self) -> &'static str {
        "sim"
    }
    fn now_ms(&self) -> Millis {
        self.sim.now_ms()
    }
    async fn sleep_ms(&self, ms: Millis) {
        // Wake at the pause, as an operator's pause lands mid-sleep.
        let now = self.sim.now_ms();
        if now < self.pause_at_ms && now + ms >= self.pause_at_ms {
            self.sim.sleep_ms(self.pause_at_ms - now).await;
            FileSwitch::new(&self.dir).pause("bench").expect("pause");
            self.sim.sleep_ms(now + ms - self.pause_at_ms).await;
        } else {
            self.sim.sleep_ms(ms).await;
        }
    }
    async fn groups(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<Arc<GroupSnapshot>>, CloudError> {
        self.sim.groups(names).await
    }
    async fn instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        self.sim.instances(query).await
    }
    async fn instances_by_id(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        self.sim.instances_by_id(ids).await
    }
    async fn terminate(
        &self,
        id: &str,
        via: TerminateVia,
    ) -> Result<Option<InstanceState>, CloudError> {
        self.sim.terminate(id, via).await
    }
    fn messaging(&self) -> &dyn wasmonkey::notify::Messaging {
        self.sim.messaging()
    }
}

const FLEET: &str = "\
[[group]]\nname = \"web\"\nzones = [\"us-east-1a\", \"us-east-1b\"]\ndesired = 6\nmin = 2\nmax = 8\n\
tags = { chaos = \"opt-in\" }\nlaunch_secs = 30\nlaunch_jitter_secs = 0\ndetect_secs = 10\nshutdown_secs = 5\n\
[[group]]\nname = \"api\"\nzones = [\"us-east-1a\", \"us-east-1b\"]\ndesired = 6\nmin = 2\nmax = 8\n\
tags = { chaos = \"opt-in\" }\nlaunch_secs = 30\nlaunch_jitter_secs = 0\ndetect_secs = 10\nshutdown_secs = 5\n";

/// A sim config in `dir` running `experiment`.
fn sim_config(dir: &Path, experiment: &str) -> Config {
    std::fs::write(dir.join("fleet.toml"), FLEET).unwrap();
    let path = dir.join("wasmonkey.toml");
    std::fs::write(
        &path,
        format!(
            "journal_dir = \"journal\"\nstate_dir = \"state\"\n\
             [backend]\nkind = \"sim\"\nfleet = \"fleet.toml\"\n\
             [plugins]\ndir = {:?}\ncache_dir = {:?}\n\
             [ceiling]\nfuel = 1000000000000000\n\
             [blast_radius]\nmax_terminations = 10\nmin_healthy_per_group = 1\n\
             [recovery]\ntimeout_secs = 600\npoll_secs = 1\n{experiment}",
            root().join("target/plugins").display().to_string(),
            root().join("target/bench-cache").display().to_string(),
        ),
    )
    .unwrap();
    Config::load(&path).unwrap()
}

/// 1. The run's clock on sim.
async fn sim_run_clock() {
    let dir = tempfile::tempdir().unwrap();
    let config = sim_config(
        dir.path(),
        "[[experiment]]\nplugin = \"rolling\"\ngrants = [\"terminate\"]\n\
         params = { count = 8, poll-secs = 5 }\n",
    );
    let (mut kills_after, mut trip_max, mut returned) = (0, 0, 0);
    let moments: Vec<Millis> = (0..20).map(|n| 3_000 + n * 16_700).collect();
    for &pause_at_ms in &moments {
        let state = dir.path().join("state");
        let _ = FileSwitch::new(&state).resume();
        let cloud = Arc::new(PausingAt {
            sim: SimCloud::from_fleet_file(&dir.path().join("fleet.toml"), 9).unwrap(),
            pause_at_ms,
            dir: state,
        });
        let options = RunOptions {
            config: config.path.clone(),
            execute: true,
            journal: Some(dir.path().join(format!("run-{pause_at_ms}.jsonl"))),
            ..RunOptions::default()
        };
        let output = runner::run_on(&config, cloud, 9, &options, std::future::pending())
            .await
            .unwrap();
        let entries = journal::read(&output.journal).unwrap().entries;
        kills_after += entries
            .iter()
            .filter(|e| matches!(e.event, Event::TerminateIntent { .. }))
            .filter(|e| e.clock_ms >= pause_at_ms)
            .count();
        if let Some(trip) = entries
            .iter()
            .find(|e| matches!(e.event, Event::StopTripped { .. }))
        {
            trip_max = trip_max.max(trip.clock_ms.saturating_sub(pause_at_ms));
        }
        returned += usize::from(output.report.experiments.iter().all(|e| e.error.is_none()));
    }
    println!(
        "sim, run clock: {} pause moments over a run of 8 kills 40 s apart: {kills_after} termination(s) after a pause; \
         trip journalled at most {:.1} s (run clock) after the pause; the plugin returned its own outcome in {returned} of {}",
        moments.len(),
        trip_max as f64 / 1000.0,
        moments.len()
    );
}

/// 2. The wall clock on sim, a plugin that never calls the host.
async fn sim_computing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sim_config(
        dir.path(),
        "[[experiment]]\nplugin = \"hostile\"\nparams = { attack = \"loop\" }\n\
         limits = { fuel = 1000000000000000, timeout_secs = 120 }\n",
    );
    config.plugins.dir = root().join("target/test-plugins");
    let mut waits = Vec::new();
    for round in 0..3 {
        let state = dir.path().join("state");
        let _ = FileSwitch::new(&state).resume();
        let sim = Arc::new(SimCloud::from_fleet_file(&dir.path().join("fleet.toml"), 1).unwrap());
        let options = RunOptions {
            config: config.path.clone(),
            execute: true,
            ..RunOptions::default()
        };
        let delay = Duration::from_millis(1500 + 700 * round);
        let pauser = std::thread::spawn(move || {
            std::thread::sleep(delay);
            FileSwitch::new(&state).pause("bench").unwrap();
            Instant::now()
        });
        runner::run_on(&config, sim, 1, &options, std::future::pending())
            .await
            .unwrap();
        let ended = Instant::now();
        waits.push(ended.duration_since(pauser.join().unwrap()).as_secs_f64());
    }
    println!(
        "sim, wall clock, a plugin in an endless loop (timeout 120 s): ended {} s after the pause",
        waits
            .iter()
            .map(|w| format!("{w:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn epoch(at: time::OffsetDateTime) -> f64 {
    at.unix_timestamp_nanos() as f64 / 1e9
}

fn now_epoch() -> f64 {
    epoch(time::OffsetDateTime::now_utc())
}

/// 3. The wall clock on moto, with the operator's or the account's switch.
async fn moto_wall_clock() {
    let moto = moto::Moto::start();
    let admin = moto::admin_config(&moto.endpoint).await;
    let topic = moto::seed_fleet(&admin, moto::SEED_OPTED_IN).await;
    let dir = tempfile::tempdir().unwrap();
    let seed = moto::seed_config(
        &moto.endpoint,
        &topic,
        &root().join("target/plugins").display().to_string(),
        &root().join("target/bench-cache").display().to_string(),
    );
    let experiment = seed.find("[[experiment]]").unwrap();
    let text = format!(
        "{}[recovery]\npoll_secs = 1\n[[experiment]]\nplugin = \"rolling\"\ngrants = [\"terminate\"]\n\
         params = {{ count = 10, poll-secs = 1 }}\n",
        &seed[..experiment]
    );
    let config = dir.path().join("wasmonkey.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let wasmonkey = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
        cmd.args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("XDG_STATE_HOME", dir.path().join("xdg"))
            .env("WASMONKEY_HOST_STATE_DIR", dir.path().join("host"))
            .env("WASMONKEY_LOG", "error");
        cmd
    };
    for (name, flags) in [
        ("operator", vec![]),
        ("account", vec!["--account", "--config", &config]),
    ] {
        let (mut latest_kill, mut latest_trip, mut kills) = (f64::MIN, 0.0_f64, Vec::new());
        let mut ended_first = 0;
        for round in 0..rounds() {
            let journal = dir.path().join(format!("{name}-{round}.jsonl"));
            let mut run = wasmonkey(&["run", "--execute", "--config", &config, "--journal"])
                .arg(&journal)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(400 + 200 * round as u64));
            let mut pause = vec!["pause"];
            pause.extend(flags.iter().copied());
            let asked = now_epoch();
            assert!(wasmonkey(&pause).output().unwrap().status.success());
            let paused = now_epoch();
            let code = run.wait().unwrap().code();
            let mut resume = vec!["resume"];
            resume.extend(flags.iter().copied());
            assert!(wasmonkey(&resume).output().unwrap().status.success());
            let entries = journal::read(&journal).unwrap().entries;
            let intents: Vec<f64> = entries
                .iter()
                .filter(|e| matches!(e.event, Event::TerminateIntent { .. }))
                .map(|e| epoch(e.at))
                .collect();
            kills.push(intents.len());
            if let Some(last) = intents.last() {
                latest_kill = latest_kill.max(last - paused);
            }
            if let Some(trip) = entries
                .iter()
                .find(|e| matches!(e.event, Event::StopTripped { .. }))
            {
                latest_trip = latest_trip.max(epoch(trip.at) - asked);
            }
            if code != Some(6) {
                ended_first += 1;
            }
        }
        println!(
            "moto, wall clock, {name} switch, {} rounds ({ended_first} ended before the pause): kills per run {kills:?} (of 10); \
             the last intent was {:.2} s after `pause` returned (negative: none after it); the trip was journalled at most \
             {:.2} s after `pause` began",
            rounds(),
            latest_kill,
            latest_trip
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(sim_run_clock());
    runtime.block_on(sim_computing());
    runtime.block_on(moto_wall_clock());
}
