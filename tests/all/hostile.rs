//! Hostile plugins, each contained with the error that names it and the
//! limit it broke, while the host goes on to run the next experiment.

use wasmonkey::limits::Limit;

use crate::support::{self, FLEET, RULES};

/// Run the `hostile` plugin with `attack` under `limits`, then a well-behaved
/// `list` run of the same plugin; return the first experiment's error.
async fn contained(attack: &str, limits: &str) -> String {
    attempt(attack, "", limits)
        .await
        .expect("the attack was stopped")
}

/// Run the `hostile` plugin with `attack` and more `params` under `limits`,
/// then a well-behaved `list` run of the same plugin; return the first
/// experiment's error, if it had one.
async fn attempt(attack: &str, params: &str, limits: &str) -> Option<String> {
    let body = format!(
        "{RULES}\n[ceiling]\nfuel = 1000000000000000\n\
         [[experiment]]\nplugin = \"hostile\"\ngrants = [\"terminate\"]\nparams = {{ attack = \"{attack}\"{params} }}\nlimits = {{ {limits} }}\n\
         [[experiment]]\nplugin = \"hostile\"\nparams = {{ attack = \"list\" }}\n"
    );
    let setup = support::setup(FLEET, &support::test_plugin_dir(), &body);
    let (output, _) = support::run(&setup, 1, true).await;
    let experiments = &output.report.experiments;
    assert_eq!(experiments.len(), 2, "{:#?}", output.report);
    // The host kept serving: the next experiment ran normally.
    assert_eq!(
        experiments[1].error, None,
        "the second experiment failed too"
    );
    assert!(experiments[1]
        .summary
        .as_deref()
        .is_some_and(|s| s.contains("i-")));
    assert!(output.report.complete);
    let error = experiments[0].error.clone();
    if let Some(error) = &error {
        assert!(
            error.contains("hostile@"),
            "error does not name the plugin: {error}"
        );
    }
    error
}

fn names(error: &str, limit: Limit) {
    assert!(
        error.contains(limit.key()) && error.contains(&format!("{limit:?} limit breached")),
        "expected the {limit:?} limit ({}) in: {error}",
        limit.key()
    );
}

#[tokio::test]
async fn an_endless_loop_runs_out_of_fuel() {
    names(&contained("loop", "fuel = 100000000").await, Limit::Fuel);
}

#[tokio::test]
async fn an_endless_loop_with_fuel_to_spare_hits_the_wall_clock_deadline() {
    let error = contained("loop", "fuel = 1000000000000000, timeout_secs = 1").await;
    names(&error, Limit::Timeout);
    assert!(error.contains("wall-clock"), "{error}");
}

#[tokio::test]
async fn memory_growth_stops_at_the_cap() {
    names(&contained("memory", "memory_mib = 16").await, Limit::Memory);
}

#[tokio::test]
async fn unbounded_recursion_stops_at_the_stack_cap() {
    names(
        &contained("recursion", "stack_kib = 128").await,
        Limit::Stack,
    );
}

/// Calls deep that fit in a 512 KiB stack but not in 128 KiB (so a frame of
/// the hostile plugin's recursion takes between 22 and 87 bytes).
const DEPTH: &str = ", depth = 6000";

#[tokio::test]
async fn the_experiments_stack_cap_is_the_one_in_force() {
    // The default 512 KiB holds the recursion...
    assert_eq!(attempt("recursion", DEPTH, "").await, None);
    assert_eq!(attempt("recursion", DEPTH, "stack_kib = 512").await, None);
    // ...and an experiment's 128 KiB does not, though the plugin was loaded
    // under the default.
    let error = attempt("recursion", DEPTH, "stack_kib = 128")
        .await
        .expect("the recursion overflows 128 KiB");
    names(&error, Limit::Stack);
    assert!(error.contains("128 KiB"), "{error}");
}

#[tokio::test]
async fn a_stack_above_the_metadata_cap_is_in_force_for_the_run() {
    // metadata() answers on a 512 KiB engine, the run on a 4 MiB one: 30,000
    // calls (five times the depth that fits in 512 KiB) need the run's own.
    let deep = ", depth = 30000";
    assert_eq!(attempt("recursion", deep, "stack_kib = 4096").await, None);
    let error = attempt("recursion", deep, "")
        .await
        .expect("30,000 calls overflow 512 KiB");
    names(&error, Limit::Stack);
}

#[tokio::test]
async fn a_panic_is_a_trap_not_a_crash() {
    let error = contained("panic", "").await;
    assert!(error.contains("trapped"), "{error}");
}

#[tokio::test]
async fn an_outcome_larger_than_the_blast_radius_is_refused() {
    let error = attempt("huge-list", ", count = 10", "")
        .await
        .expect("10 victims exceed a blast radius of 3");
    names(&error, Limit::OutcomeSize);
}

#[tokio::test]
async fn a_huge_outcome_is_stopped_before_the_host_copies_it() {
    // 100,000 victims: megabytes of records, above 1 MiB per host call.
    let error = contained("huge-list", "host_call_kib = 1024").await;
    names(&error, Limit::HostCallBytes);
    assert!(error.contains("before copying"), "{error}");
}

#[tokio::test]
async fn a_flood_of_host_calls_is_cut_off() {
    names(
        &contained("host-flood", "host_calls = 5000").await,
        Limit::HostCalls,
    );
}

#[tokio::test]
async fn an_oversized_host_call_argument_is_refused() {
    names(
        &contained("big-arg", "host_call_kib = 64").await,
        Limit::HostCallBytes,
    );
}

#[tokio::test]
async fn sleeping_forever_on_the_virtual_clock_hits_the_run_deadline() {
    let error = contained("sleep-forever", "timeout_secs = 600").await;
    names(&error, Limit::Timeout);
    assert!(error.contains("run clock"), "{error}");
}
