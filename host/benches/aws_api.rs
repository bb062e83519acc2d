//! wasmonkey's API economy on AWS: the seed project's experiment on moto,
//! through a counting loopback proxy, run by this build's `wasmonkey` and
//! by a plain boto3 script (`seed_monkey.py`) alternately, so that the
//! wall-time ratio comes from one run on one (noisy) machine.
//!
//! 1. 11 Auto Scaling groups of 3 (10 tagged `chaos=opt-in`): API calls by
//!    action, wall and CPU time, peak RSS, and the recovery times the host
//!    measured; medians of `WASMONKEY_BENCH_ROUNDS` (default 5) rounds.
//! 2. The same experiment in larger fleets (still 10 opted in), 100 groups
//!    unless `WASMONKEY_BENCH_FLEETS` lists sizes (`100,1000`): the calls,
//!    so that their growth with fleet size shows. (moto's filter by tag
//!    grows with the square of the fleet: with 1,000 groups one listing
//!    takes it minutes, and the run's attempt timeout grows to match.)
//!
//! `WASMONKEY_BENCH_AGAINST` names another `wasmonkey` binary (an earlier
//! build, say) to run in the same rounds, so that a change is measured
//! against what it changes on the same moto, in the same minutes.
//!
//! Needs `cargo xtask plugins` and moto (`cargo xtask test` installs it;
//! `WASMONKEY_MOTO` names its `moto_server`). Run with
//! `cargo bench -p wasmonkey --bench aws_api`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark stops on the first failure"
)]

#[allow(dead_code)]
#[path = "../../tests/all/fault_proxy.rs"]
mod fault_proxy;
#[allow(dead_code)]
#[path = "../../tests/all/moto.rs"]
mod moto;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fault_proxy::FaultProxy;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// moto's server, and the Python beside it (boto3 comes with moto).
fn moto_server() -> PathBuf {
    let path = std::env::var_os("WASMONKEY_MOTO")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".toolchains/moto/bin/moto_server"));
    assert!(
        path.is_file(),
        "no moto at {} (run `cargo xtask test` once, or set WASMONKEY_MOTO)",
        path.display()
    );
    path
}

/// What one run of a tool cost.
#[derive(Debug, Clone, Default)]
struct Cost {
    calls: BTreeMap<String, usize>,
    wall: Duration,
    cpu: Duration,
    peak_rss_kb: i64,
    /// Time its calls spent in moto, by action (the proxy's clock).
    upstream: BTreeMap<String, Duration>,
    /// Recovery times the tool reported, in seconds.
    recovery: Vec<f64>,
}

impl Cost {
    fn total_calls(&self) -> usize {
        self.calls.values().sum()
    }

    /// Time its calls spent in moto, all actions together.
    fn in_moto(&self) -> Duration {
        self.upstream.values().sum()
    }
}

/// Run `cmd` to its end: wall time, and its CPU time and peak RSS from
/// `wait4`, which reports them for this child alone (and reaps it).
#[allow(clippy::zombie_processes)]
fn measured(mut cmd: Command) -> (Duration, Duration, i64, String) {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).expect("read stdout");
        text
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be written over.
    #[allow(unsafe_code, reason = "a child's peak memory needs wait4")]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; both out
    // pointers are valid for the call.
    #[allow(unsafe_code, reason = "a child's peak memory needs wait4")]
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    assert_eq!(waited, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {status}"
    );
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    let cpu = time(usage.ru_utime) + time(usage.ru_stime);
    (wall, cpu, usage.ru_maxrss, reader.join().expect("reader"))
}

