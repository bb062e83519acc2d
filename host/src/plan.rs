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
use crate::cloud::{Cloud, InstanceQuery, Lifecycle};
use crate::config::Config;
use crate::guard::Guard;
use crate::limits::Limits;
use crate::plugins::Catalog;
use crate::policy::{BlastRadius, Hidden, Policy};
use crate::prepare;
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

/// A group in scope.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupPlan {
    /// The group.
    pub name: String,
    /// Its desired capacity.
    pub desired: u32,
    /// Its healthy in-service instances now.
    pub healthy_in_service: u32,
    /// Its instances in scope, by id.
    pub instances: Vec<String>,
    /// The most it may lose in one run: its share, and no deeper than its
    /// healthy floor.
    pub may_lose: u32,
}

/// Something out of scope.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Excluded {
    /// `group` or `instance`.
    pub kind: String,
    /// The group or instance.
    pub name: String,
    /// The rule: `pattern`, `opt-out`, `opt-in`, `tag`, `standalone`,
    /// `unknown-group`.
    pub rule: String,
    /// The rule's words, for the operator.
    pub why: String,
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
    /// What it would run under, if it loaded.
    pub limits: Option<Limits>,
    /// Why it would not run, if it would not.
    pub error: Option<String>,
}

fn rule(why: &Hidden) -> &'static str {
    match why {
        Hidden::GroupOutOfScope { .. } => "pattern",
        Hidden::Standalone => "standalone",
        Hidden::MissingTag(_) => "tag",
        Hidden::NotOptedIn(_) => "opt-in",
        Hidden::OptedOut(_) => "opt-out",
        Hidden::Unknown => "unknown",
        Hidden::UnknownGroup { .. } => "unknown-group",
    }
}

/// What of the fleet is in scope now, as the run's policy sees it: one
/// read of the groups and the instances.
pub(crate) struct ScopeSurvey {
    /// Groups in scope.
    pub groups: Vec<GroupPlan>,
    /// Standalone instances in scope.
    pub standalone: Vec<String>,
    /// What is out of scope, and by which rule.
    pub out_of_scope: Vec<Excluded>,
    /// Groups the backend listed.
    pub groups_seen: usize,
    /// Instances the backend listed.
    pub instances_seen: usize,
}

impl ScopeSurvey {
    /// Why a run of `config` could touch nothing, when it could not: no
    /// instance of any group, and no standalone one, is in scope.
    pub(crate) fn emptiness(&self, config: &Config) -> Option<String> {
        if self.groups.iter().any(|g| !g.instances.is_empty()) || !self.standalone.is_empty() {
            return None;
        }
        let region = match &config.backend {
            crate::config::BackendConfig::Aws(aws) => aws
                .region
                .as_deref()
                .map_or(String::new(), |r| format!(" in region {}", one_line(r))),
            crate::config::BackendConfig::Sim { .. } => String::new(),
        };
        Some(format!(
            "nothing is in scope: of {} group(s) and {} instance(s) the backend lists{region}, none is in scope (check [scope], the tags, and the backend's region and account)",
            self.groups_seen, self.instances_seen
        ))
    }
}

/// Survey the scope of `config` through `view`.
pub(crate) async fn survey_scope(config: &Config, view: &FleetView) -> anyhow::Result<ScopeSurvey> {
    let scope = config
        .scope
        .compile()
        .map_err(|err| anyhow::anyhow!("{}: scope: {err}", config.path.display()))?;
    let policy = Policy {
        scope,
        blast_radius: config.blast_radius,
        dry_run: true,
        grants: Default::default(),
    };
    let groups = view.all_groups().await?;
    let instances = view
        .list_instances(&InstanceQuery::default(), |_| true)
        .await?;
    let mut out_of_scope = Vec::new();
    let mut in_scope = Vec::new();
    for group in groups.values() {
        match policy.group_visibility(group) {
            Ok(()) => in_scope.push(group.name.clone()),
            Err(why) => out_of_scope.push(Excluded {
                kind: "group".into(),
                name: group.name.clone(),
                rule: rule(&why).into(),
                why: why.to_string(),
            }),
        }
    }
    let snapshots = view.groups(&in_scope).await?;
    let radius = config.blast_radius;
    let mut plans: Vec<GroupPlan> = snapshots
        .iter()
        .map(|s| {
            let healthy = s.capacity().healthy_in_service();
            let may_lose = radius.may_lose(s.group.desired, healthy);
            GroupPlan {
                name: s.group.name.clone(),
                desired: s.group.desired,
                healthy_in_service: healthy,
                instances: Vec::new(),
                may_lose,
            }
        })
        .collect();
    let mut standalone = Vec::new();
    for instance in &instances {
        if instance.is_going_away() || instance.lifecycle == Some(Lifecycle::Terminated) {
            continue;
        }
        let group = instance
            .group
            .as_ref()
            .and_then(|g| groups.get(g))
            .map(Arc::as_ref);
        match policy.instance_visibility(instance, group) {
            Ok(()) => match &instance.group {
                Some(name) => {
                    if let Some(plan) = plans.iter_mut().find(|p| &p.name == name) {
                        plan.instances.push(instance.id.clone());
                    }
                }
                None => standalone.push(instance.id.clone()),
            },
            // A whole group out of scope is listed once, above.
            Err(Hidden::GroupOutOfScope { .. } | Hidden::OptedOut(_))
                if group.is_some_and(|g| policy.group_visibility(g).is_err()) => {}
            Err(why) => out_of_scope.push(Excluded {
                kind: "instance".into(),
                name: instance.id.clone(),
                rule: rule(&why).into(),
                why: why.to_string(),
            }),
        }
    }

    Ok(ScopeSurvey {
        groups: plans,
        standalone,
        out_of_scope,
        groups_seen: groups.len(),
        instances_seen: instances.len(),
    })
}

