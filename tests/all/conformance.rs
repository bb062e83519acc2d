//! One strategy, five languages: the reference strategy in Rust
//! (`plugins/classic-monkey`) and its ports in Python, JavaScript, C and Zig
//! (`examples/plugins/`), held to the same behaviour.
//!
//! For the same fleet, seed and parameters each must pick the same victims,
//! at the same moments, reach the same plugin and host verdicts, and say
//! the same summary and notification (up to its own name), under the
//! default limits; and each must stop, with the limit named, when its fuel
//! or memory runs out.

use std::path::PathBuf;

use wasmonkey::cloud::Published;
use wasmonkey::runner::RunOutput;

use crate::support::{self, FLEET, RULES};

/// The reference first; every other is compared to it.
pub const PLUGINS: [(&str, &str); 5] = [
    ("rust", "classic-monkey"),
    ("python", "classic-monkey-py"),
    ("js", "classic-monkey-js"),
    ("c", "classic-monkey-c"),
    ("zig", "classic-monkey-zig"),
];

/// Where `cargo xtask polyglot` puts the reference strategy's ports.
pub fn example_plugin_dir() -> PathBuf {
    let dir = support::root().join("target/example-plugins");
    for (_, name) in PLUGINS[1..].iter().chain(&PLUGINS_0_2[1..]) {
        assert!(
            dir.join(format!("{name}.wasm")).is_file(),
            "{} has no {name}.wasm: build the plugins with `cargo xtask plugins --all` (or run the \
             tests with `cargo xtask test`)",
            dir.display()
        );
    }
    dir
}

/// Where `cargo xtask polyglot` puts the test-only plugins in other languages.
pub fn polyglot_test_plugin_dir() -> PathBuf {
    let dir = support::root().join("target/polyglot-test-plugins");
    assert!(
        dir.join("wasi-probe.wasm").is_file(),
        "{} has no wasi-probe.wasm: build the plugins with `cargo xtask plugins --all` (or run \
         the tests with `cargo xtask test`)",
        dir.display()
    );
    dir
}

fn plugin_dir(name: &str) -> PathBuf {
    if name == "classic-monkey" {
        support::plugin_dir()
    } else {
        example_plugin_dir()
    }
}

/// One experiment's setting, run with every plugin.
struct Case {
    what: &'static str,
    fleet: String,
    rules: String,
    /// The experiment's `params` (an inline TOML table's body).
    params: &'static str,
    /// The experiment's `limits`, if any.
    limits: &'static str,
    seed: u64,
    execute: bool,
}

impl Case {
    fn new(what: &'static str, seed: u64) -> Case {
        Case {
            what,
            fleet: FLEET.to_owned(),
            rules: RULES.to_owned(),
            params: "channel = \"ops\"",
            limits: "",
            seed,
            execute: true,
        }
    }

    fn setup(&self, plugin: &str) -> support::Setup {
        let limits = if self.limits.is_empty() {
            String::new()
        } else {
            format!("limits = {{ {} }}\n", self.limits)
        };
        let body = format!(
            "{}\n[[experiment]]\nplugin = \"{plugin}\"\ngrants = [\"terminate\", \"notify\"]\nparams = {{ {} }}\n{limits}",
            self.rules, self.params
        );
        support::setup(&self.fleet, &plugin_dir(plugin), &body)
    }

    async fn run(&self, plugin: &str) -> (RunOutput, Vec<Published>) {
        let (output, sim) = support::run(&self.setup(plugin), self.seed, self.execute).await;
        (output, sim.outbox())
    }

    /// What stopped the plugin: the run's refusal to start it, or its
    /// experiment's error (with no victim).
    async fn failure(&self, plugin: &str) -> Option<String> {
        support::plugin_failure(&self.setup(plugin), self.seed, self.execute).await
    }
}

/// Everything a run shows of a plugin's behaviour, with the plugin's own
/// name replaced by the reference's.
#[derive(Debug, PartialEq)]
struct Behaviour {
    error: Option<String>,
    summary: Option<String>,
    victims: Vec<String>,
    notifications: Vec<String>,
    /// What reached the notification topics: subjects and bodies.
    published: Vec<String>,
    denials: Vec<String>,
    /// How many victims, and how many the plugin saw recover.
    counts: (usize, usize),
}

