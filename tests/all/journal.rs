//! The journal is the record: reports come from it, also when a run was cut
//! short.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::cloud::InstanceState;
use wasmonkey::config::Config;
use wasmonkey::contract;
use wasmonkey::journal::{self, Event, Journal};
use wasmonkey::limits::LimitOverrides;
use wasmonkey::plugins::Catalog;
use wasmonkey::policy::{Grant, Policy};
use wasmonkey::report::Report;
use wasmonkey::sandbox::{RunFailure, Sandbox};
use wasmonkey::session::{PluginLabel, Session, SessionSetup};

use crate::rigged::{self, Faults, Rigged};
use crate::support::{self, FLEET, RULES};

#[tokio::test]
async fn the_intent_is_on_disk_when_terminate_is_called() {
    let body = format!("{RULES}\n[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\", \"notify\"]\n");
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let (output, rigged) = rigged::run(&setup, 21, true, Faults::default()).await;
    // The fake backend read the journal file as each terminate call came in.
    let seen = rigged.intent_on_disk.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (id, on_disk) in &seen {
        assert!(
            on_disk,
            "terminate {id} was called before its intent was the journal's last line"
        );
    }
    let entries = journal::read(&output.journal).unwrap().entries;
    for (id, _) in &seen {
        let position = |done: bool| {
            entries.iter().position(|e| match &e.event {
                Event::TerminateIntent { instance_id, .. } => !done && instance_id == id,
                Event::TerminateDone { instance_id, .. } => done && instance_id == id,
                _ => false,
            })
        };
        assert!(position(false) < position(true), "{id}");
    }
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..entries.len() as u64).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_journal_that_cannot_be_written_stops_the_run_before_terminate() {
    let setup = support::setup(FLEET, &support::test_plugin_dir(), RULES);
    let config = Config::load(&setup.config).unwrap();
    let sim = SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), 3).unwrap();
    let target = support::ids_of(&sim, Some("web")).await[0].clone();
    let rigged = Arc::new(Rigged::new(
        sim,
        Faults::default(),
        setup.dir.path().join("unused.jsonl"),
    ));
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    let journal = Arc::new(Journal::over(full, Path::new("/dev/full")));
    let catalog = Catalog::scan(&support::test_plugin_dir()).unwrap();
    let sandbox = Sandbox::new(&support::cache_dir()).unwrap();
    let plugin = catalog
        .load(
            &sandbox,
            "hostile",
            &config.limit_rules(),
            &LimitOverrides::default(),
        )
        .await
        .unwrap_or_else(|failure| panic!("{failure}"));
    let given: BTreeMap<String, toml::Value> = [
        ("attack".to_owned(), toml::Value::from("terminate")),
        ("targets".to_owned(), toml::Value::from(target.as_str())),
    ]
    .into();
    let params = contract::resolve_params(&plugin.metadata.params, &given).unwrap();
    let label = PluginLabel {
        name: plugin.metadata.name.clone(),
        version: plugin.metadata.version.clone(),
    };
    let policy = Policy {
        scope: config.scope.compile().unwrap(),
        blast_radius: config.blast_radius,
        dry_run: false,
        grants: [Grant::Terminate].into(),
    };
    let session = Session::new(
        SessionSetup::new(label, 0, rigged.clone(), policy, plugin.limits)
            .journal(journal)
            .seed(3)
            .recovery(1000, 60_000, Vec::new()),
    );
    let (_, result) = sandbox.run(&plugin.prepared, session, params).await;
    let failure = result.expect_err("the run must stop");
    assert!(
        matches!(failure, RunFailure::Host(_)),
        "a journal failure is the host's, not the plugin's: {failure}"
    );
    assert!(failure.to_string().contains("journal failure"), "{failure}");
    assert_eq!(rigged.count("terminate "), 0, "terminate was called");
    let still = rigged
        .sim
        .describe_instance(&target)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.state, InstanceState::Running);
}

#[tokio::test]
async fn a_journal_cut_short_still_reports_what_it_recorded() {
    let body =
        format!("{RULES}\n[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\n");
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let (output, _) = support::run(&setup, 8, true).await;
    let text = std::fs::read_to_string(&output.journal).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Cut right after the second termination request, mid-way through the next line.
    let second_intent = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"event\":\"terminate-intent\""))
        .nth(1)
        .map(|(i, _)| i)
        .expect("two terminations");
    let torn = &lines[second_intent + 1][..10];
    let cut = format!("{}\n{torn}", lines[..=second_intent].join("\n"));
    let path = setup.dir.path().join("cut.jsonl");
    std::fs::write(&path, cut).unwrap();

    let replay = journal::read(&path).unwrap();
    let report = Report::from_journal(&replay, &path);
    assert!(!report.complete);
    assert_eq!(report.victims.len(), 2);
    assert_eq!(report.victims[0].status, "terminated");
    assert_eq!(report.victims[1].status, "unknown");
    assert_eq!(report.victims[1].host_verdict, "pending");
    let notes = report.notes.join("\n");
    assert!(notes.contains("cut short"), "{notes}");
    assert!(notes.contains(&report.victims[1].instance_id), "{notes}");
    assert!(notes.contains("cut off mid-write"), "{notes}");
    assert!(!report.succeeded());

    // The full journal renders the same report the run printed.
    let full = Report::from_journal(&journal::read(&output.journal).unwrap(), &output.journal);
    assert_eq!(full, output.report);
}
