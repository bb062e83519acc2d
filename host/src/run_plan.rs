//! The plan a run executes, built once, before anything is journalled or
//! sent: each experiment made ready (its plugin loaded under its limits, its
//! grants narrowed, its params checked), the scope surveyed with one read
//! of the fleet, and each notification channel checked when the run would
//! publish. `plan` renders it; `run` (and each daemon slot) builds the
//! same plan and executes it only when it has no problem, so the preview and
//! the run cannot disagree on what would run.

mod channels;
mod experiment;
mod scope;

pub(crate) use channels::ChannelCheck;
pub(crate) use experiment::{Ready, Unready};
pub(crate) use scope::{Excluded, GroupPlan, ScopeSurvey};

use crate::cloud::view::FleetView;
use crate::config::{Config, ExperimentConfig};
use crate::plugins::Catalog;
use crate::sandbox::Sandbox;

/// One experiment of the plan.
pub(crate) struct Planned<'a> {
    /// Its position among the config's experiments, from 0.
    pub index: usize,
    /// Its settings.
    pub experiment: &'a ExperimentConfig,
    /// Ready to run, or why it would not.
    pub readiness: Result<Ready, Unready>,
}

/// What a run of a config would do.
pub(crate) struct RunPlan<'a> {
    /// The experiments the run would run, in order.
    pub experiments: Vec<Planned<'a>>,
    /// The fleet in scope now, or why it could not be read. A run whose
    /// survey failed still starts: every termination reads what it decides
    /// on afresh, and a fleet it cannot read ends the run inconclusive.
    pub scope: Result<ScopeSurvey, String>,
    /// Each notification channel, checked when the run would publish.
    pub channels: Vec<ChannelCheck>,
}

impl<'a> RunPlan<'a> {
    /// The plan of running `experiments` of `config`: each made ready, the
    /// scope surveyed through `view` (whose reads the run then reuses), and
    /// each channel checked when the run would `publish`.
    pub(crate) async fn build(
        config: &Config,
        catalog: &Catalog,
        sandbox: &Sandbox,
        view: &FleetView,
        experiments: &[(usize, &'a ExperimentConfig)],
        publish: bool,
    ) -> anyhow::Result<RunPlan<'a>> {
        let mut planned = Vec::with_capacity(experiments.len());
        for &(index, experiment) in experiments {
            planned.push(Planned {
                index,
                experiment,
                readiness: experiment::prepare(config, catalog, sandbox, index, experiment).await,
            });
        }
        Ok(RunPlan {
            experiments: planned,
            scope: scope::survey_scope(config, view)
                .await
                .map_err(|err| format!("{err:#}")),
            channels: channels::check(config, view.cloud().as_ref(), publish).await,
        })
    }

    /// Why the run would not start, one line each; empty when it would: an
    /// experiment that would not run, a scope with nothing in it.
    pub(crate) fn problems(&self, config: &Config) -> Vec<String> {
        let mut problems: Vec<String> = self
            .experiments
            .iter()
            .filter_map(|p| p.readiness.as_ref().err().map(ToString::to_string))
            .collect();
        if let Ok(scope) = &self.scope {
            problems.extend(scope.emptiness(config));
        }
        problems.extend(self.channels.iter().filter_map(ChannelCheck::problem));
        problems
    }

    /// Why the scope is unknown, when the fleet could not be read for it.
    pub(crate) fn unknown_scope(&self) -> Option<String> {
        self.scope.as_ref().err().map(|err| {
            format!(
                "the scope is unknown: the fleet could not be read: {}",
                crate::text::one_line(err)
            )
        })
    }

    /// The rules the run is held to, as this plan found them, for the
    /// journal: its scope and what is in it, the blast radius, each
    /// channel's check, and whether terminations are asked first
    /// (`preflight`).
    pub(crate) fn in_force(&self, config: &Config, preflight: bool) -> crate::journal::Event {
        crate::journal::Event::InForce {
            scope: config.scope.to_string(),
            in_scope: match &self.scope {
                Ok(survey) => survey.summary(),
                Err(_) => self.unknown_scope().unwrap_or_default(),
            },
            blast_radius: config.blast_radius.to_string(),
            channels: self
                .channels
                .iter()
                .map(|c| crate::journal::ChannelReading {
                    name: c.name.clone(),
                    to: c.described.clone(),
                    state: c.state.name().to_owned(),
                    detail: c.detail.clone().unwrap_or_default(),
                    optional: c.optional,
                })
                .collect(),
            preflight,
        }
    }

    /// The experiments to execute, when the plan has no problem; else every
    /// problem, for the operator.
    pub(crate) fn into_runnable(
        self,
        config: &Config,
    ) -> Result<Vec<(usize, &'a ExperimentConfig, Ready)>, Vec<String>> {
        let problems = self.problems(config);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(self
            .experiments
            .into_iter()
            .filter_map(|p| p.readiness.ok().map(|ready| (p.index, p.experiment, ready)))
            .collect())
    }
}