/// Build the preview of `config` on `cloud`.
pub(crate) async fn plan(config: &Config, cloud: Arc<dyn Cloud>) -> anyhow::Result<Plan> {
    let view = FleetView::new(Arc::clone(&cloud), config.max_read_age_ms());
    let survey = survey_scope(config, &view).await?;
    let guard = Guard::for_config(config, config.switches(cloud.as_ref())?);
    let stop_conditions = guard
        .survey(&view)
        .await
        .into_iter()
        .map(|(name, state)| {
            let rule = config
                .stop_conditions
                .get(&name)
                .map(ToString::to_string)
                .unwrap_or_default();
            let (state, detail) = match state {
                Ok(None) => ("clear", None),
                Ok(Some(saw)) => ("tripped", Some(saw)),
                Err(why) => ("unknown", Some(why)),
            };
            ConditionPlan {
                name,
                rule,
                state: state.into(),
                detail,
            }
        })
        .collect();
    let paused = guard.paused().await.map(|p| p.to_string());

    let (experiments, mut problems) = preview_plugins(config).await?;
    problems.extend(survey.emptiness(config));
    Ok(Plan {
        config: config.path.display().to_string(),
        backend: cloud.kind().to_owned(),
        paused,
        stop_conditions,
        blast_radius: config.blast_radius,
        groups: survey.groups,
        standalone: survey.standalone,
        out_of_scope: survey.out_of_scope,
        experiments,
        problems,
    })
}

/// Make each experiment ready as the run does (the plugin loaded, metadata
/// only; grants narrowed; params checked), for what it would run with; and
/// what is wrong with each one that would not run, in the run's words.
async fn preview_plugins(config: &Config) -> anyhow::Result<(Vec<ExperimentPlan>, Vec<String>)> {
    let catalog = Catalog::scan(&config.plugin_dir())?.with_pins(config.pins());
    let sandbox = Sandbox::new(&config.cache_dir()?)?;
    let prepared = prepare::prepare_all(
        config,
        &catalog,
        &sandbox,
        config.experiments.iter().enumerate(),
    )
    .await;
    let mut problems = Vec::new();
    let experiments = prepared
        .into_iter()
        .zip(&config.experiments)
        .enumerate()
        .map(|(index, (prepared, experiment))| match prepared {
            Ok(ready) => ExperimentPlan {
                index,
                plugin: experiment.plugin.clone(),
                version: Some(ready.plugin.metadata.version.clone()),
                sha256: Some(ready.plugin.prepared.compiled.sha256.clone()),
                grants: ready.grants.iter().map(|g| g.name().to_owned()).collect(),
                limits: Some(ready.plugin.limits),
                error: None,
            },
            Err(unready) => {
                problems.push(unready.to_string());
                ExperimentPlan {
                    index,
                    plugin: experiment.plugin.clone(),
                    version: None,
                    sha256: None,
                    grants: Vec::new(),
                    limits: None,
                    error: Some(unready.problem),
                }
            }
        })
        .collect();
    Ok((experiments, problems))
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
        let r = &self.blast_radius;
        let _ = writeln!(
            out,
            "\nblast radius: {} per experiment, {} per run, groups keep {} healthy and lose at most {} of desired",
            r.max_terminations,
            r.per_run(),
            r.min_healthy_per_group,
            r.max_fraction_per_group
        );
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
        for c in &self.stop_conditions {
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
                        l.fuel,
                        l.memory_mib,
                        l.timeout_secs
                    );
                }
                (None, None) => {}
            }
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
