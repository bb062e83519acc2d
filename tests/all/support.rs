//! Shared set-up: plugin directories, throwaway configs, runs on a
//! simulated fleet the test can inspect afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::config::Config;
use wasmonkey::journal::{self, Event};
use wasmonkey::report::{ExperimentReport, VictimReport};
use wasmonkey::runner::{self, RunOptions, RunOutput};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn built(dir: &str) -> PathBuf {
    let path = root().join("target").join(dir);
    assert!(
        path.join(if dir == "plugins" { "classic-monkey.wasm" } else { "hostile.wasm" }).is_file(),
        "{} has no plugins: build them first with `cargo xtask plugins` (or run the tests with `cargo xtask test`)",
        path.display()
    );
    path
}

/// The strategies we ship, built.
pub fn plugin_dir() -> PathBuf {
    built("plugins")
}

/// The test-only plugins, built.
pub fn test_plugin_dir() -> PathBuf {
    built("test-plugins")
}

/// A compiled-code cache shared by the tests, so each plugin compiles once.
pub fn cache_dir() -> PathBuf {
    root().join("target").join("test-cache")
}

/// A small fleet with fixed timings: a replacement is in service 40 s
/// after an EC2 termination (10 s to notice + 30 s to launch, no jitter).
pub const FLEET: &str = r#"
[[group]]
name = "web"
zones = ["us-east-1a", "us-east-1b"]
desired = 4
min = 2
max = 6
tags = { env = "test", chaos = "opt-in" }
launch_secs = 30
launch_jitter_secs = 0
detect_secs = 10
shutdown_secs = 5

[[group]]
name = "api"
zones = ["us-east-1a", "us-east-1b"]
desired = 3
min = 1
max = 5
tags = { env = "test", chaos = "opt-in" }
launch_secs = 30
launch_jitter_secs = 0
detect_secs = 10
shutdown_secs = 5

[[group]]
name = "vault"
zones = ["us-east-1a"]
desired = 2
min = 2
max = 2
tags = { env = "test", chaos-opt-out = "true" }
launch_secs = 30
launch_jitter_secs = 0

[[group]]
name = "other"
zones = ["us-east-1a"]
desired = 2
min = 1
max = 3
tags = { env = "test" }
launch_secs = 30
launch_jitter_secs = 0

[[instance]]
zone = "us-east-1a"
tags = { Name = "bastion", env = "test" }
"#;

/// Seconds a replacement takes in [`FLEET`].
pub const FLEET_RECOVERY_SECS: f64 = 40.0;

/// A config and fleet in a temporary directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

/// Scope and rules most tests share; `body` adds experiments and overrides.
pub const RULES: &str = r#"
[scope]
groups = ["web", "api", "vault"]
opt_out = "chaos-opt-out"

[blast_radius]
max_terminations = 3
min_healthy_per_group = 1
max_fraction_per_group = 0.5

[recovery]
timeout_secs = 600
poll_secs = 1

[channels.ops]
topic = "chaos-reports"
"#;

/// Write `fleet` and a config made of the backend, plugin dir and `body`.
pub fn setup(fleet: &str, plugins: &Path, body: &str) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("fleet.toml"), fleet).expect("write fleet");
    let config = dir.path().join("wasmonkey.toml");
    let text = format!(
        "journal_dir = \"journal\"\nstate_dir = \"state\"\n[backend]\nkind = \"sim\"\nfleet = \"fleet.toml\"\n[plugins]\ndir = {:?}\ncache_dir = {:?}\n{body}",
        plugins.display().to_string(),
        cache_dir().display().to_string(),
    );
    std::fs::write(&config, text).expect("write config");
    Setup { dir, config }
}

/// A sim config in a new directory with [`FLEET`], the plugins of
/// `plugins` and a compiled-code cache of its own, `cache` in that directory.
pub fn own_cache_config(plugins: &Path, cache: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("fleet.toml"), FLEET).expect("write fleet");
    let config = dir.path().join("wasmonkey.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\n[backend]\nkind = \"sim\"\nfleet = \"fleet.toml\"\n[plugins]\ndir = {:?}\ncache_dir = {cache:?}\n",
            plugins.display().to_string()
        ),
    )
    .expect("write config");
    (dir, config)
}

