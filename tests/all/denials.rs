//! Policy seen from both sides: the typed error the plugin gets, and the
//! journal entry the operator gets. Driven by the `hostile` test plugin's
//! `terminate` and `list` attacks.

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::cloud::InstanceState;
use wasmonkey::journal::Event;
use wasmonkey::runner::RunOutput;

use crate::rigged::{self, Faults};
use crate::support::{self, FLEET, RULES};

fn hostile(params: &str, grants: &str, rules: &str) -> String {
    format!("{rules}\n[[experiment]]\nplugin = \"hostile\"\ngrants = {grants}\nparams = {{ {params} }}\n")
}

/// The fleet's instance ids per group, for a seed.
struct FleetIds {
    web: Vec<String>,
    api: Vec<String>,
    vault: Vec<String>,
    other: Vec<String>,
    standalone: Vec<String>,
}

/// Ids are deterministic per seed: read them off a fleet nobody runs on.
async fn fleet_ids(setup: &support::Setup, seed: u64) -> FleetIds {
    let sim = SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), seed).unwrap();
    FleetIds {
        web: support::ids_of(&sim, Some("web")).await,
        api: support::ids_of(&sim, Some("api")).await,
        vault: support::ids_of(&sim, Some("vault")).await,
        other: support::ids_of(&sim, Some("other")).await,
        standalone: support::ids_of(&sim, None).await,
    }
}