/// A moto server with a seed fleet of `groups` groups behind a counting
/// proxy, and a run config for it.
struct Lab {
    _moto: moto::Moto,
    proxy: FaultProxy,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Lab {
    async fn new(groups: usize) -> Lab {
        let moto = moto::Moto::start();
        let admin = moto::admin_config(&moto.endpoint).await;
        let topic = moto::seed_fleet(&admin, groups).await;
        let proxy = FaultProxy::start(&moto.endpoint, Vec::new()).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("wasmonkey.toml");
        let plugins = root().join("target/plugins");
        let text = moto::seed_config(
            &proxy.endpoint,
            &topic,
            &plugins.display().to_string(),
            &dir.path().join("cache").display().to_string(),
        );
        // moto filters instances by tag in time that grows with the
        // fleet's square: its answers, not the host, need the patience
        // (the ceilings: 600 s for one call, one host operation).
        let text = if groups > 100 {
            text.replace("attempt_timeout_secs = 60", "attempt_timeout_secs = 600")
                + "\n[limits]\nhost_call_timeout_secs = 600\n"
        } else {
            text
        };
        std::fs::write(&config, text).expect("config");
        Lab {
            _moto: moto,
            proxy,
            dir,
            config,
        }
    }

    fn tally(&self) -> fault_proxy::Tally {
        self.proxy.tally.lock().expect("tally").clone()
    }

    /// Run `cmd` and count the calls it made through the proxy.
    fn cost(&self, cmd: Command) -> (Cost, String) {
        let before = self.tally();
        let (wall, cpu, peak_rss_kb, stdout) = measured(cmd);
        let after = self.tally();
        let mut calls = after.actions;
        for (action, n) in &before.actions {
            if let Some(now) = calls.get_mut(action) {
                *now -= n;
            }
        }
        calls.retain(|_, n| *n > 0);
        let mut upstream = after.upstream;
        for (action, spent) in &before.upstream {
            if let Some(now) = upstream.get_mut(action) {
                *now -= *spent;
            }
        }
        upstream.retain(|action, _| calls.contains_key(action));
        let cost = Cost {
            calls,
            wall,
            cpu,
            peak_rss_kb,
            upstream,
            recovery: Vec::new(),
        };
        (cost, stdout)
    }

    /// A run of the `wasmonkey` binary at `binary`.
    fn wasmonkey(&self, binary: &Path) -> Cost {
        let mut cmd = Command::new(binary);
        cmd.args(["run", "--execute", "--json", "--config"])
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("WASMONKEY_LOG", "warn");
        let (mut cost, stdout) = self.cost(cmd);
        let report: serde_json::Value = serde_json::from_str(&stdout).expect("the --json report");
        let victims = report["victims"].as_array().cloned().unwrap_or_default();
        assert_eq!(victims.len(), moto::SEED_OPTED_IN, "{report:#}");
        cost.recovery = victims
            .iter()
            .map(|v| {
                v["recovery_seconds"]
                    .as_f64()
                    .expect("every victim recovered")
            })
            .collect();
        cost
    }

    fn script(&self) -> Cost {
        let python = moto_server().with_file_name("python");
        let mut cmd = Command::new(python);
        cmd.arg(root().join("host/benches/seed_monkey.py"))
            .arg(&self.proxy.endpoint);
        let (cost, stdout) = self.cost(cmd);
        assert!(
            stdout.starts_with(&format!("{0} victims, {0} recovered", moto::SEED_OPTED_IN)),
            "{stdout}"
        );
        cost
    }
}

/// What the rounds run.
enum Tool {
    /// A `wasmonkey` binary.
    Wasmonkey(PathBuf),
    /// `seed_monkey.py`.
    Script,
}

impl Tool {
    fn run(&self, lab: &Lab) -> Cost {
        match self {
            Tool::Wasmonkey(binary) => lab.wasmonkey(binary),
            Tool::Script => lab.script(),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn calls_line(calls: &BTreeMap<String, usize>) -> String {
    calls
        .iter()
        .map(|(action, n)| format!("{action} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    assert!(
        root().join("target/plugins/classic-monkey.wasm").is_file(),
        "run `cargo xtask plugins` first"
    );
    std::env::set_var("WASMONKEY_MOTO", moto_server());
    let rounds: usize = std::env::var("WASMONKEY_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    // This build, another build to compare it with (a path in
    // `WASMONKEY_BENCH_AGAINST`), and the script, in rounds whose order
    // rotates, so that a drift of moto's speed over the run (it keeps every
    // terminated instance) falls on each tool alike.
    let this_build = PathBuf::from(env!("CARGO_BIN_EXE_wasmonkey"));
    let other_build = std::env::var_os("WASMONKEY_BENCH_AGAINST").map(PathBuf::from);
    let mut tools = vec![("wasmonkey", Tool::Wasmonkey(this_build.clone()))];
    if let Some(other) = &other_build {
        assert!(
            other.is_file(),
            "WASMONKEY_BENCH_AGAINST: no file at {}",
            other.display()
        );
        tools.push(("other build", Tool::Wasmonkey(other.clone())));
    }
    tools.push(("boto3 script", Tool::Script));

    let lab = runtime.block_on(Lab::new(moto::SEED_OPTED_IN + 1));
    // A build's first run compiles the plugin into its cache; not counted.
    for (_, tool) in &tools {
        if let Tool::Wasmonkey(_) = tool {
            drop(tool.run(&lab));
        }
    }
    let mut costs: Vec<Vec<Cost>> = vec![Vec::new(); tools.len()];
    for round in 0..rounds {
        for step in 0..tools.len() {
            let tool = (round + step) % tools.len();
            costs[tool].push(tools[tool].1.run(&lab));
        }
    }
    println!(
        "seed experiment on moto: 11 groups of 3, 10 opted in; median of {rounds} rounds, the tools' order rotating"
    );
    if let Some(other) = &other_build {
        println!("other build: {}", other.display());
    }
    println!(
        "{:<14} {:>6} {:>9} {:>9} {:>10}  calls by action",
        "tool", "calls", "wall ms", "cpu ms", "peak RSS"
    );
    let named = || tools.iter().map(|(name, _)| *name).zip(&costs);
    for (name, costs) in named() {
        let ms = |f: fn(&Cost) -> Duration| {
            median(costs.iter().map(|c| f(c).as_secs_f64() * 1e3).collect())
        };
        let rss = median(
            costs
                .iter()
                .map(|c| c.peak_rss_kb as f64 / 1024.0)
                .collect(),
        );
        let last = costs.last().expect("a round");
        println!(
            "{name:<14} {:>6} {:>9.0} {:>9.0} {:>7.1} MB  {}",
            last.total_calls(),
            ms(|c| c.wall),
            ms(|c| c.cpu),
            rss,
            calls_line(&last.calls)
        );
        assert!(
            costs.iter().all(|c| c.calls == last.calls),
            "{name}: the calls differ between rounds: {costs:#?}"
        );
    }
    println!("time the calls spent in moto, median ms (by action):");
    for (name, costs) in named() {
        let last = costs.last().expect("a round");
        let ms = |spent: &dyn Fn(&Cost) -> Duration| {
            median(costs.iter().map(|c| spent(c).as_secs_f64() * 1e3).collect())
        };
        let by_action: Vec<String> = last
            .upstream
            .keys()
            .map(|action| {
                let spent = ms(&|c: &Cost| c.upstream.get(action).copied().unwrap_or_default());
                format!("{action} {spent:.0}")
            })
            .collect();
        println!(
            "{name:<14} {:>6.0}  {}",
            ms(&Cost::in_moto),
            by_action.join(", ")
        );
    }
    // What each tool spends outside moto: process, runtime, SDK, plugin,
    // disk. The wall ratio mixes it with moto's answers, which differ
    // between the tools (wasmonkey reads the instances' states and tags).
    println!("own time (wall minus time in moto), median ms:");
    for (name, costs) in named() {
        let own = median(
            costs
                .iter()
                .map(|c| c.wall.saturating_sub(c.in_moto()).as_secs_f64() * 1e3)
                .collect(),
        );
        println!("{name:<14} {own:>6.0}");
    }
    let ratio = |a: &[Cost], b: &[Cost]| {
        median(
            a.iter()
                .zip(b)
                .map(|(a, b)| a.wall.as_secs_f64() / b.wall.as_secs_f64())
                .collect(),
        )
    };
    let ours = &costs[0];
    let theirs = costs.last().expect("the script");
    println!(
        "wall time, wasmonkey / boto3 script (median of the rounds' ratios): {:.2}",
        ratio(ours, theirs)
    );
    if other_build.is_some() {
        println!(
            "wall time, wasmonkey / other build (median of the rounds' ratios): {:.3}",
            ratio(ours, &costs[1])
        );
    }
    let recovery: Vec<f64> = ours.iter().flat_map(|c| c.recovery.clone()).collect();
    println!(
        "recovery times wasmonkey measured: median {:.3} s, max {:.3} s",
        median(recovery.clone()),
        recovery.iter().copied().fold(0.0, f64::max)
    );
    drop(lab);

    println!("\nthe same experiment in larger fleets (10 groups opted in), one run each:");
    println!(
        "{:>7} {:<14} {:>6}  calls by action",
        "groups", "tool", "calls"
    );
    let fleets: Vec<usize> = std::env::var("WASMONKEY_BENCH_FLEETS")
        .ok()
        .map(|sizes| {
            sizes
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| vec![100]);
    for groups in fleets {
        let started = Instant::now();
        let lab = runtime.block_on(Lab::new(groups));
        eprintln!(
            "(moto fleet of {groups} groups built in {:.0?})",
            started.elapsed()
        );
        drop(lab.wasmonkey(&this_build));
        for (name, cost) in [
            ("wasmonkey", lab.wasmonkey(&this_build)),
            ("boto3 script", lab.script()),
        ] {
            println!(
                "{groups:>7} {name:<14} {:>6}  {}",
                cost.total_calls(),
                calls_line(&cost.calls)
            );
        }
    }
}
