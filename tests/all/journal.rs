//! The journal is the record: reports come from it, also when a run was cut
//! short.

use wasmonkey::journal::{self, Event};
use wasmonkey::report::Report;

use crate::support::{self, FLEET, RULES};

#[tokio::test]
async fn every_termination_is_journalled_before_it_happens() {
    let body = format!("{RULES}\n[[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\", \"notify\"]\n");
    let setup = support::setup(FLEET, &support::plugin_dir(), &body);
    let (output, sim) = support::run(&setup, 21, true).await;
    let entries = journal::read(&output.journal).unwrap().entries;
    for victim in &output.report.victims {
        let intent = entries
            .iter()
            .find(|e| matches!(&e.event, Event::TerminateIntent { instance_id, .. } if *instance_id == victim.instance_id))
            .expect("intent");
        // The fleet recorded the shutdown at the same clock, after the intent was on disk.
        let shutdown = sim
            .timeline()
            .into_iter()
            .find(|e| e.instance == victim.instance_id)
            .expect("the fleet saw the termination");
        assert!(intent.clock_ms <= shutdown.at_ms);
        let done = entries
            .iter()
            .find(|e| matches!(&e.event, Event::TerminateDone { instance_id, .. } if *instance_id == victim.instance_id))
            .expect("outcome");
        assert!(intent.seq < done.seq);
    }
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..entries.len() as u64).collect::<Vec<_>>());
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