/// The plugin's summary, one `id: answer` line per attempt.
fn answers(output: &wasmonkey::runner::RunOutput) -> Vec<String> {
    let experiment = support::only_experiment(output);
    assert_eq!(experiment.error, None);
    experiment
        .summary
        .as_deref()
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A run of the hostile plugin's `terminate` attack on one instance.
struct Attack {
    output: RunOutput,
    sim: std::sync::Arc<SimCloud>,
    target: String,
    /// Holds the run's journal.
    _setup: support::Setup,
}

/// Run the `terminate` attack on the first `web` instance with `grants`.
async fn terminate_first_web(seed: u64, grants: &str, execute: bool) -> Attack {
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let target = fleet_ids(&probe, seed).await.web[0].clone();
    let setup = support::setup(
        FLEET,
        &support::test_plugin_dir(),
        &hostile(
            &format!("attack = \"terminate\", targets = \"{target}\""),
            grants,
            RULES,
        ),
    );
    let (output, sim) = support::run(&setup, seed, execute).await;
    Attack {
        output,
        sim,
        target,
        _setup: setup,
    }
}

fn denied_rules(output: &wasmonkey::runner::RunOutput) -> Vec<String> {
    support::events(output)
        .into_iter()
        .filter_map(|e| match e {
            Event::Denied { rule, .. } => Some(rule),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn every_denial_is_a_typed_error_to_the_plugin_and_a_journal_entry() {
    let seed = 9;
    let rules = RULES.replace("max_terminations = 3", "max_terminations = 2");
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let FleetIds {
        web,
        api,
        vault,
        other,
        standalone,
    } = fleet_ids(&probe, seed).await;
    let targets = [
        web[0].as_str(),
        &web[0],
        &vault[0],
        &other[0],
        &standalone[0],
        "i-0123456789abcdef0",
        &api[0],
        &api[1],
    ]
    .join(",");
    let setup = support::setup(
        FLEET,
        &support::test_plugin_dir(),
        &hostile(
            &format!("attack = \"terminate\", targets = \"{targets}\""),
            "[\"terminate\"]",
            &rules,
        ),
    );
    let (output, sim) = support::run(&setup, seed, true).await;
    let answers = answers(&output);
    assert_eq!(answers.len(), 8, "{answers:#?}");
    assert_eq!(answers[0], format!("{}: ok dry-run=false", web[0]));
    assert!(
        answers[1].starts_with(&format!("{}: denied:", web[0])),
        "{}",
        answers[1]
    );
    for (answer, id) in
        answers[2..6]
            .iter()
            .zip([&vault[0], &other[0], &standalone[0], "i-0123456789abcdef0"])
    {
        // Out of scope, for whatever reason, reads the same: nothing leaks.
        assert_eq!(
            *answer,
            format!("{id}: denied: {id} is outside this experiment's scope")
        );
    }
    assert_eq!(answers[6], format!("{}: ok dry-run=false", api[0]));
    assert!(
        answers[7].starts_with(&format!("{}: budget-exhausted:", api[1])),
        "{}",
        answers[7]
    );
    assert_eq!(
        denied_rules(&output),
        [
            "not-running",
            "opt-out",
            "scope",
            "scope",
            "scope",
            "max-terminations"
        ]
    );
    // Exactly the two allowed victims were touched.
    for id in [&vault[0], &other[0], &standalone[0], &api[1], &web[1]] {
        let seen = sim.describe_instance(id).await.unwrap().unwrap();
        assert_eq!(seen.state, InstanceState::Running, "{id} was touched");
    }
    for id in [&web[0], &api[0]] {
        let seen = sim.describe_instance(id).await.unwrap().unwrap();
        assert_eq!(seen.state, InstanceState::Terminated, "{id} survived");
    }
}

#[tokio::test]
async fn a_plugin_sees_only_its_scope() {
    let seed = 4;
    let setup = support::setup(
        FLEET,
        &support::test_plugin_dir(),
        &hostile("attack = \"list\"", "[]", RULES),
    );
    let FleetIds { web, api, .. } = fleet_ids(&setup, seed).await;
    let (output, _) = support::run(&setup, seed, false).await;
    let summary = support::only_experiment(&output).summary.clone().unwrap();
    let mut seen: Vec<&str> = summary
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    seen.sort();
    let mut expected: Vec<&str> = web.iter().chain(&api).map(String::as_str).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn terminate_without_the_grant_is_denied() {
    // The manifest asks for terminate; the operator allows only notify.
    let attack = terminate_first_web(2, "[\"notify\"]", true).await;
    let (output, sim) = (&attack.output, &attack.sim);
    let answers = answers(output);
    assert!(
        answers[0].contains("denied") && answers[0].contains("'terminate' grant"),
        "{answers:?}"
    );
    assert_eq!(denied_rules(output), ["grant"]);
    assert!(sim.timeline().is_empty());
}

#[tokio::test]
async fn a_dry_run_answers_dry_run_and_journals_before_and_after() {
    let attack = terminate_first_web(3, "[\"terminate\"]", false).await;
    let (output, sim, target) = (&attack.output, &attack.sim, &attack.target);
    assert_eq!(answers(output), [format!("{target}: ok dry-run=true")]);
    let events = support::events(output);
    let intent = events
        .iter()
        .position(|e| matches!(e, Event::TerminateIntent { dry_run: true, .. }))
        .expect("intent journalled");
    let done = events
        .iter()
        .position(|e| matches!(e, Event::TerminateDone { dry_run: true, .. }))
        .expect("outcome journalled");
    assert!(intent < done);
    assert!(sim.timeline().is_empty(), "a dry run changed the fleet");
}

/// The `terminate` attack on `targets` on a rigged fleet; the summary's lines.
async fn rigged_attack(
    seed: u64,
    targets: &[&str],
    faults: Faults,
) -> (
    Vec<String>,
    RunOutput,
    std::sync::Arc<rigged::Rigged>,
    support::Setup,
) {
    let setup = support::setup(
        FLEET,
        &support::test_plugin_dir(),
        &hostile(
            &format!(
                "attack = \"terminate\", targets = \"{}\"",
                targets.join(",")
            ),
            "[\"terminate\"]",
            RULES,
        ),
    );
    let (output, rigged) = rigged::run(&setup, seed, true, faults).await;
    (answers(&output), output, rigged, setup)
}

#[tokio::test]
async fn out_of_scope_answers_do_not_depend_on_what_lies_outside() {
    let seed = 4;
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let ids = fleet_ids(&probe, seed).await;
    let nowhere = "i-0123456789abcdef0";
    // Listing is throttled: a host that looked at an out-of-scope group
    // before deciding scope would answer `throttled` for ids that exist.
    let faults = Faults {
        throttle_listing: true,
        ..Faults::default()
    };
    let targets = [
        ids.vault[0].as_str(),
        &ids.other[0],
        &ids.standalone[0],
        nowhere,
    ];
    let (answers, _, rigged, _keep) = rigged_attack(seed, &targets, faults).await;
    for (answer, id) in answers.iter().zip(targets) {
        assert_eq!(
            *answer,
            format!("{id}: denied: {id} is outside this experiment's scope")
        );
    }
    assert_eq!(answers.len(), 4);
    // And after the run's survey of its scope (whose instance listing was
    // throttled), the backend was asked the same for each: the id alone,
    // its group answered from the survey's listing, in scope or not (the
    // fleet is never listed for it).
    let calls = rigged.after_survey();
    let count = |prefix: &str| calls.iter().filter(|c| c.starts_with(prefix)).count();
    assert_eq!(count("list_instances"), 0, "{calls:#?}");
    assert_eq!(count("groups"), 0, "{calls:#?}");
    for id in targets {
        assert_eq!(count(&format!("instances_by_id {id}")), 1, "{id}");
    }
    assert_eq!(count("instances_by_id"), 4, "{calls:#?}");
}

/// A termination needs its victim's group, fresh: it reads that group, and
/// never lists the whole fleet again, even when the listing has gone stale
/// (on AWS a listing is one call per 100 groups).
#[tokio::test]
async fn a_termination_reads_its_victims_group_not_the_whole_fleet() {
    let seed = 7;
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let ids = fleet_ids(&probe, seed).await;
    let targets = [ids.web[0].as_str(), "sleep:3000", ids.api[0].as_str()];
    let (answers, _, rigged, _keep) = rigged_attack(seed, &targets, Faults::default()).await;
    assert_eq!(
        answers,
        [
            format!("{}: ok dry-run=false", ids.web[0]),
            "slept 3000 ms".to_owned(),
            format!("{}: ok dry-run=false", ids.api[0]),
        ]
    );
    // After the run's survey of its scope, the fleet is never listed again.
    let calls = rigged.after_survey();
    assert!(!calls.iter().any(|c| c == "groups all"), "{calls:#?}");
    // Every group read (the recovery watch's too) names the victims' groups.
    for call in calls.iter().filter_map(|c| c.strip_prefix("groups ")) {
        assert!(
            call.split(',').all(|g| g == "web" || g == "api"),
            "{calls:#?}"
        );
    }
    assert!(calls.iter().any(|c| c == "groups api"), "{calls:#?}");
}

/// Dry-run terminations of `web[0]`, then `web[1]` three seconds later on
/// the fleet's clock, with group reads throttled from two seconds on.
async fn terminate_after_the_reads_aged(reads: &str) -> (Vec<String>, RunOutput, support::Setup) {
    let seed = 7;
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let ids = fleet_ids(&probe, seed).await;
    let targets = format!("{},sleep:3000,{}", ids.web[0], ids.web[1]);
    let setup = support::setup(
        FLEET,
        &support::test_plugin_dir(),
        &hostile(
            &format!("attack = \"terminate\", targets = \"{targets}\""),
            "[\"terminate\"]",
            &format!("{RULES}\n{reads}"),
        ),
    );
    let faults = Faults {
        throttle_groups_from_ms: Some(2000),
        ..Faults::default()
    };
    let (output, _) = rigged::run(&setup, seed, false, faults).await;
    let answers = answers(&output);
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(answers[0], format!("{}: ok dry-run=true", ids.web[0]));
    (answers, output, setup)
}

#[tokio::test]
async fn a_decision_is_refused_rather_than_made_on_a_read_older_than_the_bound() {
    // The groups were read at 0 s; at 3 s they are older than the 1 s
    // bound, and reading them again is throttled: no decision.
    let (answers, output, _keep) = terminate_after_the_reads_aged("").await;
    assert!(answers[2].contains(": throttled:"), "{answers:?}");
    let intents = support::events(&output)
        .iter()
        .filter(|e| matches!(e, Event::TerminateIntent { .. }))
        .count();
    assert_eq!(intents, 1);
    // Within a bound that covers the sleep, the first read serves both.
    let (answers, ..) = terminate_after_the_reads_aged("[reads]\nmax_age_secs = 10\n").await;
    assert!(answers[2].ends_with(": ok dry-run=true"), "{answers:?}");
}

#[tokio::test]
async fn an_instance_of_a_group_the_backend_does_not_list_is_never_touched() {
    let seed = 5;
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let web = fleet_ids(&probe, seed).await.web;
    let faults = Faults {
        hidden_group: Some("web".into()),
        ..Faults::default()
    };
    let (answers, output, rigged, _keep) = rigged_attack(seed, &[&web[0]], faults).await;
    assert_eq!(
        answers,
        [format!(
            "{}: denied: {} is outside this experiment's scope",
            web[0], web[0]
        )]
    );
    assert_eq!(rigged.count("terminate "), 0);
    let denial = &support::only_experiment(&output).denials[0];
    assert_eq!(denial.rule, "scope");
    assert!(
        denial.message.contains("not among the groups"),
        "{denial:?}"
    );
}

#[tokio::test]
async fn a_lost_terminate_answer_is_settled_by_describing_the_instance_again() {
    let seed = 6;
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let web = fleet_ids(&probe, seed).await.web;
    let faults = Faults {
        lose_terminate_answer: true,
        ..Faults::default()
    };
    let (answers, output, _, _keep) = rigged_attack(seed, &[&web[0]], faults).await;
    // It happened, so the plugin is told so, and the host watches it recover.
    assert_eq!(answers, [format!("{}: ok dry-run=false", web[0])]);
    let victim = &output.report.victims[0];
    assert_eq!(victim.status, "terminated", "{victim:#?}");
    assert_eq!(victim.host_verdict, "recovered", "{victim:#?}");
    assert!(support::events(&output).iter().any(|e| matches!(
        e,
        Event::TerminateDone { confirmed_after: Some(why), .. } if why.contains("connection reset")
    )));
}

#[tokio::test]
async fn a_lost_answer_followed_by_throttled_retries_is_settled_never_failed() {
    let seed = 6;
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let web = fleet_ids(&probe, seed).await.web;
    let faults = Faults {
        throttle_after_terminate: true,
        ..Faults::default()
    };
    let (_, output, _, _keep) = rigged_attack(seed, &[&web[0]], faults).await;
    // The instance is gone: the journal says so, and the victim counts.
    let victim = &output.report.victims[0];
    assert_eq!(victim.status, "terminated", "{victim:#?}");
    let events = support::events(&output);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::TerminateFailed { .. })),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::TerminateDone { confirmed_after: Some(why), .. } if why.contains("RequestLimitExceeded")
    )));
}

