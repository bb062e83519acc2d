//! What of the fleet is in scope now, as the run's policy sees it: the
//! groups and instances in scope, what is out and by which rule, and what
//! each group may lose. One read of the groups and one of the instances,
//! which the run's plugins then reuse while fresh.

use std::sync::Arc;

use serde::Serialize;

use crate::cloud::view::FleetView;
use crate::cloud::Lifecycle;
use crate::config::Config;
use crate::policy::{Hidden, Policy};
use crate::text::one_line;

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

fn rule(why: &Hidden) -> &'static str {
    match why {
        Hidden::GroupOutOfScope { .. } => "pattern",
        Hidden::Standalone => "standalone",
        Hidden::MissingTag(_) => "tag",
        Hidden::NotOptedIn(_) => "opt-in",
        Hidden::OptedOut(_) => "opt-out",
        Hidden::Unknown => "unknown",
        Hidden::UnknownGroup { .. } => "unknown-group",
        Hidden::SharesSubnet { .. } => "shared-subnet",
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
    /// Nothing known in scope: the fleet could not be read.
    pub(crate) fn unknown() -> ScopeSurvey {
        ScopeSurvey {
            groups: Vec::new(),
            standalone: Vec::new(),
            out_of_scope: Vec::new(),
            groups_seen: 0,
            instances_seen: 0,
        }
    }

    /// What is in scope, in a line: the groups and instances, of those
    /// listed, what they may lose, and what is out by which rule.
    pub(crate) fn summary(&self) -> String {
        let instances: usize = self.groups.iter().map(|g| g.instances.len()).sum();
        let may_lose: u64 = self.groups.iter().map(|g| u64::from(g.may_lose)).sum();
        let mut out = format!(
            "{} group(s) with {instances} instance(s) in scope, of {} group(s) and {} instance(s) listed; the groups may lose {may_lose} in all",
            self.groups.len(),
            self.groups_seen,
            self.instances_seen
        );
        if !self.standalone.is_empty() {
            out.push_str(&format!(
                "; {} standalone instance(s)",
                self.standalone.len()
            ));
        }
        let mut by_rule = std::collections::BTreeMap::<&str, usize>::new();
        for excluded in &self.out_of_scope {
            *by_rule.entry(excluded.rule.as_str()).or_default() += 1;
        }
        if !by_rule.is_empty() {
            let rules: Vec<String> = by_rule
                .iter()
                .map(|(rule, n)| format!("{n} by {rule}"))
                .collect();
            out.push_str(&format!("; out of scope: {}", rules.join(", ")));
        }
        out
    }

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
    let scope = config.policy_scope()?;
    let policy = Policy {
        scope,
        blast_radius: config.blast_radius,
        dry_run: true,
        grants: Default::default(),
    };
    let groups = view.all_groups().await?;
    let instances = view.survey_instances().await?;
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