fn behaviour((output, outbox): &(RunOutput, Vec<Published>), plugin: &str) -> Behaviour {
    let same = |text: &str| text.replace(plugin, "classic-monkey");
    let experiment = support::only_experiment(output);
    let victims: Vec<_> = support::victims_of(output, 0);
    Behaviour {
        error: experiment.error.as_deref().map(same),
        summary: experiment.summary.as_deref().map(same),
        victims: victims
            .iter()
            .map(|v| {
                same(&format!(
                    "{} group={:?} zone={} status={} at={} host={} ({:?} s) plugin={:?} ({:?} s) reason={:?}",
                    v.instance_id,
                    v.group,
                    v.zone,
                    v.status,
                    v.terminated_at_ms,
                    v.host_verdict,
                    v.recovery_seconds,
                    v.plugin_verdict,
                    v.plugin_recovery_seconds,
                    v.reason
                ))
            })
            .collect(),
        notifications: experiment
            .notifications
            .iter()
            .map(|n| same(&format!("{} {:?} {}", n.channel, n.subject, n.status)))
            .collect(),
        published: outbox
            .iter()
            .map(|p| same(&format!("{} at {} ms: {:?}\n{}", p.topic, p.at_ms, p.subject, p.body)))
            .collect(),
        denials: experiment
            .denials
            .iter()
            .map(|d| format!("{} {} {}", d.operation, d.target, d.rule))
            .collect(),
        counts: (
            victims.len(),
            victims
                .iter()
                .filter(|v| v.plugin_verdict.as_deref() == Some("recovered"))
                .count(),
        ),
    }
}

/// Run `case` with every plugin; each must behave as the reference does.
/// Returns the reference's behaviour, for the caller's own checks.
async fn conform(case: &Case) -> Behaviour {
    let reference = behaviour(&case.run(PLUGINS[0].1).await, PLUGINS[0].1);
    // A dry run's notifications are journalled, not sent.
    assert_eq!(
        reference.published.len(),
        reference
            .notifications
            .iter()
            .filter(|n| !n.ends_with(" would-publish"))
            .count(),
        "{reference:#?}"
    );
    assert_eq!(
        reference.error, None,
        "{}: the reference failed: {reference:#?}",
        case.what
    );
    for (lang, plugin) in &PLUGINS[1..] {
        let port = behaviour(&case.run(plugin).await, plugin);
        assert_eq!(
            port, reference,
            "{}: the {lang} plugin ({plugin}) differs from the reference (seed {})",
            case.what, case.seed
        );
    }
    reference
}

#[tokio::test]
async fn every_language_takes_the_same_victims_and_reaches_the_same_verdicts() {
    // Every eligible group loses an instance; all recover.
    for seed in [7, 42, 1234] {
        let reference = conform(&Case::new("probability 1", seed)).await;
        assert_eq!(reference.counts, (2, 2), "seed {seed}: {reference:#?}");
        assert_eq!(reference.notifications.len(), 1, "{reference:#?}");
    }
    // A coin per group: which groups are spared depends on the seed.
    let mut counts = std::collections::BTreeSet::new();
    for seed in 1..=6 {
        let mut case = Case::new("probability 0.5", seed);
        case.params = "channel = \"ops\", probability = 0.5";
        counts.insert(conform(&case).await.counts.0);
    }
    assert!(
        counts.len() > 1,
        "six seeds all spared the same number of groups: {counts:?}"
    );
}