#[tokio::test]
async fn the_run_wide_blast_radius_counts_every_experiment() {
    let seed = 7;
    let probe = support::setup(FLEET, &support::test_plugin_dir(), "");
    let FleetIds { web, api, .. } = fleet_ids(&probe, seed).await;
    let experiment = |targets: &[&str]| {
        format!(
            "[[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\n\
             params = {{ attack = \"terminate\", targets = \"{}\" }}\n",
            targets.join(",")
        )
    };
    let run = |per_run: u32, second: String| {
        let rules = RULES.replace(
            "max_terminations = 3",
            &format!("max_terminations = 3\nmax_terminations_per_run = {per_run}"),
        );
        let body = format!("{rules}\n{}\n{second}", experiment(&[&web[0], &api[0]]));
        async move {
            let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
            let output = support::run(&setup, seed, true).await.0;
            let summaries: Vec<String> = output
                .report
                .experiments
                .iter()
                .map(|e| e.summary.clone().unwrap_or_default())
                .collect();
            summaries
        }
    };
    // The first experiment spends the run's 2; the second may take none.
    let spent = run(2, experiment(&[&web[1]])).await;
    assert!(spent[0].lines().all(|l| l.contains(": ok ")), "{spent:?}");
    assert!(
        spent[1].contains("budget-exhausted") && spent[1].contains("over all its experiments"),
        "{spent:?}"
    );
    // api (desired 3) may lose floor(0.5 × 3) = 1 per run, in whichever experiment.
    let share = run(10, experiment(&[&api[1]])).await;
    assert!(
        share[1].contains("denied") && share[1].contains("per run"),
        "{share:?}"
    );
}
