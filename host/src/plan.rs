//! `wasmonkey plan`: what a run would be allowed to touch, before it runs.
//!
//! For the config's scope: the groups and instances in it, and what is out
//! of it and by which rule; the blast radius; the stop conditions and their
//! state now; the kill switch; and each experiment's plugin with its grants
//! and limits. Plugins are only loaded (their `metadata()` runs in an inert
//! session that refuses every import), so nothing can be terminated.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use crate::cloud::view::FleetView;
use crate::cloud::Cloud;
use crate::config::Config;
use crate::guard::Guard;
use crate::limits::Limits;
use crate::plugins::Catalog;
use crate::policy::BlastRadius;
use crate::run_plan::{ChannelCheck, Excluded, GroupPlan, RunPlan, ScopeSurvey};
use crate::sandbox::Sandbox;
use crate::text::one_line;

/// The whole preview.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Plan {
    /// The run config's path.
    pub config: String,
    /// `sim` or `aws`.
    pub backend: String,
    /// Set when the kill switch is: then no run starts.
    pub paused: Option<String>,
    /// Each stop condition and its state now.
    pub stop_conditions: Vec<ConditionPlan>,
    /// Each steady-state check and its state now (`holds`, `broken`,
    /// `unknown`): one that does not hold stops the run before it acts.
    pub steady_state: Vec<ConditionPlan>,
    /// The blast radius every termination is checked against.
    pub blast_radius: BlastRadius,
    /// Groups in scope, by name.
    pub groups: Vec<GroupPlan>,
    /// Standalone instances in scope (only with `scope.standalone`).
    pub standalone: Vec<String>,
    /// What is out of scope, and by which rule.
    pub out_of_scope: Vec<Excluded>,
    /// Each experiment, as it would run.
    pub experiments: Vec<ExperimentPlan>,
    /// Each notification channel: its topic's region and account, and
    /// whether it can be reached now.
    pub channels: Vec<ChannelCheck>,
    /// Why the run would not start or could do nothing, one line each
    /// (empty when it would run): an experiment that would not run, a
    /// scope with nothing in it. `plan` exits non-zero when there is one.
    pub problems: Vec<String>,
}

/// A stop condition and its state now.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConditionPlan {
    /// Its position in the config, as the operator names it.
    pub name: String,
    /// What it watches, in a line.
    pub rule: String,
    /// `clear`, `tripped` or `unknown`.
    pub state: String,
    /// What was seen, when it is not clear.
    pub detail: Option<String>,
}

/// One experiment's plugin, as it would run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExperimentPlan {
    /// Its position among the config's experiments, from 0.
    pub index: usize,
    /// The plugin's name.
    pub plugin: String,
    /// Its version, if it loaded.
    pub version: Option<String>,
    /// Its component's sha256, if it loaded.
    pub sha256: Option<String>,
    /// What it would be allowed to do.
    pub grants: Vec<String>,
    /// Each fault it may apply: its reach and how the host undoes it.
    pub faults: Vec<String>,
    /// What it would run under, if it loaded.
    pub limits: Option<Limits>,
    /// Why it would not run, if it would not.
    pub error: Option<String>,
}

/// Build the preview of `config` on `cloud`.
pub(crate) async fn plan(config: &Config, cloud: Arc<dyn Cloud>) -> anyhow::Result<Plan> {
    let view = FleetView::new(Arc::clone(&cloud), config.max_read_age_ms());
    let catalog = Catalog::scan(&config.plugin_dir())?
        .with_pins(config.pins())
        .with_provenance(crate::provenance::Provenance::of(config)?);
    let sandbox = Sandbox::new(&config.cache_dir()?)?;
    let every: Vec<_> = config.experiments.iter().enumerate().collect();
    let run_plan = RunPlan::build(config, &catalog, &sandbox, &view, &every, true).await?;
    let mut problems = run_plan.problems(config);
    problems.extend(run_plan.unknown_scope());
    let guard = Guard::for_config(config, crate::history::switches(config, cloud.as_ref())?);
    let stop_conditions = guard
        .survey(&view)
        .await
        .into_iter()
        .map(|reading| ConditionPlan {
            name: reading.name,
            rule: reading.rule,
            state: reading.state.name().into(),
            detail: (!reading.saw.is_empty()).then_some(reading.saw),
        })
        .collect();
    let mut steady_state = Vec::new();
    for (name, check) in &config.steady_state {
        let (state, detail) = match guard.steady_state(name, check, &view).await {
            Ok((true, saw)) => ("holds", Some(saw)),
            Ok((false, saw)) => ("broken", Some(saw)),
            Err(why) => ("unknown", Some(why)),
        };
        if state != "holds" {
            problems.push(format!(
                "steady state {name} is {state} now: the run would stop before it acts ({})",
                one_line(detail.as_deref().unwrap_or(""))
            ));
        }
        steady_state.push(ConditionPlan {
            name: name.clone(),
            rule: check.to_string(),
            state: state.into(),
            detail,
        });
    }
    let paused = guard.paused().await.map(|p| p.to_string());

    let experiments = run_plan.experiments.iter().map(experiment_plan).collect();
    let channels = run_plan.channels;
    let scope = run_plan.scope.unwrap_or_else(|_| ScopeSurvey::unknown());
    Ok(Plan {
        config: config.path.display().to_string(),
        // Over several accounts, which: `sim in blue/us-east-1, …`.
        backend: if config.accounts.is_empty() {
            cloud.kind().to_owned()
        } else {
            cloud.identity()
        },
        paused,
        stop_conditions,
        steady_state,
        blast_radius: config.blast_radius,
        experiments,
        channels,
        groups: scope.groups,
        standalone: scope.standalone,
        out_of_scope: scope.out_of_scope,
        problems,
    })
}