#[tokio::test]
async fn every_language_agrees_on_dry_runs_globs_and_the_blast_radius() {
    let mut dry = Case::new("dry run", 3);
    dry.execute = false;
    let reference = conform(&dry).await;
    assert_eq!(reference.counts, (2, 0), "{reference:#?}");
    assert!(reference
        .victims
        .iter()
        .all(|v| v.contains("status=dry-run")));

    let mut glob = Case::new("groups = \"w*\"", 5);
    glob.params = "channel = \"ops\", groups = \"w*\"";
    let reference = conform(&glob).await;
    assert_eq!(reference.counts, (1, 1), "{reference:#?}");
    assert!(reference.victims[0].contains("group=Some(\"web\")"));

    // The budget is spent after the first victim: the second group's
    // termination is refused and the plugin stops.
    let mut budget = Case::new("max_terminations = 1", 9);
    budget.rules = RULES.replace("max_terminations = 3", "max_terminations = 1");
    let reference = conform(&budget).await;
    assert_eq!(reference.counts, (1, 1), "{reference:#?}");
}

#[tokio::test]
async fn every_language_retries_throttling_and_gives_up_on_time_alike() {
    // Every 4th API call is throttled: the retries (and their sleeps on the
    // run's clock) must fall at the same calls.
    let mut throttled = Case::new("throttle_every = 4", 11);
    throttled.fleet = format!("throttle_every = 4\n{FLEET}");
    let reference = conform(&throttled).await;
    assert_eq!(reference.counts.0, 2, "{reference:#?}");

    // The plugin waits 20 s, the fleet needs 40 s: the plugin says
    // not-recovered while the host, watching longer, sees the recovery.
    let mut impatient = Case::new("recovery-timeout-secs = 20", 13);
    impatient.params = "channel = \"ops\", recovery-timeout-secs = 20";
    let reference = conform(&impatient).await;
    assert_eq!(reference.counts, (2, 0), "{reference:#?}");
    for victim in &reference.victims {
        assert!(
            victim.contains("host=recovered") && victim.contains("plugin=Some(\"not-recovered\")"),
            "{victim}"
        );
    }
}

#[tokio::test]
async fn every_language_runs_within_the_default_limits_and_stops_at_its_own() {
    // Default limits (no [limits] in the config, none in the manifests):
    // the runs above already pass under them; here the plugins must also
    // run under the example config's tighter memory default.
    let mut tight = Case::new("memory_mib = 64", 21);
    tight.limits = "memory_mib = 64";
    conform(&tight).await;

    for (lang, plugin) in PLUGINS {
        let mut starved = Case::new("fuel = 20000", 1);
        starved.limits = "fuel = 20000";
        let error = starved.failure(plugin).await.unwrap_or_default();
        assert!(
            error.contains(plugin) && error.contains("(fuel)"),
            "{lang}: expected a fuel breach, got {error:?}"
        );
    }
    // The language runtimes need memory of their own; one MiB is not enough.
    for (lang, plugin) in [PLUGINS[1], PLUGINS[2]] {
        let mut cramped = Case::new("memory_mib = 1", 1);
        cramped.limits = "memory_mib = 1";
        let error = cramped.failure(plugin).await.unwrap_or_default();
        assert!(
            error.contains(plugin) && error.contains("(memory_mib)"),
            "{lang}: expected a memory breach, got {error:?}"
        );
    }
}