/// Run a setup on a simulated fleet the caller can inspect afterwards.
pub async fn run(setup: &Setup, seed: u64, execute: bool) -> (RunOutput, Arc<SimCloud>) {
    try_run(setup, seed, execute).await.expect("run completes")
}

/// [`run`], or why the run refused to start.
pub async fn try_run(
    setup: &Setup,
    seed: u64,
    execute: bool,
) -> Result<(RunOutput, Arc<SimCloud>), String> {
    let config = Config::load(&setup.config).expect("config loads");
    let sim = Arc::new(
        SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), seed).expect("fleet loads"),
    );
    let options = RunOptions {
        config: setup.config.clone(),
        execute,
        ..RunOptions::default()
    };
    runner::run_on(&config, sim.clone(), seed, &options, std::future::pending())
        .await
        .map(|output| (output, sim))
        .map_err(|err| format!("{err:#}"))
}

/// What stopped a one-experiment setup's plugin: the run's refusal to start
/// (it would not load under its limits), or its experiment's error, which
/// must then have left no victim.
pub async fn plugin_failure(setup: &Setup, seed: u64, execute: bool) -> Option<String> {
    match try_run(setup, seed, execute).await {
        Err(refused) => Some(refused),
        Ok((output, _)) => {
            assert!(
                output.report.victims.is_empty(),
                "{:#?}",
                output.report.victims
            );
            only_experiment(&output).error.clone()
        }
    }
}

/// The only experiment of a run.
pub fn only_experiment(output: &RunOutput) -> &ExperimentReport {
    assert_eq!(output.report.experiments.len(), 1, "{:#?}", output.report);
    &output.report.experiments[0]
}

/// Victims of one experiment.
pub fn victims_of(output: &RunOutput, experiment: usize) -> Vec<&VictimReport> {
    output
        .report
        .victims
        .iter()
        .filter(|v| v.experiment == experiment)
        .collect()
}

/// Every journal event of a run, in order.
pub fn events(output: &RunOutput) -> Vec<Event> {
    journal::read(&output.journal)
        .expect("journal reads")
        .entries
        .into_iter()
        .map(|e| e.event)
        .collect()
}

/// The instance ids of a group in the fleet, sorted.
pub async fn ids_of(sim: &SimCloud, group: Option<&str>) -> Vec<String> {
    use wasmonkey::cloud::InstanceQuery;
    let all = sim
        .list_instances(&InstanceQuery::default())
        .await
        .expect("list");
    all.into_iter()
        .filter(|i| i.group.as_deref() == group)
        .map(|i| i.id)
        .collect()
}

/// The JSON report a `wasmonkey run --json` printed; the run must have
/// succeeded.
pub fn json_report(output: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).expect("--json prints JSON")
}

/// `wasmonkey ARGS --config CONFIG`, with the host log at `info`.
pub fn wasmonkey(args: &[&str], config: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("WASMONKEY_LOG", "info")
        .output()
        .expect("wasmonkey runs")
}

/// Load `name` from `catalog` under the built-in limits.
pub async fn load(
    catalog: &wasmonkey::plugins::Catalog,
    sandbox: &wasmonkey::sandbox::Sandbox,
    name: &str,
) -> Result<wasmonkey::plugins::Plugin, wasmonkey::plugins::LoadFailure> {
    catalog
        .load(
            sandbox,
            name,
            &wasmonkey::limits::LimitRules::default(),
            &wasmonkey::limits::LimitOverrides::default(),
        )
        .await
}

/// Send SIGTERM to a child the test started (std can only SIGKILL).
pub fn sigterm(child: &std::process::Child) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: a plain kill(2) of the child this test started.
    #[allow(unsafe_code, reason = "std can only SIGKILL a child")]
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM to {pid}");
}
