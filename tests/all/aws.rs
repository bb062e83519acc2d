//! The aws backend through the real SDK against moto, a real AWS API
//! emulator on loopback, checked by independent reads. moto replaces Auto
//! Scaling instances instantly, so recovery *timing* is tested on the
//! simulator; here recovery is only checked to be seen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use wasmonkey::cloud::aws::{AwsCloud, AwsSettings};
use wasmonkey::cloud::TerminateVia;
use wasmonkey::config::Config;
use wasmonkey::journal::Event;
use wasmonkey::runner::{self, RunOptions, RunOutput};

mod faults;

use crate::fault_proxy::{Fault, FaultProxy, Rule};
use crate::moto::{self, Moto};
use crate::receiver::{receiver, Receiver};
use crate::support;

const CLASSIC: &str = "[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\", \"notify\"]\nparams = { channel = \"ops\", poll-secs = 1, recovery-timeout-secs = 30 }\n";

/// A moto server with the test fleet in it, and what it looked like before
/// the host touched it.
struct Lab {
    moto: Moto,
    /// The host's backend settings: short attempts, a few retries.
    settings: AwsSettings,
    /// The tests' own client, for independent reads.
    admin: SdkConfig,
    fleet: moto::Fleet,
    before: BTreeMap<String, String>,
    dir: tempfile::TempDir,
}