#[tokio::test]
async fn a_runtime_may_ask_for_more_memory_within_the_ceiling_and_no_further() {
    // The operator's default (8 MiB) is too small for Python's runtime; the
    // plugin's manifest asks for 96 MiB.
    let plugins = tempfile::tempdir().unwrap();
    let name = "classic-monkey-py";
    let built = example_plugin_dir();
    std::fs::copy(
        built.join(format!("{name}.wasm")),
        plugins.path().join(format!("{name}.wasm")),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(built.join(format!("{name}.toml"))).unwrap();
    let manifest_path = plugins.path().join(format!("{name}.toml"));
    std::fs::write(
        &manifest_path,
        format!("{manifest}\n[limits]\nmemory_mib = 96\n"),
    )
    .unwrap();
    let setup = |ceiling_mib: u64| {
        let body = format!(
            "{RULES}\n[limits]\nmemory_mib = 8\n[ceiling]\nmemory_mib = {ceiling_mib}\n\
             [[experiment]]\nplugin = \"{name}\"\ngrants = [\"terminate\"]\n"
        );
        support::setup(FLEET, plugins.path(), &body)
    };

    let within = support::run(&setup(128), 7, true).await.0;
    let experiment = support::only_experiment(&within);
    assert_eq!(experiment.error, None, "{experiment:#?}");
    assert_eq!(within.report.victims.len(), 2, "{:#?}", within.report);

    // Above the ceiling the plugin is refused before any of its code runs,
    // and so is the run.
    let refused = support::try_run(&setup(64), 7, true)
        .await
        .err()
        .unwrap_or_default();
    assert!(
        refused.contains(&manifest_path.display().to_string())
            && refused.contains("memory_mib = 96 is above the operator's ceiling 64")
            && refused.contains("nothing was run"),
        "{refused}"
    );
}

/// Contract 0.2's reference strategy (`plugins/oldest-first`) first, then
/// its ports (`examples/plugins-0.2/`), held to the same behaviour.
pub const PLUGINS_0_2: [(&str, &str); 5] = [
    ("rust", "oldest-first"),
    ("python", "oldest-first-py"),
    ("js", "oldest-first-js"),
    ("c", "oldest-first-c"),
    ("zig", "oldest-first-zig"),
];

/// Everything a run shows of a 0.2 plugin's behaviour: its summary and
/// log, every fault with its undo and its groups' recovery, and the
/// journal's fault and denial events in order with their clocks.
fn behaviour_0_2(output: &RunOutput, plugin: &str) -> Vec<String> {
    let same = |text: &str| text.replace(plugin, "oldest-first");
    let experiment = support::only_experiment(output);
    let mut seen = vec![
        format!("error: {:?}", experiment.error.as_deref().map(same)),
        format!("summary: {:?}", experiment.summary.as_deref().map(same)),
        format!("outcome: {}", output.report.outcome),
    ];
    seen.extend(
        experiment
            .logs
            .iter()
            .map(|l| same(&format!("log {} {}", l.level, l.message))),
    );
    seen.extend(output.report.faults.iter().map(|f| format!("{f:?}")));
    let journal = wasmonkey::journal::read(&output.journal).expect("journal");
    for entry in journal.entries {
        use wasmonkey::journal::Event;
        if matches!(
            entry.event,
            Event::FaultIntent { .. }
                | Event::FaultApplied { .. }
                | Event::FaultUndone { .. }
                | Event::FaultRecovered { .. }
                | Event::Denied { .. }
        ) {
            seen.push(same(&format!("{} {:?}", entry.clock_ms, entry.event)));
        }
    }
    seen
}

/// Oldest first in every language: the same pages read, the same oldest
/// instances stopped for the same time with the same reasons, the same
/// refusals once the budget is spent, the same dry run, and the same
/// summary, for the same fleet and parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oldest_first_behaves_alike_in_every_language() {
    let cases = [
        (
            "two of every group, two a page",
            "count = 2, stop-secs = 30, page-size = 2",
            true,
        ),
        (
            "more than the budget",
            "groups = \"api\", count = 5, stop-secs = 10",
            true,
        ),
        ("a dry run", "count = 3, page-size = 1000", false),
    ];
    for (what, params, execute) in cases {
        let run = |plugin: &'static str| async move {
            let dir = if plugin == PLUGINS_0_2[0].1 {
                support::plugin_dir()
            } else {
                example_plugin_dir()
            };
            let body = format!(
                "{RULES}\n[[experiment]]\nplugin = \"{plugin}\"\ngrants = [\"stop\"]\nparams = {{ {params} }}\n"
            );
            let setup = support::setup(FLEET, &dir, &body);
            behaviour_0_2(&support::run(&setup, 5, execute).await.0, plugin)
        };
        let reference = run(PLUGINS_0_2[0].1).await;
        assert!(
            reference.iter().any(|l| l.contains("FaultIntent")),
            "{what}: the reference applied no fault: {reference:#?}"
        );
        for (lang, plugin) in &PLUGINS_0_2[1..] {
            let port = run(plugin).await;
            assert_eq!(
                port, reference,
                "{what}: the {lang} plugin ({plugin}) differs from the reference"
            );
        }
    }
}