/// One experiment as the run would run it, or why it would not.
fn experiment_plan(planned: &crate::run_plan::Planned<'_>) -> ExperimentPlan {
    let (index, plugin) = (planned.index, planned.experiment.plugin.clone());
    match &planned.readiness {
        Ok(ready) => ExperimentPlan {
            index,
            plugin,
            version: Some(ready.plugin.metadata.version.clone()),
            sha256: Some(ready.plugin.prepared.compiled.sha256.clone()),
            grants: ready.grants.iter().map(|g| g.name().to_owned()).collect(),
            faults: ready
                .grants
                .iter()
                .filter_map(|g| {
                    crate::faults::reach_and_rollback(*g).map(|what| format!("{g}: {what}"))
                })
                .collect(),
            limits: Some(ready.plugin.limits),
            error: None,
        },
        Err(unready) => ExperimentPlan {
            index,
            plugin,
            version: None,
            sha256: None,
            grants: Vec::new(),
            faults: Vec::new(),
            limits: None,
            error: Some(unready.problem.clone()),
        },
    }
}

impl Plan {
    /// The preview as text. Plugin text is shown neutralised.
    pub(crate) fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan for {} on {} (nothing is run)",
            one_line(&self.config),
            self.backend
        );
        if let Some(paused) = &self.paused {
            let _ = writeln!(
                out,
                "KILL SWITCH SET: {}: no run would start",
                one_line(paused)
            );
        }
        let _ = writeln!(out, "\nblast radius: {}", self.blast_radius);
        let _ = writeln!(out, "\nin scope:");
        for g in &self.groups {
            let _ = writeln!(
                out,
                "  {:<20} desired {:>3}, healthy {:>3}, may lose {:>2}: {}",
                one_line(&g.name),
                g.desired,
                g.healthy_in_service,
                g.may_lose,
                g.instances.join(", ")
            );
        }
        if !self.standalone.is_empty() {
            let _ = writeln!(out, "  standalone: {}", self.standalone.join(", "));
        }
        let _ = writeln!(out, "\nout of scope:");
        for e in &self.out_of_scope {
            let _ = writeln!(
                out,
                "  {} {} [{}]: {}",
                e.kind,
                one_line(&e.name),
                e.rule,
                one_line(&e.why)
            );
        }
        let _ = writeln!(out, "\nstop conditions:");
        if self.stop_conditions.is_empty() {
            let _ = writeln!(out, "  none");
        }
        conditions(&mut out, &self.stop_conditions);
        if !self.steady_state.is_empty() {
            let _ = writeln!(out, "\nsteady state (before the run and after it):");
        }
        conditions(&mut out, &self.steady_state);
        let _ = writeln!(out, "\nexperiments:");
        for e in &self.experiments {
            match (&e.error, &e.limits) {
                (Some(error), _) => {
                    let _ = writeln!(
                        out,
                        "  {} {}: would not run: {}",
                        e.index + 1,
                        one_line(&e.plugin),
                        one_line(error)
                    );
                }
                (None, Some(l)) => {
                    let _ = writeln!(
                        out,
                        "  {} {}@{}: grants [{}]; fuel {}, memory {} MiB, timeout {} s",
                        e.index + 1,
                        one_line(&e.plugin),
                        one_line(e.version.as_deref().unwrap_or("?")),
                        e.grants.join(", "),
                        crate::text::thousands(l.fuel),
                        l.memory_mib,
                        l.timeout_secs
                    );
                    for fault in &e.faults {
                        let _ = writeln!(out, "    {fault}");
                    }
                }
                (None, None) => {}
            }
        }
        let _ = writeln!(out, "\nchannels:");
        if self.channels.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for c in &self.channels {
            let _ = writeln!(
                out,
                "  {}: {} — {}{}{}",
                one_line(&c.name),
                one_line(&c.described),
                c.state.name(),
                c.detail
                    .as_ref()
                    .map_or(String::new(), |d| format!(": {}", one_line(d))),
                if c.optional { " (optional)" } else { "" }
            );
        }
        if !self.problems.is_empty() {
            let _ = writeln!(out, "\nWOULD NOT RUN:");
            for problem in &self.problems {
                let _ = writeln!(out, "  {}", one_line(problem));
            }
        }
        out
    }
}

/// One line per condition: its name, rule, state and what was seen.
fn conditions(out: &mut String, conditions: &[ConditionPlan]) {
    for c in conditions {
        let _ = writeln!(
            out,
            "  {}: {} — {}{}",
            one_line(&c.name),
            one_line(&c.rule),
            c.state,
            c.detail
                .as_ref()
                .map_or(String::new(), |d| format!(": {}", one_line(d)))
        );
    }
}