impl Lab {
    async fn new() -> Lab {
        let moto = Moto::start();
        let settings: AwsSettings = toml::from_str(&format!(
            "endpoint_url = {:?}\nmax_attempts = 4\nattempt_timeout_secs = 2",
            moto.endpoint
        ))
        .expect("settings");
        let admin = moto::admin_config(&moto.endpoint).await;
        let fleet = moto::build_fleet(&admin).await;
        let before = moto::states(&admin).await;
        Lab {
            moto,
            settings,
            admin,
            fleet,
            before,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A run config for this fleet with `experiments`, reaching AWS at
    /// `endpoint` (moto, or a proxy in front of it).
    fn config(&self, plugins: &Path, endpoint: &str, experiments: &str) -> Config {
        let path = self.dir.path().join("wasmonkey.toml");
        let text = format!(
            "journal_dir = \"journal\"\nstate_dir = \"state\"\n\
             [backend]\nkind = \"aws\"\nendpoint_url = {endpoint:?}\nregion = \"us-east-1\"\n\
             [plugins]\ndir = {:?}\ncache_dir = {:?}\n\
             [scope]\ngroups = [\"web\", \"api\", \"vault\", \"big\"]\n\
             [blast_radius]\nmax_terminations = 3\nmin_healthy_per_group = 1\n\
             [recovery]\ntimeout_secs = 30\npoll_secs = 0.2\n\
             [channels.ops]\ntopic = {:?}\n\
             [report]\nchannel = \"ops\"\n{experiments}",
            plugins.display().to_string(),
            support::cache_dir().display().to_string(),
            self.fleet.topic_arn,
        );
        std::fs::write(&path, text).expect("config");
        Config::load(&path).expect("config loads")
    }

    /// The host's backend, with the host's retry and timeout policy.
    async fn cloud(&self, endpoint: &str, via: TerminateVia) -> AwsCloud {
        AwsCloud::new(&moto::sdk_config(endpoint, &self.settings).await, via)
    }

    /// Run classic-monkey (the shipped plugin, as [`CLASSIC`] sets it up)
    /// against `endpoint`, terminating through EC2.
    async fn run_classic(&self, endpoint: &str, execute: bool, preflight: bool) -> RunOutput {
        let config = self.config(&support::plugin_dir(), endpoint, CLASSIC);
        run(
            &config,
            self.cloud(endpoint, TerminateVia::Ec2).await,
            execute,
            preflight,
        )
        .await
    }

    /// Every instance's state now, read independently of the host.
    async fn states(&self) -> BTreeMap<String, String> {
        moto::states(&self.admin).await
    }

    /// Instances whose state changed since the fleet was built.
    async fn changed(&self) -> Vec<String> {
        let after = self.states().await;
        self.before
            .iter()
            .filter(|(id, state)| after.get(*id) != Some(state))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

async fn run(config: &Config, cloud: AwsCloud, execute: bool, preflight: bool) -> RunOutput {
    let options = RunOptions {
        config: config.path.clone(),
        execute,
        preflight,
        ..RunOptions::default()
    };
    runner::run_on(config, Arc::new(cloud), 5, &options, std::future::pending())
        .await
        .expect("run completes")
}

/// `wasmonkey run --config CONFIG`, with moto's credentials found by the
/// default chain in the environment, and nothing of this machine's own AWS
/// set-up (profile, instance metadata).
fn wasmonkey_run(config: &Config) -> std::process::Command {
    let mut cmd = wasmonkey_with_moto_credentials();
    cmd.args(["run", "--config"]).arg(&config.path);
    cmd
}

/// The `wasmonkey` binary with moto's credentials in the environment for
/// the default chain, and nothing of this machine's own AWS set-up.
fn wasmonkey_with_moto_credentials() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"));
    cmd.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("WASMONKEY_LOG", "warn");
    cmd
}

fn hostile_terminate(targets: &[&str]) -> String {
    format!(
        "[[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\nparams = {{ attack = \"terminate\", targets = \"{}\" }}\n",
        targets.join(",")
    )
}

fn victim_ids(output: &RunOutput) -> Vec<String> {
    let mut ids: Vec<String> = output
        .report
        .victims
        .iter()
        .map(|v| v.instance_id.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_monkey_terminates_exactly_its_victims_and_reports_over_sns() {
    let lab = Lab::new().await;
    let output = lab.run_classic(&lab.moto.endpoint, true, false).await;

    assert_eq!(support::only_experiment(&output).error, None);
    // The account is the one STS names for these credentials (moto's).
    assert_eq!(output.report.account.as_deref(), Some("123456789012"));
    assert_eq!(output.report.region.as_deref(), Some("us-east-1"));
    let mut groups: Vec<String> = output
        .report
        .victims
        .iter()
        .filter_map(|v| v.group.clone())
        .collect();
    groups.sort();
    assert_eq!(groups, ["api", "web"], "{:#?}", output.report.victims);
    for victim in &output.report.victims {
        assert_eq!(victim.status, "terminated");
        assert_eq!(victim.host_verdict, "recovered", "{victim:#?}");
        assert!(victim.recovery_seconds.is_some());
    }
    // An independent read: exactly the victims changed, and they are gone;
    // the opted-out group, the standalone instance and every other instance
    // are as they were.
    let victims = victim_ids(&output);
    assert_eq!(lab.changed().await, victims);
    let after = lab.states().await;
    for victim in &victims {
        assert!(
            after[victim] == "terminated" || after[victim] == "shutting-down",
            "{victim}: {}",
            after[victim]
        );
    }
    assert_eq!(after[&lab.fleet.standalone], "running");
    assert_eq!(
        moto::members(&lab.admin, "web").await.len(),
        4,
        "the group replaced its instance"
    );
    // The SNS messages, read back through the SQS subscription.
    let messages = moto::messages(&lab.admin, &lab.fleet.queue_url).await;
    assert_eq!(
        messages.len(),
        2,
        "the plugin's and the run's notification: {messages:#?}"
    );
    for victim in &victims {
        assert!(
            messages.iter().all(|m| m.contains(victim.as_str())),
            "{victim} missing in {messages:#?}"
        );
    }
    assert!(
        messages.iter().any(|m| m.contains("recovered in")),
        "{messages:#?}"
    );
    assert_eq!(output.report.notifications[0].status, "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_changes_nothing_pages_no_one_and_preflight_checks_the_permission() {
    let lab = Lab::new().await;
    let output = lab.run_classic(&lab.moto.endpoint, false, true).await;
    assert_eq!(output.report.victims.len(), 2);
    assert!(output.report.victims.iter().all(|v| v.status == "dry-run"));
    assert!(
        lab.changed().await.is_empty(),
        "a dry run changed the fleet"
    );
    // Rehearsals page no one: the plugin's message and the run's own are
    // journalled as "would publish", and nothing reaches the topic.
    let experiment = support::only_experiment(&output);
    let notifications: Vec<_> = output.report.every_notification().collect();
    assert_eq!(notifications.len(), 2, "{notifications:#?}");
    for n in &notifications {
        assert_eq!(
            (n.status.name(), n.attempts),
            ("would-publish", 0),
            "{n:#?}"
        );
    }
    assert!(output.report.render_text().contains("would publish"));
    assert_eq!(
        moto::messages(&lab.admin, &lab.fleet.queue_url).await,
        Vec::<String>::new()
    );
    // Each preflight answer is journalled and in the report.
    assert_eq!(experiment.preflight.len(), 2, "{experiment:#?}");
    assert!(experiment.preflight.iter().all(|p| p.permitted));
    assert!(output.report.render_text().contains(": permitted"));

    // Behind a proxy that refuses the permission, preflight denies, naming the IAM action.
    let proxy = FaultProxy::start(
        &lab.moto.endpoint,
        vec![Rule {
            needle: "DryRun=true",
            fault: Fault::Unauthorized,
            times: 100,
        }],
    )
    .await;
    let output = lab.run_classic(&proxy.endpoint, false, true).await;
    assert!(
        output.report.victims.is_empty(),
        "{:#?}",
        output.report.victims
    );
    let experiment = support::only_experiment(&output);
    assert_eq!(experiment.preflight.len(), 2, "{experiment:#?}");
    for answer in &experiment.preflight {
        assert!(!answer.permitted);
        assert!(answer.detail.contains("access denied"), "{answer:#?}");
    }
    let denials = &experiment.denials;
    assert_eq!(denials.len(), 2, "{denials:#?}");
    for denial in denials {
        assert_eq!(denial.rule, "iam-permission");
        assert!(
            denial.message.contains("ec2:TerminateInstances"),
            "{}",
            denial.message
        );
    }
    assert!(lab.changed().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_holds_on_aws_and_auto_scaling_termination_keeps_desired_capacity() {
    let lab = Lab::new().await;
    let web = moto::members(&lab.admin, "web").await;
    let vault = moto::members(&lab.admin, "vault").await;
    let standalone = lab.fleet.standalone.as_str();
    let config = lab.config(
        &support::test_plugin_dir(),
        &lab.moto.endpoint,
        &hostile_terminate(&[&vault[0], standalone, &web[0]]),
    );
    let output = run(
        &config,
        lab.cloud(&lab.moto.endpoint, TerminateVia::AutoScaling)
            .await,
        true,
        false,
    )
    .await;
    let summary = support::only_experiment(&output)
        .summary
        .clone()
        .unwrap_or_default();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "{0}: denied: {0} is outside this experiment's scope",
            vault[0]
        )
    );
    assert_eq!(
        lines[1],
        format!("{standalone}: denied: {standalone} is outside this experiment's scope")
    );
    assert_eq!(lines[2], format!("{}: ok dry-run=false", web[0]));
    assert_eq!(lab.changed().await, [web[0].clone()]);
    // Through Auto Scaling without decrementing: the group is still 4 strong.
    let members = moto::members(&lab.admin, "web").await;
    assert_eq!(members.len(), 4);
    assert!(!members.contains(&web[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_5xx_delays_and_dropped_connections_are_retried() {
    let lab = Lab::new().await;
    let proxy = FaultProxy::start(
        &lab.moto.endpoint,
        vec![
            Rule {
                needle: "Action=DescribeAutoScalingGroups",
                fault: Fault::Throttle,
                times: 2,
            },
            Rule {
                needle: "Action=DescribeInstances",
                fault: Fault::Drop,
                times: 1,
            },
            Rule {
                needle: "Action=TerminateInstances",
                fault: Fault::Unavailable,
                times: 1,
            },
            Rule {
                needle: "Action=TerminateInstances",
                fault: Fault::Throttle,
                times: 1,
            },
            Rule {
                needle: "Action=Publish",
                fault: Fault::Delay(Duration::from_secs(3)),
                times: 1,
            },
        ],
    )
    .await;
    let output = lab.run_classic(&proxy.endpoint, true, false).await;
    assert_eq!(proxy.injected().len(), 6, "{:?}", proxy.injected());
    assert_eq!(support::only_experiment(&output).error, None);
    assert_eq!(output.report.victims.len(), 2);
    assert!(output
        .report
        .victims
        .iter()
        .all(|v| v.status == "terminated" && v.host_verdict == "recovered"));
    assert_eq!(lab.changed().await, victim_ids(&output));
    assert!(!support::events(&output)
        .iter()
        .any(|e| matches!(e, Event::TerminateFailed { .. })));
    // The delayed publish timed out and was retried: delivered at least once.
    assert!(!moto::messages(&lab.admin, &lab.fleet.queue_url)
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_termination_that_keeps_failing_is_reported_truthfully() {
    let lab = Lab::new().await;
    let proxy = FaultProxy::start(
        &lab.moto.endpoint,
        vec![Rule {
            needle: "Action=TerminateInstances",
            fault: Fault::Unavailable,
            times: 1000,
        }],
    )
    .await;
    let output = lab.run_classic(&proxy.endpoint, true, false).await;
    assert!(output.report.complete);
    // Two groups, each termination tried max_attempts times, all refused.
    assert_eq!(proxy.injected().len(), 2 * 4, "{:?}", proxy.injected());
    assert_eq!(output.report.victims.len(), 2);
    for victim in &output.report.victims {
        assert_eq!(victim.status, "failed", "{victim:#?}");
        assert_eq!(victim.host_verdict, "unchecked");
    }
    let failures = support::events(&output)
        .into_iter()
        .filter(|e| matches!(e, Event::TerminateFailed { .. }))
        .count();
    assert_eq!(failures, 2);
    assert!(lab.changed().await.is_empty(), "nothing may have changed");
    assert!(!output.report.succeeded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_that_keeps_failing_is_attempted_three_times_in_all() {
    let lab = Lab::new().await;
    let proxy = FaultProxy::start(
        &lab.moto.endpoint,
        vec![Rule {
            needle: "Action=Publish",
            fault: Fault::Unavailable,
            times: 1000,
        }],
    )
    .await;
    // A dry run whose operator asked for its notifications.
    let mut config = lab.config(&support::plugin_dir(), &proxy.endpoint, CLASSIC);
    config.notify_dry_runs = true;
    let cloud = lab.cloud(&proxy.endpoint, TerminateVia::Ec2).await;
    let output = run(&config, cloud, false, false).await;
    // classic-monkey's message and the run's own: each journalled, each
    // sent at most notify::ATTEMPTS times, with no SDK retries on top,
    // each subject saying it is a dry run.
    assert_eq!(support::only_experiment(&output).notifications.len(), 1);
    let notifications: Vec<_> = output.report.every_notification().collect();
    assert_eq!(notifications.len(), 2, "{notifications:#?}");
    for n in &notifications {
        assert_eq!((n.status.name(), n.attempts), ("failed", 3), "{n:#?}");
        assert!(n.subject.starts_with("[dry run] "), "{n:#?}");
    }
    assert_eq!(proxy.requests("Publish"), 2 * 3);
}

#[test]
fn the_cli_runs_on_aws_with_the_default_credential_chain() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let config = lab.config(&support::plugin_dir(), &lab.moto.endpoint, CLASSIC);
    let output = wasmonkey_run(&config)
        .args(["--execute", "--json"])
        .output()
        .unwrap();
    let report = support::json_report(&output);
    assert_eq!(report["backend"], "aws");
    let mut victims: Vec<String> = report["victims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["instance_id"].as_str().unwrap().to_owned())
        .collect();
    victims.sort();
    assert_eq!(victims.len(), 2);
    assert_eq!(runtime.block_on(lab.changed()), victims);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fleet_is_listed_whole() {
    let lab = Lab::new().await;
    moto::add_group(&lab.admin, "big", 120, moto::OPTED_IN).await;
    let proxy = FaultProxy::start(&lab.moto.endpoint, Vec::new()).await;
    let config = lab.config(
        &support::test_plugin_dir(),
        &proxy.endpoint,
        "[[experiment]]\nplugin = \"hostile\"\nparams = { attack = \"list\" }\n",
    );
    let cloud = lab
        .cloud(&proxy.endpoint, TerminateVia::Ec2)
        .await
        .with_page_size(5);
    let output = run(&config, cloud, false, false).await;
    let summary = support::only_experiment(&output)
        .summary
        .clone()
        .unwrap_or_default();
    let seen = summary.split(',').filter(|id| id.starts_with("i-")).count();
    // web 4 + api 3 + big 120; vault opted out.
    assert_eq!(seen, 127, "{summary}");
    // moto answers MaxResults with a single page, so the paging itself
    // (the SDK's paginator following NextToken) is not exercised here.
    assert!(proxy.requests("DescribeInstances") >= 1);
}

#[test]
fn ctrl_c_and_sigterm_end_the_run_cleanly_and_the_journal_says_so() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    // On AWS a sleep is real: this plugin would sleep for an hour.
    let config = lab.config(
        &support::test_plugin_dir(),
        &lab.moto.endpoint,
        "[[experiment]]\nplugin = \"hostile\"\nparams = { attack = \"sleep-forever\" }\n",
    );
    for signal in ["-TERM", "-INT"] {
        let journal = lab.dir.path().join(format!("interrupted{signal}.jsonl"));
        let child = wasmonkey_run(&config)
            .arg("--json")
            .arg("--journal")
            .arg(&journal)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the experiment has started, then interrupt.
        let started = std::time::Instant::now();
        wait_for_journal(&journal, "experiment-started");
        std::thread::sleep(Duration::from_millis(500));
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let output = child.wait_with_output().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run did not stop on {signal}"
        );
        assert_eq!(
            output.status.code(),
            Some(8),
            "{signal}: an interrupted run has its own exit code"
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["interrupted"], true);
        assert_eq!(report["outcome"], "interrupted");
        assert_eq!(report["complete"], true);
        assert_eq!(
            report["experiments"][0]["error"],
            "interrupted by the operator"
        );
        let last = std::fs::read_to_string(&journal).unwrap();
        let last = last.lines().last().unwrap();
        assert!(
            last.contains("\"event\":\"run-finished\"") && last.contains("\"interrupted\":true"),
            "{last}"
        );
    }
}

/// Runs killed with SIGKILL at random moments in the crash test.
const CRASH_RUNS: usize = 50;

/// What SIGKILL at one moment left behind, checked against what moto shows.
#[derive(Debug, Default)]
struct Crashes {
    no_journal: usize,
    cut_short: usize,
    unfinished_terminations: usize,
    terminations: usize,
}

/// Instances moto shows going away or gone.
fn gone(states: &BTreeMap<String, String>) -> std::collections::BTreeSet<String> {
    states
        .iter()
        .filter(|(_, s)| matches!(s.as_str(), "shutting-down" | "terminated"))
        .map(|(id, _)| id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_any_moment_leaves_a_journal_that_tells_the_truth() {
    use rand::{Rng as _, SeedableRng as _};
    let lab = Lab::new().await;
    // Each termination is held 300 ms on its way to moto, so that kills
    // often land between an intent and its outcome.
    let proxy = FaultProxy::start(
        &lab.moto.endpoint,
        vec![Rule {
            needle: "Action=TerminateInstances",
            fault: Fault::Delay(Duration::from_millis(300)),
            times: usize::MAX,
        }],
    )
    .await;
    let config = lab.config(&support::plugin_dir(), &proxy.endpoint, CLASSIC);
    // One whole run first: the kills are spread over its length, so they
    // land all along a run however fast the host gets.
    let started = std::time::Instant::now();
    let whole = tokio::process::Command::from(wasmonkey_run(&config))
        .arg("--execute")
        .arg("--journal")
        .arg(lab.dir.path().join("whole.jsonl"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("wasmonkey runs");
    assert!(whole.success(), "the uninterrupted run failed: {whole:?}");
    let span = started.elapsed();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(50);
    let mut seen = Crashes::default();
    for run in 0..CRASH_RUNS {
        let before = gone(&lab.states().await);
        let journal = lab.dir.path().join(format!("crash-{run}.jsonl"));
        let mut child = tokio::process::Command::from(wasmonkey_run(&config))
            .arg("--execute")
            .arg("--journal")
            .arg(&journal)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("wasmonkey starts");
        let at = span.mul_f64(rng.random_range(0.0..1.0));
        tokio::time::sleep(at).await;
        child.start_kill().expect("SIGKILL");
        let _ = child.wait().await;
        // A termination the proxy still holds reaches moto after the kill.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let newly_gone: Vec<String> = gone(&lab.states().await)
            .difference(&before)
            .cloned()
            .collect();
        let why = format!("run {run}, killed after {at:?}");
        let replay = match wasmonkey::journal::read(&journal) {
            Ok(replay) => replay,
            Err(err) => {
                let err = format!("{err:#}");
                assert!(
                    err.contains("no journal entry") || err.contains("opening journal"),
                    "{why}: {err}"
                );
                assert!(
                    newly_gone.is_empty(),
                    "{why}: {newly_gone:?} went without a journal"
                );
                seen.no_journal += 1;
                continue;
            }
        };
        let events: Vec<&Event> = replay.entries.iter().map(|e| &e.event).collect();
        let intents: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::TerminateIntent { instance_id, .. } => Some(instance_id.as_str()),
                _ => None,
            })
            .collect();
        for id in &newly_gone {
            assert!(
                intents.contains(&id.as_str()),
                "{why}: moto shows {id} terminated, but the journal has no intent for it"
            );
        }
        for e in &events {
            if let Event::TerminateDone {
                instance_id,
                dry_run: false,
                ..
            } = e
            {
                assert!(
                    newly_gone.contains(instance_id),
                    "{why}: the journal says {instance_id} was terminated; moto does not"
                );
            }
        }
        // `wasmonkey report` renders what the journal holds and names every
        // termination whose outcome it lacks.
        let report = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
            .arg("report")
            .arg(&journal)
            .output()
            .expect("report runs");
        let text = String::from_utf8_lossy(&report.stdout);
        assert!(report.status.success(), "{why}: report failed: {text}");
        let rendered = wasmonkey::report::Report::from_journal(&replay, &journal);
        for victim in rendered.victims.iter().filter(|v| v.status == "unknown") {
            assert!(
                text.contains(&format!(
                    "{} was about to be terminated when the journal ends",
                    victim.instance_id
                )),
                "{why}: {text}"
            );
            seen.unfinished_terminations += 1;
        }
        seen.cut_short += usize::from(!rendered.complete);
        seen.terminations += newly_gone.len();
    }
    eprintln!("{CRASH_RUNS} runs killed within {span:?}: {seen:?}");
    // The kills landed all along the runs: before the journal, mid-run, and
    // between an intent and its outcome.
    assert!(seen.cut_short >= CRASH_RUNS / 2, "{seen:?}");
    assert!(seen.terminations > 0, "{seen:?}");
    assert!(
        seen.no_journal + seen.unfinished_terminations > 0,
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_experiment_costs_no_more_api_calls_than_the_floor_and_one() {
    let moto = Moto::start();
    let admin = moto::admin_config(&moto.endpoint).await;
    let topic = moto::seed_fleet(&admin, moto::SEED_OPTED_IN + 1).await;
    let proxy = FaultProxy::start(&moto.endpoint, Vec::new()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wasmonkey.toml");
    std::fs::write(
        &path,
        moto::seed_config(
            &proxy.endpoint,
            &topic,
            &support::plugin_dir().display().to_string(),
            &support::cache_dir().display().to_string(),
        ),
    )
    .expect("config");
    let config = Config::load(&path).expect("config loads");
    let settings: AwsSettings = toml::from_str("").expect("settings");
    let cloud = AwsCloud::new(
        &moto::sdk_config(&proxy.endpoint, &settings).await,
        TerminateVia::Ec2,
    );
    let output = run(&config, cloud, true, false).await;

    assert_eq!(support::only_experiment(&output).error, None);
    let victims = &output.report.victims;
    assert_eq!(victims.len(), moto::SEED_OPTED_IN, "{victims:#?}");
    for victim in victims {
        assert_eq!(victim.host_verdict, "recovered", "{victim:#?}");
    }
    // The floor is 15: one look at the report's topic, one question to STS
    // (the account the run acts in), one read of the groups, ten
    // terminations, one look at the victims, one publish. The view adds one
    // read of the instances' states and tags (the scope's survey, which the
    // plugin's listing reuses); the victims' states come in the answers to
    // their terminations.
    let actions = proxy.tally.lock().expect("tally").actions.clone();
    eprintln!("the seed experiment's calls: {actions:?}");
    let count = |action: &str| actions.get(action).copied().unwrap_or(0);
    assert_eq!(
        count("TerminateInstances"),
        moto::SEED_OPTED_IN,
        "{actions:?}"
    );
    assert_eq!(count("Publish"), 1, "{actions:?}");
    // The report channel, checked before the run starts.
    assert_eq!(count("GetTopicAttributes"), 1, "{actions:?}");
    assert!(count("DescribeAutoScalingGroups") <= 2, "{actions:?}");
    assert_eq!(count("DescribeInstances"), 1, "{actions:?}");
    assert_eq!(count("GetCallerIdentity"), 1, "{actions:?}");
    assert!(actions.values().sum::<usize>() <= 16, "{actions:?}");
    // The host's own count says the same of STS.
    assert_eq!(
        output
            .api_calls
            .get(&("sts".to_owned(), "GetCallerIdentity".to_owned())),
        Some(&1),
        "{:?}",
        output.api_calls
    );
}

/// A CloudWatch alarm in moto, in `state`.
async fn alarm(sdk: &SdkConfig, name: &str, state: aws_sdk_cloudwatch::types::StateValue) {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    cloudwatch
        .put_metric_alarm()
        .alarm_name(name)
        .namespace("Checkout")
        .metric_name("5xx")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(10.0)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .expect("put alarm");
    cloudwatch
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason("set by the test")
        .send()
        .await
        .expect("set alarm state");
}

const CHECKOUT_ALARM: &str =
    "[stop_conditions.checkout]\nkind = \"alarm\"\nalarms = [\"checkout-5xx\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloudwatch_alarm_in_alarm_stops_the_run_and_one_in_ok_does_not() {
    use aws_sdk_cloudwatch::types::StateValue;
    let lab = Lab::new().await;
    let web = moto::members(&lab.admin, "web").await;
    let body = format!("{CHECKOUT_ALARM}{}", hostile_terminate(&[&web[0]]));
    let config = lab.config(&support::test_plugin_dir(), &lab.moto.endpoint, &body);

    alarm(&lab.admin, "checkout-5xx", StateValue::Alarm).await;
    let cloud = lab.cloud(&lab.moto.endpoint, TerminateVia::Ec2).await;
    let output = run(&config, cloud, true, false).await;
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert_eq!(stop.condition, "checkout");
    assert!(
        stop.saw
            .contains("checkout-5xx is in ALARM: set by the test"),
        "{stop:?}"
    );
    assert!(output.report.experiments.is_empty());
    assert!(lab.changed().await.is_empty(), "an instance changed");

    alarm(&lab.admin, "checkout-5xx", StateValue::Ok).await;
    let cloud = lab.cloud(&lab.moto.endpoint, TerminateVia::Ec2).await;
    let output = run(&config, cloud, true, false).await;
    assert_eq!(output.report.stopped, None);
    assert_eq!(lab.changed().await, [web[0].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_describe_alarms_fails_closed() {
    use aws_sdk_cloudwatch::types::StateValue;
    let lab = Lab::new().await;
    alarm(&lab.admin, "checkout-5xx", StateValue::Ok).await;
    let web = moto::members(&lab.admin, "web").await;
    let proxy = FaultProxy::start(
        &lab.moto.endpoint,
        vec![Rule {
            needle: "DescribeAlarms",
            fault: Fault::Unavailable,
            times: 1000,
        }],
    )
    .await;
    let body = format!("{CHECKOUT_ALARM}{}", hostile_terminate(&[&web[0]]));
    let config = lab.config(&support::test_plugin_dir(), &proxy.endpoint, &body);
    let cloud = lab.cloud(&proxy.endpoint, TerminateVia::Ec2).await;
    let output = run(&config, cloud, true, false).await;
    // The alarm's state is unknown: nothing runs, and the report says why.
    assert!(proxy.requests("DescribeAlarms") >= 1);
    assert_eq!(proxy.requests("TerminateInstances"), 0);
    let stop = output.report.stopped.as_ref().expect("stopped");
    assert!(stop.saw.contains("cannot tell"), "{stop:?}");
    assert!(lab.changed().await.is_empty());
}

/// `wasmonkey ARGS` with moto's credentials in the environment (as
/// [`wasmonkey_run`]) and an operator state directory of its own.
fn wasmonkey_cli(lab: &Lab, args: &[&str]) -> std::process::Output {
    wasmonkey_with_moto_credentials()
        .args(args)
        .env("XDG_STATE_HOME", lab.dir.path().join("xdg"))
        .env("WASMONKEY_HOST_STATE_DIR", lab.dir.path().join("host"))
        .output()
        .expect("wasmonkey runs")
}

fn said(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A copy of `config`'s file named `name`, with each `(from, to)` replaced.
fn variant(config: &Config, name: &str, edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(&config.path).expect("config text");
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in {text}");
        text = text.replace(from, to);
    }
    let path = config.path.with_file_name(name);
    std::fs::write(&path, text).expect("variant");
    path.display().to_string()
}

/// No Rust debug output of the SDK's reaches the operator.
fn no_debug_dump(text: &str) {
    for dump in [
        "DispatchFailure",
        "ConnectorError",
        "Some(",
        " { ",
        "source:",
    ] {
        assert!(!text.contains(dump), "{dump:?} in {text}");
    }
}

#[test]
fn the_account_switch_stops_a_run_started_elsewhere_and_fails_closed() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let config = lab.config(&support::plugin_dir(), &lab.moto.endpoint, CLASSIC);
    // Another operator, on another host: another config, another state.
    let here = config.path.display().to_string();
    let elsewhere = variant(
        &config,
        "elsewhere.toml",
        &[("state_dir = \"state\"", "state_dir = \"elsewhere\"")],
    );
    let paused = wasmonkey_cli(
        &lab,
        &[
            "pause",
            "--account",
            "--config",
            &here,
            "--reason",
            "region freeze",
        ],
    );
    let text = said(&paused);
    assert!(paused.status.success(), "{text}");
    assert!(
        text.contains("set the account switch (ssm:/wasmonkey/kill-switch in us-east-1)"),
        "{text}"
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--config", &elsewhere]);
    let text = said(&run);
    assert_eq!(run.status.code(), Some(6), "{text}");
    assert!(text.contains("region freeze"), "{text}");
    assert!(runtime.block_on(lab.changed()).is_empty());
    let status = said(&wasmonkey_cli(&lab, &["status", "--config", &elsewhere]));
    assert!(status.contains("account switch SET"), "{status}");

    // Cleared from the other host, runs go on.
    let resumed = wasmonkey_cli(&lab, &["resume", "--account", "--config", &elsewhere]);
    assert!(
        said(&resumed).contains("cleared the account switch"),
        "{}",
        said(&resumed)
    );
    let status = said(&wasmonkey_cli(&lab, &["status", "--config", &here]));
    assert!(status.contains("kill switch: clear"), "{status}");

    // A parameter that is not a pause counts as set.
    let ssm = aws_sdk_ssm::Client::new(&lab.admin);
    runtime
        .block_on(
            ssm.put_parameter()
                .name("/wasmonkey/kill-switch")
                .value("not a pause")
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send(),
        )
        .expect("put");
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--config", &here]);
    let text = said(&run);
    assert_eq!(run.status.code(), Some(6), "{text}");
    assert!(
        text.contains("cannot be trusted (its value is not a pause"),
        "{text}"
    );
    assert!(runtime.block_on(lab.changed()).is_empty());
}

#[test]
fn each_sdk_failure_is_one_line_that_says_what_to_check() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let config = lab.config(&support::plugin_dir(), &lab.moto.endpoint, CLASSIC);
    let endpoint = format!("endpoint_url = {:?}", lab.moto.endpoint);

    // Nothing listens: the switch cannot be read, so the run is paused.
    let unreachable = variant(
        &config,
        "unreachable.toml",
        &[(
            &endpoint,
            "endpoint_url = \"http://127.0.0.1:9\"\nmax_attempts = 1",
        )],
    );
    let status = said(&wasmonkey_cli(&lab, &["status", "--config", &unreachable]));
    assert!(
        status.contains(
            "backend failure: ssm:GetParameter: endpoint unreachable (dispatch failure: io error"
        ) && status.contains("); check the network, backend.endpoint_url and backend.region"),
        "{status}"
    );
    no_debug_dump(&status);
    // A dry run (which publishes nothing) starts, and the unreadable
    // switch pauses it; under --execute the report's topic cannot be
    // checked either, and the run does not start.
    let run = wasmonkey_cli(&lab, &["run", "--config", &unreachable]);
    assert_eq!(run.status.code(), Some(6), "{}", said(&run));
    no_debug_dump(&said(&run));
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--config", &unreachable]);
    let text = said(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(
        text.contains("channel ops: topic ")
            && text.contains("cannot be reached: backend failure: sns:GetTopicAttributes: endpoint unreachable (dispatch failure: io error")
            && text.contains("nothing was run"),
        "{text}"
    );
    no_debug_dump(&text);

    // No credentials anywhere in the default chain, and an instance
    // metadata service (on loopback) that refuses, as IMDS does off EC2:
    // the SDK's own log of that refusal is a debug dump, never shown.
    let imds = runtime.block_on(refusing_server());
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_wasmonkey"))
        .args(["status", "--config", &config.path.display().to_string()])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", lab.dir.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            lab.dir.path().join("no-credentials"),
        )
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .env("XDG_STATE_HOME", lab.dir.path().join("xdg"))
        .output()
        .expect("runs");
    let status = said(&status);
    assert!(
        status.contains("backend failure: ssm:GetParameter: no credentials (")
            && status.contains("); check the default credential chain (AWS_PROFILE or backend.profile, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, SSO, an instance role)"),
        "{status}"
    );
    no_debug_dump(&status);

    // A region AWS does not have: refused before any call.
    let nowhere = variant(
        &config,
        "nowhere.toml",
        &[("region = \"us-east-1\"", "region = \"us-east-9\"")],
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--config", &nowhere]);
    let text = said(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(
        text.contains("backend.region: \"us-east-9\" is not an AWS region (regions like it: us-east-1, us-east-2, us-gov-east-1, us-gov-west-1, us-iso-east-1, us-iso-west-1, us-isob-east-1, us-west-1, us-west-2); if it is one newer than this build, set backend.unlisted_region = true"),
        "{text}"
    );

    // Access denied: the IAM action to grant, by name.
    let proxy = runtime.block_on(FaultProxy::start(
        &lab.moto.endpoint,
        vec![Rule {
            needle: "Action=DescribeInstances",
            fault: Fault::Unauthorized,
            times: 100,
        }],
    ));
    let denied = variant(
        &config,
        "denied.toml",
        &[(&endpoint, &format!("endpoint_url = {:?}", proxy.endpoint))],
    );
    // The proxy is served by the runtime's worker threads meanwhile.
    let plan = wasmonkey_cli(&lab, &["plan", "--config", &denied]);
    let text = said(&plan);
    assert!(!plan.status.success(), "{text}");
    assert!(
        text.contains("ec2:DescribeInstances: access denied: UnauthorizedOperation: ")
            && text.contains("; grant the IAM action ec2:DescribeInstances to these credentials"),
        "{text}"
    );
    no_debug_dump(&text);
}

/// An HTTP server on loopback that answers every request 403, served by
/// the runtime it is started on; its URL.
async fn refusing_server() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0_u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 9\r\nconnection: close\r\n\r\nforbidden")
                    .await;
            });
        }
    });
    url
}

#[test]
fn a_run_whose_control_plane_goes_away_mid_run_never_ends_succeeded() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut lab = runtime.block_on(Lab::new());
    let config = lab.config(
        &support::plugin_dir(),
        &lab.moto.endpoint,
        "[[experiment]]\nplugin = \"rolling\"\ngrants = [\"terminate\", \"notify\"]\n\
         params = { count = 3, poll-secs = 1, recovery-timeout-secs = 3 }\n",
    );
    // Without the account's switch, which would fail closed (paused) once
    // SSM is gone too: what is left to judge is what the run saw.
    let endpoint = format!("endpoint_url = {:?}", lab.moto.endpoint);
    let path = variant(
        &config,
        "gone.toml",
        &[(&endpoint, &format!("{endpoint}\naccount_switch = \"off\""))],
    );
    let config = Config::load(std::path::Path::new(&path)).unwrap();
    let journal = lab.dir.path().join("gone.jsonl");
    let child = wasmonkey_run(&config)
        .args(["--execute", "--json", "--journal"])
        .arg(&journal)
        .stdout(std::process::Stdio::piped())
        // A warning for every failed poll: kept out of the test's output.
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once the first victim is gone, so is the control plane.
    wait_for_journal(&journal, "\"terminate-done\"");
    lab.moto.stop();
    let output = child.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_ne!(output.status.code(), Some(0), "{report:#}");
    assert_ne!(output.status.code(), Some(1), "it acted: {report:#}");
    assert_ne!(report["outcome"], "succeeded", "{report:#}");
    assert_eq!(report["complete"], true, "{report:#}");
    assert!(
        report["victims"].as_array().is_some_and(|v| !v.is_empty()),
        "{report:#}"
    );
    eprintln!("outcome with the control plane gone: {}", report["outcome"]);
}

/// Wait (a minute at most) until the journal a running child writes holds
/// `needle`.
fn wait_for_journal(journal: &Path, needle: &str) {
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(journal).is_ok_and(|j| j.contains(needle)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{needle} never reached {}",
            journal.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many times `needle` is in the journal a running child writes.
fn journal_count(journal: &Path, needle: &str) -> usize {
    std::fs::read_to_string(journal).map_or(0, |j| j.matches(needle).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminate_whose_answer_is_lost_then_throttled_is_settled_and_spaces_the_next_kill() {
    let lab = Lab::new().await;
    // The first terminate reaches moto and its answer is lost; every retry
    // is throttled.
    let proxy = FaultProxy::start(
        &lab.moto.endpoint,
        vec![
            Rule {
                needle: "Action=TerminateInstances",
                fault: Fault::LoseAnswer,
                times: 1,
            },
            Rule {
                needle: "Action=TerminateInstances",
                fault: Fault::Throttle,
                times: 3,
            },
        ],
    )
    .await;
    let web = moto::members(&lab.admin, "web").await;
    let config = lab.config(
        &support::test_plugin_dir(),
        &proxy.endpoint,
        &hostile_terminate(&[&web[0]]),
    );
    let path = variant(
        &config,
        "spaced.toml",
        &[(
            "min_healthy_per_group = 1",
            "min_healthy_per_group = 1\nmin_time_between_kills = \"36h\"",
        )],
    );
    let config = Config::load(Path::new(&path)).expect("config");
    let cloud = lab.cloud(&proxy.endpoint, TerminateVia::Ec2).await;
    let output = run(&config, cloud, true, false).await;
    assert_eq!(
        proxy.requests("TerminateInstances"),
        4,
        "{:?}",
        proxy.injected()
    );
    let events = support::events(&output);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::TerminateFailed { .. })),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::TerminateDone { instance_id, confirmed_after: Some(_), .. } if *instance_id == web[0]
        )),
        "{events:#?}"
    );
    assert_eq!(lab.changed().await, vec![web[0].clone()]);
    // The history counts it: the next run may not kill in the group.
    let history = wasmonkey::history::SqliteHistory::in_state_dir(&lab.dir.path().join("state"))
        .expect("history");
    let last = wasmonkey::history::History::last_kills(&history, false).expect("last kills");
    assert!(last.contains_key("web"), "{last:?}");
    let path = variant(&config, "again.toml", &[(&web[0], &web[1])]);
    let again = Config::load(Path::new(&path)).expect("config");
    let cloud = lab.cloud(&proxy.endpoint, TerminateVia::Ec2).await;
    let output = run(&again, cloud, true, false).await;
    assert_eq!(
        proxy.requests("TerminateInstances"),
        4,
        "the group was killed again within the gap"
    );
    assert!(support::events(&output).iter().any(|e| matches!(
        e,
        Event::Denied { rule, .. } if rule.contains("min-time-between-kills")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_recovery_wait_ends_interrupted_and_names_every_victim() {
    let lab = Lab::new().await;
    let proxy = FaultProxy::start(&lab.moto.endpoint, Vec::new()).await;
    // Once both terminates went through, no read answers: the host waits
    // for a recovery it cannot see (up to the config's 30 s).
    proxy.then(
        "Action=TerminateInstances",
        2,
        vec![
            Rule {
                needle: "Action=DescribeAutoScalingGroups",
                fault: Fault::Throttle,
                times: usize::MAX,
            },
            Rule {
                needle: "Action=DescribeInstances",
                fault: Fault::Throttle,
                times: usize::MAX,
            },
        ],
    );
    let web = moto::members(&lab.admin, "web").await;
    let api = moto::members(&lab.admin, "api").await;
    let config = lab.config(
        &support::test_plugin_dir(),
        &proxy.endpoint,
        &hostile_terminate(&[&web[0], &api[0]]),
    );
    let journal = lab.dir.path().join("waiting.jsonl");
    let child = wasmonkey_run(&config)
        .args(["--execute", "--json", "--journal"])
        .arg(&journal)
        .stdout(std::process::Stdio::piped())
        // A warning for every failed poll.
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wasmonkey runs");
    let started = std::time::Instant::now();
    while journal_count(&journal, "\"terminate-done\"") < 2 {
        assert!(started.elapsed() < Duration::from_secs(60), "no kills");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The plugin has returned; the host is watching.
    std::thread::sleep(Duration::from_millis(1500));
    let text = std::fs::read_to_string(&journal).expect("journal");
    assert!(
        !text.contains("\"experiment-finished\""),
        "not in the recovery wait: {text}"
    );
    support::sigterm(&child);
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(8));
    for report in [
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("JSON"),
        serde_json::from_slice(
            &wasmonkey_with_moto_credentials()
                .args(["report", "--json"])
                .arg(&journal)
                .output()
                .expect("report")
                .stdout,
        )
        .expect("JSON"),
    ] {
        assert_eq!(report["outcome"], "interrupted", "{report:#}");
        let mut ids: Vec<String> = report["victims"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["instance_id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        let mut expected = vec![web[0].clone(), api[0].clone()];
        expected.sort();
        assert_eq!(ids, expected, "{report:#}");
    }
    let last = std::fs::read_to_string(&journal).expect("journal");
    let last = last.lines().last().expect("a line");
    assert!(
        last.contains("\"run-finished\"") && last.contains("\"interrupted\":true"),
        "{last}"
    );
}

#[test]
fn a_run_whose_control_plane_goes_away_before_any_kill_is_exactly_inconclusive() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut lab = runtime.block_on(Lab::new());
    // The plugin checks the group target, sleeps, and checks it again,
    // reporting each failure and returning normally: what the run could
    // not see is all that is wrong with it.
    let config = lab.config(
        &support::test_plugin_dir(),
        &lab.moto.endpoint,
        "[targets.web-up]\ngroup = \"web\"\nmin_healthy = 1\n\
         [[experiment]]\nplugin = \"hostile\"\ngrants = [\"probe-targets\"]\n\
         params = { attack = \"check\", targets = \"sleep:3000,web-up\" }\n",
    );
    // Without the run's report channel (an undelivered report is
    // inconclusive by itself) and the account's switch (it fails closed).
    let endpoint = format!("endpoint_url = {:?}", lab.moto.endpoint);
    let path = variant(
        &config,
        "blind.toml",
        &[
            ("[report]\nchannel = \"ops\"\n", ""),
            (&endpoint, &format!("{endpoint}\naccount_switch = \"off\"")),
        ],
    );
    let config = Config::load(Path::new(&path)).expect("config");
    let journal = lab.dir.path().join("blind.jsonl");
    let child = wasmonkey_run(&config)
        .args(["--execute", "--json", "--journal"])
        .arg(&journal)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wasmonkey runs");
    wait_for_journal(&journal, "\"experiment-started\"");
    lab.moto.stop();
    let output = child.wait_with_output().expect("wait");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(output.status.code(), Some(7), "{report:#}");
    assert_eq!(report["outcome"], "inconclusive", "{report:#}");
    assert!(
        report["unknowns"].as_array().is_some_and(|u| u
            .iter()
            .any(|u| u.as_str().is_some_and(|u| u.contains("web-up")))),
        "{report:#}"
    );
}

#[test]
fn a_history_another_process_holds_at_the_runs_last_write_is_waited_for() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let lab = runtime.block_on(Lab::new());
    let web = runtime.block_on(moto::members(&lab.admin, "web"));
    // One kill, then a real 3 s sleep in the plugin: time to take the lock.
    let config = lab.config(
        &support::test_plugin_dir(),
        &lab.moto.endpoint,
        &hostile_terminate(&[&web[0], "sleep:3000"]),
    );
    let spaced = |name: &str, target: &str| {
        let path = variant(
            &config,
            name,
            &[
                (
                    "min_healthy_per_group = 1",
                    "min_healthy_per_group = 1\nmin_time_between_kills = \"36h\"",
                ),
                (&web[0], target),
            ],
        );
        Config::load(Path::new(&path)).expect("config")
    };
    let first = spaced("locked.toml", &web[0]);
    let journal = lab.dir.path().join("locked.jsonl");
    let mut child = wasmonkey_run(&first)
        .args(["--execute", "--json", "--journal"])
        .arg(&journal)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wasmonkey runs");
    wait_for_journal(&journal, "\"terminate-done\"");
    // Another process takes the history's write lock and keeps it.
    let mut holder = rusqlite::Connection::open(lab.dir.path().join("state/history.sqlite"))
        .expect("open the history");
    let lock = holder
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .expect("the write lock");
    wait_for_journal(&journal, "\"run-finished\"");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the run ended while its last history write could not be made"
    );
    lock.commit().expect("release");
    let output = child.wait_with_output().expect("wait");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    assert_eq!(report["notes"], serde_json::json!([]), "{report:#}");
    let history = wasmonkey::history::SqliteHistory::in_state_dir(&lab.dir.path().join("state"))
        .expect("history");
    let runs = wasmonkey::history::History::runs(&history, 10).expect("runs");
    assert!(
        runs.iter()
            .any(|r| Some(r.run_id.as_str()) == report["run_id"].as_str()
                && r.complete
                && r.victims == 1),
        "{runs:#?}"
    );
    // The next run may not kill in the group.
    let second = spaced("next.toml", &web[1]);
    let output = wasmonkey_run(&second)
        .arg("--execute")
        .arg("--json")
        .output()
        .expect("wasmonkey runs");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["victims"], serde_json::json!([]), "{report:#}");
    assert_eq!(
        report["experiments"][0]["denials"][0]["rule"], "min-time-between-kills",
        "{report:#}"
    );
}

/// A real region where the account has nothing: `plan` names the empty
/// scope and the region, and `run --execute` starts nothing, terminates
/// nothing and publishes nothing.
#[test]
fn a_region_with_nothing_in_scope_is_refused_by_plan_and_by_the_run() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let proxy = runtime.block_on(FaultProxy::start(&lab.moto.endpoint, Vec::new()));
    let config = lab.config(&support::plugin_dir(), &proxy.endpoint, CLASSIC);
    let elsewhere = variant(
        &config,
        "elsewhere.toml",
        &[("region = \"us-east-1\"", "region = \"eu-west-3\"")],
    );
    let plan = wasmonkey_cli(&lab, &["plan", "--config", &elsewhere]);
    let text = said(&plan);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    assert!(
        text.contains("nothing is in scope: of 0 group(s) and 0 instance(s) the backend lists in region eu-west-3"),
        "{text}"
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--config", &elsewhere]);
    let text = said(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(
        text.contains("nothing is in scope") && text.contains("nothing was run"),
        "{text}"
    );
    assert_eq!(proxy.requests("TerminateInstances"), 0);
    assert_eq!(proxy.requests("Publish"), 0);
    let journals = std::fs::read_dir(lab.dir.path().join("journal"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(journals, 0, "a journal was started");
    assert_eq!(runtime.block_on(lab.states()), lab.before);
}

/// A new topic `name` whose messages moto delivers over HTTP to the
/// receiver on `port`; its ARN.
async fn topic_to(sns: &aws_sdk_sns::Client, name: &str, port: u16) -> String {
    let topic = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("topic")
        .topic_arn
        .expect("arn");
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("http")
        .endpoint(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("subscribe");
    topic
}

/// A run that succeeded, whose report says its notification went `to`,
/// and whose report (every victim, "recovered") reached the subscriber.
fn report_arrives(
    run: &std::process::Output,
    got: &std::sync::Mutex<Vec<crate::receiver::Received>>,
    to: &str,
) {
    assert_eq!(run.status.code(), Some(0), "{}", said(run));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("report");
    assert_eq!(report["notifications"][0]["to"], to, "{report:#}");
    let victims: Vec<&str> = report["victims"]
        .as_array()
        .expect("victims")
        .iter()
        .filter_map(|v| v["instance_id"].as_str())
        .collect();
    assert!(!victims.is_empty(), "{report:#}");
    let received: Vec<String> = got
        .lock()
        .expect("got")
        .iter()
        .map(|r| r.body.clone())
        .collect();
    assert!(
        received
            .iter()
            .any(|body| victims.iter().all(|id| body.contains(id)) && body.contains("recovered")),
        "the report did not reach the subscriber of {to}: {received:#?}"
    );
}

/// The on-call topic lives in another region than the fleet (the usual
/// set-up): the report is published there, and reaches its subscriber. A
/// topic that does not exist is named by `plan` and stops a run that would
/// publish before it starts; marked optional, it is tried once, not
/// retried: no retry heals it.
#[test]
fn a_topic_in_another_region_gets_the_report_and_a_missing_one_stops_the_run_first() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let (port, got) = receiver(&runtime, Receiver::Ok);
    let topic = runtime.block_on(async {
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(&lab.admin)
                .region(aws_config::Region::new("eu-west-1"))
                .build(),
        );
        topic_to(&sns, "chaos-eu", port).await
    });
    assert!(topic.starts_with("arn:aws:sns:eu-west-1:"), "{topic}");
    let proxy = runtime.block_on(FaultProxy::start(&lab.moto.endpoint, Vec::new()));
    let config = lab.config(&support::plugin_dir(), &proxy.endpoint, CLASSIC);
    let eu = variant(
        &config,
        "eu.toml",
        &[(
            &format!("topic = {:?}", lab.fleet.topic_arn),
            &format!("topic = {topic:?}"),
        )],
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--json", "--config", &eu]);
    report_arrives(
        &run,
        &got,
        &format!("topic {topic} (region eu-west-1, account 123456789012)"),
    );

    // A topic nobody created: `plan` names it, with its region and
    // account, and a run that would publish refuses to start.
    let nowhere = "arn:aws:sns:eu-west-1:123456789012:nowhere";
    let topic_line = format!("topic = {:?}", lab.fleet.topic_arn);
    let missing = variant(
        &config,
        "missing.toml",
        &[(&topic_line, &format!("topic = {nowhere:?}"))],
    );
    let plan = wasmonkey_cli(&lab, &["plan", "--config", &missing]);
    let text = said(&plan);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("ops: topic {nowhere} (region eu-west-1, account 123456789012) — unreachable: refused: sns:GetTopicAttributes: NotFound"))
            && text.contains(&format!("channel ops: topic {nowhere} cannot be reached")),
        "{text}"
    );
    let (publishes, terminations) = (
        proxy.requests("Publish"),
        proxy.requests("TerminateInstances"),
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--config", &missing]);
    let text = said(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(
        text.contains("cannot be reached") && text.contains("nothing was run"),
        "{text}"
    );
    assert_eq!(proxy.requests("Publish"), publishes);
    assert_eq!(proxy.requests("TerminateInstances"), terminations);

    // Marked optional, the run starts without it: each message is tried
    // once (no retry heals NotFound), and the run is not a success.
    let optional = variant(
        &config,
        "optional.toml",
        &[(
            &topic_line,
            &format!("topic = {nowhere:?}\noptional = true"),
        )],
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--json", "--config", &optional]);
    let text = said(&run);
    assert_ne!(run.status.code(), Some(0), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("report");
    // The plugin's message and the run's report: each tried once.
    let mut notifications: Vec<&serde_json::Value> = report["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .collect();
    for experiment in report["experiments"].as_array().expect("experiments") {
        notifications.extend(
            experiment["notifications"]
                .as_array()
                .expect("notifications"),
        );
    }
    assert_eq!(notifications.len(), 2, "{report:#}");
    for notification in &notifications {
        assert_eq!(notification["attempts"], 1, "{report:#}");
    }
    assert_eq!(proxy.requests("Publish") - publishes, 2, "{text}");
}

/// On-call's topic in another account: the channel names a role to assume
/// (with its external id), and the report reaches the topic through it.
/// (moto answers for a topic of another account without the role too, so
/// what shows that the role is used is STS's AssumeRole, counted.)
#[test]
fn a_topic_of_another_account_is_reached_through_the_channels_role() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let (port, got) = receiver(&runtime, Receiver::Ok);
    let role = "arn:aws:iam::111111111111:role/chaos-notify";
    let topic = runtime.block_on(async {
        // The other account's own set-up, as that account.
        let other =
            aws_sdk_sns::config::Builder::from(&moto::as_account(&lab.admin, "111111111111").await)
                .region(aws_config::Region::new("eu-west-1"))
                .build();
        let sns = aws_sdk_sns::Client::from_conf(other);
        topic_to(&sns, "oncall", port).await
    });
    assert!(
        topic.starts_with("arn:aws:sns:eu-west-1:111111111111:"),
        "{topic}"
    );
    let proxy = runtime.block_on(FaultProxy::start(&lab.moto.endpoint, Vec::new()));
    let config = lab.config(&support::plugin_dir(), &proxy.endpoint, CLASSIC);
    let topic_line = format!("topic = {:?}", lab.fleet.topic_arn);
    let without_role = variant(
        &config,
        "no-role.toml",
        &[(&topic_line, &format!("topic = {topic:?}"))],
    );
    let plan = wasmonkey_cli(&lab, &["plan", "--config", &without_role]);
    assert_eq!(plan.status.code(), Some(0), "{}", said(&plan));
    assert_eq!(proxy.requests("AssumeRole"), 0, "a role no channel names");

    let with_role = variant(
        &config,
        "role.toml",
        &[(
            &topic_line,
            &format!("topic = {topic:?}\nrole_arn = {role:?}\nexternal_id = \"chaos-7\""),
        )],
    );
    let plan = wasmonkey_cli(&lab, &["plan", "--config", &with_role]);
    let text = said(&plan);
    assert_eq!(plan.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "ops: topic {topic} (region eu-west-1, account 111111111111, as role {role}) — reachable"
        )),
        "{text}"
    );
    let assumed = proxy.requests("AssumeRole");
    assert!(assumed >= 1, "plan assumed no role");
    let run = wasmonkey_cli(
        &lab,
        &["run", "--execute", "--json", "--config", &with_role],
    );
    report_arrives(
        &run,
        &got,
        &format!("topic {topic} (region eu-west-1, account 111111111111, as role {role})"),
    );
    assert!(
        proxy.requests("AssumeRole") > assumed,
        "the run assumed no role"
    );
}

/// An EventBridge bus as the run's channel, on moto, with a rule that routes
/// `source = "wasmonkey"` to an SQS queue: every step of a two-victim run
/// arrives, in order and in the documented schema, in three PutEvents calls
/// (start, the experiment's end, the run's end). A bus nobody created is
/// named by `plan`, and a run under `--execute` refuses to start without
/// putting or terminating anything.
#[test]
fn a_runs_steps_reach_an_eventbridge_bus_and_a_missing_bus_stops_the_run_first() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let queue_url = runtime.block_on(moto::bus_to_queue(&lab.admin, "chaos", "chaos-steps"));
    let proxy = runtime.block_on(FaultProxy::start(&lab.moto.endpoint, Vec::new()));
    let config = lab.config(&support::plugin_dir(), &proxy.endpoint, CLASSIC);
    let bused = variant(
        &config,
        "bus.toml",
        &[(
            "[report]\nchannel = \"ops\"",
            "[channels.bus]\nevent_bus = \"chaos\"\n[report]\nchannel = \"bus\"",
        )],
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--json", "--config", &bused]);
    let text = said(&run);
    assert_eq!(run.status.code(), Some(0), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("report");
    assert_eq!(
        report["victims"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );
    let events: Vec<(String, serde_json::Value, i64)> = runtime
        .block_on(moto::messages(&lab.admin, &queue_url))
        .iter()
        .map(|body| {
            let event: serde_json::Value = serde_json::from_str(body).expect("an event");
            assert_eq!(event["source"], "wasmonkey", "{event}");
            let time = event["time"].as_str().expect("time");
            let time: jiff::Timestamp = time.parse().expect("an RFC 3339 time");
            (
                event["detail-type"]
                    .as_str()
                    .expect("detail-type")
                    .to_owned(),
                event["detail"].clone(),
                time.as_millisecond(),
            )
        })
        .collect();
    let types = crate::notifications::check_steps(&events, &report);
    assert_eq!(types.len(), 6, "{types:?}");
    assert_eq!(proxy.requests("PutEvents"), 3, "{types:?}");
    assert_eq!(proxy.requests("DescribeEventBus"), 1);
    assert_eq!(
        report["notifications"][0]["to"], "event bus chaos",
        "{report:#}"
    );

    // A bus nobody created: `plan` names it; a run that would put events
    // refuses to start.
    let missing = variant(
        &config,
        "no-bus.toml",
        &[(
            "[report]\nchannel = \"ops\"",
            "[channels.bus]\nevent_bus = \"nowhere\"\n[report]\nchannel = \"bus\"",
        )],
    );
    let plan = wasmonkey_cli(&lab, &["plan", "--config", &missing]);
    let text = said(&plan);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    assert!(
        text.contains("bus: event bus nowhere — unreachable: refused: events:DescribeEventBus: ResourceNotFoundException")
            && text.contains("channel bus: event bus nowhere cannot be reached"),
        "{text}"
    );
    let (puts, terminations) = (
        proxy.requests("PutEvents"),
        proxy.requests("TerminateInstances"),
    );
    let run = wasmonkey_cli(&lab, &["run", "--execute", "--config", &missing]);
    let text = said(&run);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(text.contains("nothing was run"), "{text}");
    assert_eq!(proxy.requests("PutEvents"), puts);
    assert_eq!(proxy.requests("TerminateInstances"), terminations);
}

/// One run over two accounts, each reached through its role (STS
/// AssumeRole, with an external id), on moto: each account's fleet is
/// read back with that account's own credentials, and only its in-scope
/// instances were terminated; the backend's own account, not listed, is
/// untouched. An account whose credentials act elsewhere stops `plan`
/// before anything is read.
#[test]
fn a_run_over_two_accounts_through_their_roles_acts_in_each_only_in_scope() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let lab = runtime.block_on(Lab::new());
    let accounts = [("111111111111", "blue"), ("222222222222", "green")];
    let (sdks, before) = runtime.block_on(async {
        let mut sdks = Vec::new();
        let mut before = Vec::new();
        for (id, _) in accounts {
            let sdk = moto::as_account(&lab.admin, id).await;
            moto::launch_template(&sdk).await;
            moto::add_group(&sdk, "web", 3, moto::OPTED_IN).await;
            moto::add_group(
                &sdk,
                "vault",
                2,
                &[("env", "test"), ("chaos-opt-out", "true")],
            )
            .await;
            before.push((
                moto::members(&sdk, "web").await,
                moto::members(&sdk, "vault").await,
                moto::states(&sdk).await,
            ));
            sdks.push(sdk);
        }
        (sdks, before)
    });
    let proxy = runtime.block_on(FaultProxy::start(&lab.moto.endpoint, Vec::new()));
    let config = lab.config(&support::plugin_dir(), &proxy.endpoint, CLASSIC);
    let listed: String = accounts
        .iter()
        .map(|(id, name)| {
            format!(
                "\n[[account]]\nid = \"{id}\"\nname = \"{name}\"\nrole_arn = \"arn:aws:iam::{id}:role/chaos\"\nexternal_id = \"chaos-7\"\n"
            )
        })
        .collect();
    let path = variant(
        &config,
        "accounts.toml",
        &[
            (
                "groups = [\"web\", \"api\", \"vault\", \"big\"]",
                "groups = [\"*/web\", \"*/vault\"]",
            ),
            ("[[experiment]]", &format!("{listed}\n[[experiment]]")),
        ],
    );

    let run = wasmonkey_cli(&lab, &["run", "--execute", "--json", "--config", &path]);
    let report = support::json_report(&run);
    let victims: Vec<(String, String)> = report["victims"]
        .as_array()
        .expect("victims")
        .iter()
        .map(|v| {
            (
                v["group"].as_str().unwrap_or_default().to_owned(),
                v["instance_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let groups: Vec<&str> = victims.iter().map(|(g, _)| g.as_str()).collect();
    assert_eq!(
        groups,
        ["blue/us-east-1/web", "green/us-east-1/web"],
        "{victims:?}"
    );
    assert!(
        proxy.requests("AssumeRole") >= 2,
        "each account's role was assumed"
    );
    // Each account read back as itself: one of its `web` instances gone,
    // its `vault` and everything else as it was.
    runtime.block_on(async {
        for (i, sdk) in sdks.iter().enumerate() {
            let (web, vault, states) = &before[i];
            let after = moto::states(sdk).await;
            let changed: Vec<&String> = states
                .iter()
                .filter(|(id, state)| after.get(*id) != Some(*state))
                .map(|(id, _)| id)
                .collect();
            assert_eq!(changed.len(), 1, "account {}: {changed:?}", accounts[i].0);
            assert!(web.contains(changed[0]), "not web's: {changed:?}");
            assert!(!vault.contains(changed[0]), "vault touched");
            assert_eq!(
                victims[i].1, *changed[0],
                "the report names the instance its account lost"
            );
        }
    });
    assert!(
        runtime.block_on(lab.changed()).is_empty(),
        "the backend's own account, not listed, was touched"
    );

    // An account the credentials do not act in: refused before any read.
    let elsewhere = variant(
        &config,
        "elsewhere.toml",
        &[(
            "[[experiment]]",
            "[[account]]\nid = \"444444444444\"\n\n[[experiment]]",
        )],
    );
    let described = proxy.requests("DescribeAutoScalingGroups");
    let plan = wasmonkey_cli(&lab, &["plan", "--config", &elsewhere]);
    let text = said(&plan);
    assert_eq!(plan.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "444444444444/us-east-1: the credentials act in account 123456789012, not 444444444444"
        ),
        "{text}"
    );
    assert_eq!(
        proxy.requests("DescribeAutoScalingGroups"),
        described,
        "the fleet was read"
    );
}
