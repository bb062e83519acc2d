//! The rules a plugin runs under: scope, opt-in / opt-out tags, grants,
//! blast radius and the dry-run leash.
//!
//! Pure: no I/O, no clock. The session asks it before every operation and
//! journals every denial.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use globset::{Glob, GlobSet, GlobSetBuilder};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cloud::{Group, Instance, InstanceState, Lifecycle};
use crate::schedule::KillGap;

/// A capability a plugin may ask for in its manifest and the operator may
/// allow. Reading the fleet in scope needs no grant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// `cloud.terminate`.
    Terminate,
    /// `notify.publish`.
    Notify,
    /// `probe.check` of operator-configured targets.
    ProbeTargets,
    /// `cloud.stop` (contract 0.2).
    Stop,
    /// `cloud.reboot` (contract 0.2).
    Reboot,
    /// `cloud.suspend-processes` (contract 0.2).
    SuspendProcesses,
    /// `cloud.blackhole-zone` (contract 0.2).
    Blackhole,
}

impl Grant {
    /// The name used in manifests and configs.
    pub fn name(self) -> &'static str {
        match self {
            Grant::Terminate => "terminate",
            Grant::Notify => "notify",
            Grant::ProbeTargets => "probe-targets",
            Grant::Stop => "stop",
            Grant::Reboot => "reboot",
            Grant::SuspendProcesses => "suspend-processes",
            Grant::Blackhole => "blackhole",
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a plugin may do: what its manifest asks, narrowed to what the
/// operator allows.
pub(crate) fn effective_grants(requested: &[Grant], allowed: &[Grant]) -> BTreeSet<Grant> {
    requested
        .iter()
        .filter(|grant| allowed.contains(grant))
        .copied()
        .collect()
}

/// `key` (the tag is present, any value) or `key=value` (exact value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct TagSelector {
    /// The tag's key.
    pub key: String,
    /// The value it must have; any value when absent.
    pub value: Option<String>,
}

impl TagSelector {
    /// Whether `tags` carry this tag.
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        self.matches_value(tags.get(&self.key))
    }

    /// Whether a tag value found under this selector's key matches.
    fn matches_value(&self, found: Option<&String>) -> bool {
        match (&self.value, found) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(want), Some(have)) => want == have,
        }
    }
}

impl FromStr for TagSelector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().to_owned())),
            None => (text.trim(), None),
        };
        if key.is_empty() {
            return Err(format!(
                "tag selector {text:?} has an empty key; write `key` or `key=value`"
            ));
        }
        Ok(TagSelector {
            key: key.to_owned(),
            value,
        })
    }
}

impl TryFrom<String> for TagSelector {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<TagSelector> for String {
    fn from(selector: TagSelector) -> String {
        selector.to_string()
    }
}

impl fmt::Display for TagSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// A set of group-name globs, compiled once.
#[derive(Debug, Clone)]
pub struct GroupPatterns {
    set: GlobSet,
}

impl GroupPatterns {
    /// Compile glob patterns (`*`, `?`, `[ab]`, `{a,b}`).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            let glob =
                Glob::new(pattern).map_err(|err| format!("group pattern {pattern:?}: {err}"))?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|err| err.to_string())?;
        Ok(GroupPatterns { set })
    }

    /// No pattern: matches nothing.
    pub fn none() -> Self {
        GroupPatterns {
            set: GlobSet::empty(),
        }
    }

    /// Whether a group name matches any pattern.
    pub fn matches(&self, name: &str) -> bool {
        self.set.is_match(name)
    }
}

/// Which part of the fleet an experiment may see and touch.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Groups whose name matches one of these.
    pub groups: GroupPatterns,
    /// Instances must carry every one of these tags.
    pub tags: Vec<TagSelector>,
    /// When set, an instance (or its group) must carry this tag.
    pub opt_in: Option<TagSelector>,
    /// An instance or group carrying this tag is never touched or shown.
    pub opt_out: Option<TagSelector>,
    /// Whether instances outside any Auto Scaling group are in scope.
    pub standalone: bool,
}

/// Limits on how much one experiment, and one run, may break.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BlastRadius {
    /// Most terminations in one experiment (dry-run ones count too).
    pub max_terminations: u32,
    /// Most terminations in one run, over all its experiments. Unset: the
    /// same as `max_terminations`, so adding an experiment never widens
    /// what a run may break unless the operator says so.
    pub max_terminations_per_run: Option<u32>,
    /// Most terminations in one group over the whole run. Unset: only the
    /// group's share bounds it.
    pub max_terminations_per_group_per_run: Option<u32>,
    /// A group must keep at least this many healthy in-service instances.
    pub min_healthy_per_group: u32,
    /// At most `floor(fraction × desired)` instances of a group per run.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_fraction_per_group: f64,
    /// A group is not killed again sooner than this after its last kill,
    /// across runs (from the kill history): `"1 workday"` (the next working
    /// day of `[schedule]`), or a duration such as `"36h"`.
    pub min_time_between_kills: Option<KillGap>,
}

impl fmt::Display for BlastRadius {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} termination(s) per experiment, {} per run",
            self.max_terminations,
            self.per_run()
        )?;
        if let Some(per_group) = self.max_terminations_per_group_per_run {
            write!(f, ", {per_group} per group per run")?;
        }
        write!(
            f,
            "; groups keep {} healthy and lose at most {} of desired",
            self.min_healthy_per_group, self.max_fraction_per_group
        )?;
        if let Some(gap) = self.min_time_between_kills {
            write!(f, "; a group's kills at least {} apart", String::from(gap))?;
        }
        Ok(())
    }
}

impl Default for BlastRadius {
    fn default() -> Self {
        BlastRadius {
            max_terminations: 1,
            max_terminations_per_run: None,
            max_terminations_per_group_per_run: None,
            min_healthy_per_group: 1,
            max_fraction_per_group: 0.5,
            min_time_between_kills: None,
        }
    }
}

impl BlastRadius {
    /// The most one run may terminate.
    pub fn per_run(&self) -> u32 {
        self.max_terminations_per_run
            .unwrap_or(self.max_terminations)
    }

    /// A group's share of one run: `floor(max_fraction_per_group ×
    /// desired)` (saturating; NaN is 0, which denies).
    pub(crate) fn group_share(&self, desired: u32) -> u32 {
        (self.max_fraction_per_group * f64::from(desired)).floor() as u32
    }

    /// The most one run may take from a group of `desired` with `healthy`
    /// healthy in service, as [`Policy::check_terminate`] counts it: its
    /// share, its cap, and no deeper than its healthy floor. What `plan`
    /// shows; the policy decides each termination with the same rules.
    pub(crate) fn may_lose(&self, desired: u32, healthy: u32) -> u32 {
        let mut most = self
            .group_share(desired)
            .min(healthy.saturating_sub(self.min_healthy_per_group));
        if let Some(cap) = self.max_terminations_per_group_per_run {
            most = most.min(cap);
        }
        most
    }
}

/// Why an instance or group is outside a plugin's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hidden {
    /// Its group matches none of the scope's patterns.
    GroupOutOfScope {
        /// The group.
        group: String,
    },
    /// It belongs to no group and standalone instances are out of scope.
    Standalone,
    /// It lacks a tag the scope requires.
    MissingTag(TagSelector),
    /// Opt-in is required and it did not opt in.
    NotOptedIn(TagSelector),
    /// It opted out.
    OptedOut(TagSelector),
    /// The backend knows no such instance.
    Unknown,
    /// It names a group the backend does not list, so the group's rules
    /// (opt-out, share, healthy floor) cannot be checked.
    UnknownGroup {
        /// The group the instance names.
        group: String,
    },
    /// A network fault would cut off a subnet that also holds an instance
    /// outside the scope.
    SharesSubnet {
        /// The subnet.
        subnet: String,
        /// The instance outside the scope, and why it is.
        with: String,
    },
}

impl fmt::Display for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hidden::GroupOutOfScope { group } => {
                write!(f, "group {group} matches no scope pattern")
            }
            Hidden::Standalone => f.write_str("it belongs to no Auto Scaling group"),
            Hidden::MissingTag(tag) => write!(f, "it lacks the required tag {tag}"),
            Hidden::NotOptedIn(tag) => write!(f, "it has not opted in with tag {tag}"),
            Hidden::OptedOut(tag) => write!(f, "it opted out with tag {tag}"),
            Hidden::Unknown => f.write_str("the backend knows no such instance"),
            Hidden::UnknownGroup { group } => write!(
                f,
                "its group {group} is not among the groups the backend lists, so its rules cannot be checked"
            ),
            Hidden::SharesSubnet { subnet, with } => write!(
                f,
                "subnet {subnet} also holds {with}, outside the scope"
            ),
        }
    }
}

/// A refused operation. The plugin gets a typed error; the journal gets the
/// rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Denial {
    /// The plugin lacks the grant.
    NotGranted(Grant),
    /// The target is outside the plugin's view. The plugin is told only that
    /// it is out of scope, so it learns nothing of what lies outside.
    OutOfScope {
        /// What the plugin named.
        target: String,
        /// Why it is hidden (for the journal; the plugin is not told).
        why: Hidden,
    },
    /// The instance is not running.
    NotRunning {
        /// The instance.
        instance: String,
        /// Its state.
        state: InstanceState,
    },
    /// The experiment's termination budget is spent.
    Budget {
        /// `max_terminations`.
        max: u32,
    },
    /// The run's termination budget is spent.
    RunBudget {
        /// `max_terminations_per_run`.
        max: u32,
    },
    /// The group lost as many instances this run as it may.
    GroupRunBudget {
        /// The group.
        group: String,
        /// `max_terminations_per_group_per_run`.
        max: u32,
    },
    /// The plugin published as many notifications as a run may.
    NotifyBudget {
        /// Notifications per run.
        max: u32,
    },
    /// The group would drop below its healthy floor.
    HealthyFloor {
        /// The group.
        group: String,
        /// Its healthy in-service instances now.
        healthy: u32,
        /// `min_healthy_per_group`.
        min: u32,
    },
    /// The group already lost its share for this run.
    GroupShare {
        /// The group.
        group: String,
        /// Its share, in instances.
        allowed: u32,
        /// `max_fraction_per_group`.
        fraction: f64,
        /// Its desired capacity, which the share is of.
        desired: u32,
    },
    /// The preflight found the host lacks the cloud permission to act.
    Permission {
        /// The instance.
        instance: String,
        /// What the cloud answered.
        detail: String,
    },
    /// The group was killed too recently (the kill history and this run).
    TooSoon {
        /// The group.
        group: String,
        /// When it was last killed.
        last: String,
        /// When it may be killed again.
        next: String,
        /// `min_time_between_kills`.
        gap: KillGap,
    },
    /// A scheduled run's working hours are over.
    OutsideHours {
        /// When they ended.
        end: String,
    },
    /// A stop condition tripped, or the kill switch is set: the run is
    /// stopped.
    Stopped {
        /// The condition that tripped, or the kill switch.
        condition: String,
    },
    /// A stop condition's state cannot be read: nothing is terminated until
    /// it can.
    StopUnknown {
        /// Why it cannot be read.
        why: String,
    },
    /// The kill could not be recorded in the kill ledger before it: with
    /// `min_time_between_kills`, no kill happens unrecorded.
    Ledger {
        /// Why.
        why: String,
    },
}

/// The rules whose denial means the host could not tell whether a kill
/// was safe (a stop condition it cannot read, a kill ledger it cannot
/// reach): a run that met one has not succeeded, it is inconclusive.
pub(crate) const UNKNOWING_RULES: [&str; 2] = ["stop-condition-unknown", "kill-ledger"];

impl Denial {
    /// Short rule name for the journal and report.
    pub(crate) fn rule(&self) -> &'static str {
        match self {
            Denial::NotGranted(_) => "grant",
            Denial::OutOfScope { why, .. } => match why {
                Hidden::OptedOut(_) => "opt-out",
                Hidden::NotOptedIn(_) => "opt-in",
                _ => "scope",
            },
            Denial::NotRunning { .. } => "not-running",
            Denial::Budget { .. } => "max-terminations",
            Denial::RunBudget { .. } => "max-terminations-per-run",
            Denial::GroupRunBudget { .. } => "max-terminations-per-group-per-run",
            Denial::NotifyBudget { .. } => "notifications-per-run",
            Denial::HealthyFloor { .. } => "min-healthy-per-group",
            Denial::GroupShare { .. } => "max-fraction-per-group",
            Denial::Permission { .. } => "iam-permission",
            Denial::TooSoon { .. } => "min-time-between-kills",
            Denial::OutsideHours { .. } => "outside-hours",
            Denial::Stopped { .. } => "stop-condition",
            Denial::StopUnknown { .. } => "stop-condition-unknown",
            Denial::Ledger { .. } => "kill-ledger",
        }
    }

    /// Whether the plugin should see this as `budget-exhausted` rather than
    /// `denied`.
    pub(crate) fn is_budget(&self) -> bool {
        matches!(
            self,
            Denial::Budget { .. }
                | Denial::RunBudget { .. }
                | Denial::GroupRunBudget { .. }
                | Denial::NotifyBudget { .. }
        )
    }

    /// What the plugin is told. Never reveals why something is out of
    /// scope, nor what a backend answered.
    pub(crate) fn plugin_message(&self) -> String {
        match self {
            Denial::OutOfScope { target, .. } => {
                format!("{target} is outside this experiment's scope")
            }
            // The backend's words may carry an account's ARNs.
            Denial::StopUnknown { .. } => {
                "a stop condition cannot be read, so nothing is terminated until it can".into()
            }
            Denial::Ledger { .. } => {
                "the kill cannot be recorded before it happens, so it does not happen".into()
            }
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NotGranted(grant) => write!(
                f,
                "the plugin has no '{grant}' grant (its manifest must ask for it and the operator must allow it)"
            ),
            Denial::OutOfScope { target, why } => write!(f, "{target} is out of scope: {why}"),
            Denial::NotRunning { instance, state } => {
                write!(f, "{instance} is not running (state {state:?})")
            }
            Denial::Budget { max } => {
                write!(f, "this experiment may terminate at most {max} instance(s) and has used them")
            }
            Denial::RunBudget { max } => {
                write!(f, "this run may terminate at most {max} instance(s) over all its experiments and has used them")
            }
            Denial::NotifyBudget { max } => {
                write!(f, "a plugin may publish at most {max} notification(s) per run and has")
            }
            Denial::GroupRunBudget { group, max } => {
                write!(f, "group {group} may lose at most {max} instance(s) per run and has lost them")
            }
            Denial::HealthyFloor { group, healthy, min } => write!(
                f,
                "group {group} has {healthy} healthy in-service instance(s) and must keep at least {min}"
            ),
            Denial::GroupShare {
                group,
                allowed,
                fraction,
                desired,
            } => write!(
                f,
                "group {group} may lose at most {allowed} instance(s) per run ({fraction} of desired {desired})"
            ),
            Denial::Permission { instance, detail } => {
                write!(f, "preflight: terminating {instance} would fail: {detail}")
            }
            Denial::TooSoon {
                group,
                last,
                next,
                gap,
            } => write!(
                f,
                "group {group} was last killed at {last}; min_time_between_kills = {gap} allows its next kill from {next}"
            ),
            Denial::OutsideHours { end } => write!(
                f,
                "the schedule's working hours ended at {end}: no more terminations in this run"
            ),
            Denial::Stopped { condition } => {
                write!(f, "the run is stopped by {condition}: no more terminations")
            }
            Denial::StopUnknown { why } => write!(
                f,
                "a stop condition cannot be read, so nothing is terminated until it can: {why}"
            ),
            Denial::Ledger { why } => write!(
                f,
                "the kill ledger cannot record this kill before it happens, so it does not happen: {why}"
            ),
        }
    }
}

/// What one experiment, or one run, has terminated so far (dry-run ones
/// included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    victims: BTreeMap<String, Option<String>>,
}

impl Tally {
    /// Count a termination.
    pub fn record(&mut self, instance: &str, group: Option<&str>) {
        self.victims
            .insert(instance.to_owned(), group.map(str::to_owned));
    }

    /// Terminations so far.
    pub fn total(&self) -> u32 {
        u32::try_from(self.victims.len()).unwrap_or(u32::MAX)
    }

    /// Terminations in one group so far.
    pub(crate) fn in_group(&self, group: &str) -> u32 {
        let count = self
            .victims
            .values()
            .filter(|g| g.as_deref() == Some(group))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// Whether this experiment already terminated the instance.
    pub fn contains(&self, instance: &str) -> bool {
        self.victims.contains_key(instance)
    }
}

/// A group as the policy needs it for a termination decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupView<'a> {
    /// The group, as listed.
    pub group: &'a Group,
    /// Healthy in-service instances of the group, not counting any this
    /// experiment already terminated (so dry runs decide as real runs would).
    pub healthy_in_service: u32,
}

/// The rules for one experiment.
#[derive(Debug, Clone)]
pub struct Policy {
    /// What the experiment may see and touch.
    pub scope: Scope,
    /// How much it may take away.
    pub blast_radius: BlastRadius,
    /// True unless the operator passed `--execute`.
    pub dry_run: bool,
    /// What it may do.
    pub grants: BTreeSet<Grant>,
}

impl Policy {
    /// Require a grant.
    pub(crate) fn require(&self, grant: Grant) -> Result<(), Denial> {
        if self.grants.contains(&grant) {
            Ok(())
        } else {
            Err(Denial::NotGranted(grant))
        }
    }

    /// Whether a group is in scope.
    pub(crate) fn group_visibility(&self, group: &Group) -> Result<(), Hidden> {
        if !self.scope.groups.matches(&group.name) {
            return Err(Hidden::GroupOutOfScope {
                group: group.name.clone(),
            });
        }
        if let Some(opt_out) = self
            .scope
            .opt_out
            .as_ref()
            .filter(|sel| sel.matches(&group.tags))
        {
            return Err(Hidden::OptedOut(opt_out.clone()));
        }
        Ok(())
    }

    /// Whether an instance is in scope. `group` is the instance's group, if
    /// it has one and the backend knows it.
    pub(crate) fn instance_visibility(
        &self,
        instance: &Instance,
        group: Option<&Group>,
    ) -> Result<(), Hidden> {
        // The instance's own tags win over its group's, without copying
        // either (this runs for every instance of every listing).
        let matches = |selector: &TagSelector| {
            let found = instance
                .tags
                .get(&selector.key)
                .or_else(|| group.and_then(|g| g.tags.get(&selector.key)));
            selector.matches_value(found)
        };
        match (&instance.group, group) {
            (None, _) if !self.scope.standalone => return Err(Hidden::Standalone),
            (None, _) => {}
            (Some(name), Some(group)) => self.group_visibility(group).map_err(|why| match why {
                Hidden::GroupOutOfScope { .. } => Hidden::GroupOutOfScope {
                    group: name.clone(),
                },
                other => other,
            })?,
            // Fail closed: a group the backend does not list has no tags to
            // check for opt-out and no size for its share or floor.
            (Some(name), None) => {
                return Err(if self.scope.groups.matches(name) {
                    Hidden::UnknownGroup {
                        group: name.clone(),
                    }
                } else {
                    Hidden::GroupOutOfScope {
                        group: name.clone(),
                    }
                });
            }
        }
        if let Some(opt_out) = self.scope.opt_out.as_ref().filter(|sel| matches(sel)) {
            return Err(Hidden::OptedOut(opt_out.clone()));
        }
        if let Some(opt_in) = self.scope.opt_in.as_ref().filter(|sel| !matches(sel)) {
            return Err(Hidden::NotOptedIn(opt_in.clone()));
        }
        if let Some(missing) = self.scope.tags.iter().find(|sel| !matches(sel)) {
            return Err(Hidden::MissingTag(missing.clone()));
        }
        Ok(())
    }

    /// Whether a plugin may ask to act on this instance at all (under
    /// `grant`: a termination, or a fault of contract 0.2): the grant
    /// and the scope. Decided from the instance and its group alone, before
    /// the host looks at anything else, so the answer for what lies outside
    /// the scope never depends on what is there.
    pub(crate) fn check_reach_as(
        &self,
        grant: Grant,
        instance: &Instance,
        group: Option<&Group>,
    ) -> Result<(), Denial> {
        self.require(grant)?;
        self.instance_visibility(instance, group)
            .map_err(|why| Denial::OutOfScope {
                target: instance.id.clone(),
                why,
            })
    }

    /// Decide a termination. `Ok(dry_run)` when allowed. `experiment` and
    /// `run` are what this experiment and the whole run terminated so far.
    #[cfg(test)]
    pub(crate) fn check_terminate(
        &self,
        instance: &Instance,
        group: Option<GroupView<'_>>,
        experiment: &Tally,
        run: &Tally,
    ) -> Result<bool, Denial> {
        self.check_disruption(Grant::Terminate, instance, group, experiment, run)
    }

    /// Decide an operation that takes an instance out of service (a
    /// termination; a stop or a reboot of contract 0.2) under `grant`: the
    /// same scope, blast radius and healthy floor for each.
    pub(crate) fn check_disruption(
        &self,
        grant: Grant,
        instance: &Instance,
        group: Option<GroupView<'_>>,
        experiment: &Tally,
        run: &Tally,
    ) -> Result<bool, Denial> {
        self.check_reach_as(grant, instance, group.map(|view| view.group))?;
        if !matches!(
            instance.state,
            InstanceState::Running | InstanceState::Pending
        ) || run.contains(&instance.id)
        {
            let state = if run.contains(&instance.id) && self.dry_run {
                InstanceState::ShuttingDown
            } else {
                instance.state
            };
            return Err(Denial::NotRunning {
                instance: instance.id.clone(),
                state,
            });
        }
        let max = self.blast_radius.max_terminations;
        if experiment.total() >= max {
            return Err(Denial::Budget { max });
        }
        let max = self.blast_radius.per_run();
        if run.total() >= max {
            return Err(Denial::RunBudget { max });
        }
        if let Some(view) = group {
            let name = &view.group.name;
            if let Some(max) = self.blast_radius.max_terminations_per_group_per_run {
                if run.in_group(name) >= max {
                    return Err(Denial::GroupRunBudget {
                        group: name.clone(),
                        max,
                    });
                }
            }
            let desired = view.group.desired;
            let fraction = self.blast_radius.max_fraction_per_group;
            let allowed = self.blast_radius.group_share(desired);
            if run.in_group(name) >= allowed {
                return Err(Denial::GroupShare {
                    group: name.clone(),
                    allowed,
                    fraction,
                    desired,
                });
            }
            let counts_toward_health =
                instance.healthy && instance.lifecycle == Some(Lifecycle::InService);
            let healthy_after = view.healthy_in_service
                - u32::from(counts_toward_health).min(view.healthy_in_service);
            let min = self.blast_radius.min_healthy_per_group;
            if healthy_after < min {
                return Err(Denial::HealthyFloor {
                    group: name.clone(),
                    healthy: view.healthy_in_service,
                    min,
                });
            }
        }
        Ok(self.dry_run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unknowing_rules_are_the_denials_that_could_not_tell() {
        let why = String::new;
        let unknowing = [
            Denial::StopUnknown { why: why() }.rule(),
            Denial::Ledger { why: why() }.rule(),
        ];
        assert_eq!(UNKNOWING_RULES, unknowing);
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn group(name: &str, desired: u32, group_tags: &[(&str, &str)]) -> Group {
        Group {
            name: name.into(),
            zones: vec!["z-a".into()],
            desired,
            min: 0,
            max: desired * 2,
            tags: tags(group_tags),
        }
    }

    fn instance(id: &str, group: Option<&str>, instance_tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            group: group.map(Into::into),
            zone: "z-a".into(),
            state: InstanceState::Running,
            lifecycle: group.map(|_| Lifecycle::InService),
            healthy: true,
            tags: tags(instance_tags),
            instance_type: "m5.large".into(),
            launched_ms: -1,
            market: crate::cloud::Market::OnDemand,
            subnet: None,
            zone_id: None,
        }
    }

    fn policy() -> Policy {
        Policy {
            scope: Scope {
                groups: GroupPatterns::new(&["web-*"]).unwrap(),
                tags: vec![],
                opt_in: None,
                opt_out: Some("chaos-opt-out".parse().unwrap()),
                standalone: false,
            },
            blast_radius: BlastRadius {
                max_terminations: 2,
                max_terminations_per_run: Some(3),
                max_terminations_per_group_per_run: None,
                min_healthy_per_group: 2,
                max_fraction_per_group: 0.5,
                min_time_between_kills: None,
            },
            dry_run: false,
            grants: [Grant::Terminate].into(),
        }
    }

    fn view(group: &Group, healthy: u32) -> Option<GroupView<'_>> {
        Some(GroupView {
            group,
            healthy_in_service: healthy,
        })
    }

    #[test]
    fn grants_are_the_intersection_of_asked_and_allowed() {
        let granted = effective_grants(
            &[Grant::Terminate, Grant::Notify],
            &[Grant::Notify, Grant::ProbeTargets],
        );
        assert_eq!(granted, [Grant::Notify].into());
        assert!(
            effective_grants(&[], &[Grant::Terminate, Grant::Notify, Grant::ProbeTargets])
                .is_empty()
        );
    }

    #[test]
    fn tag_selectors_parse_and_match() {
        let any: TagSelector = "chaos".parse().unwrap();
        let exact: TagSelector = "env = prod".parse().unwrap();
        assert_eq!(exact.to_string(), "env=prod");
        assert!(any.matches(&tags(&[("chaos", "whatever")])));
        assert!(exact.matches(&tags(&[("env", "prod")])));
        assert!(!exact.matches(&tags(&[("env", "staging")])));
        assert!(!exact.matches(&tags(&[])));
        assert!("=x".parse::<TagSelector>().is_err());
    }

    #[test]
    fn bad_glob_is_an_error_naming_the_pattern() {
        let err = GroupPatterns::new(&["web-[a"]).unwrap_err();
        assert!(err.contains("web-[a"), "{err}");
    }

    #[test]
    fn scope_hides_other_groups_standalone_and_opted_out() {
        let p = policy();
        let web = group("web-1", 4, &[]);
        let batch = group("batch", 4, &[]);
        let opted_out_group = group("web-2", 4, &[("chaos-opt-out", "true")]);
        assert_eq!(
            p.instance_visibility(&instance("i-1", Some("web-1"), &[]), Some(&web)),
            Ok(())
        );
        assert!(matches!(
            p.instance_visibility(&instance("i-2", Some("batch"), &[]), Some(&batch)),
            Err(Hidden::GroupOutOfScope { .. })
        ));
        assert_eq!(
            p.instance_visibility(&instance("i-3", None, &[]), None),
            Err(Hidden::Standalone)
        );
        assert!(matches!(
            p.instance_visibility(
                &instance("i-4", Some("web-1"), &[("chaos-opt-out", "1")]),
                Some(&web)
            ),
            Err(Hidden::OptedOut(_))
        ));
        assert!(matches!(
            p.instance_visibility(&instance("i-5", Some("web-2"), &[]), Some(&opted_out_group)),
            Err(Hidden::OptedOut(_))
        ));
        assert!(p.group_visibility(&opted_out_group).is_err());
    }

    #[test]
    fn opt_in_and_required_tags_use_group_tags_too() {
        let mut p = policy();
        p.scope.opt_in = Some("chaos=opt-in".parse().unwrap());
        p.scope.tags = vec!["env=prod".parse().unwrap()];
        let opted_in = group("web-1", 4, &[("chaos", "opt-in")]);
        let plain = group("web-2", 4, &[]);
        assert!(matches!(
            p.instance_visibility(&instance("i-1", Some("web-1"), &[]), Some(&opted_in)),
            Err(Hidden::MissingTag(_))
        ));
        assert_eq!(
            p.instance_visibility(
                &instance("i-1", Some("web-1"), &[("env", "prod")]),
                Some(&opted_in)
            ),
            Ok(())
        );
        assert!(matches!(
            p.instance_visibility(
                &instance("i-2", Some("web-2"), &[("env", "prod")]),
                Some(&plain)
            ),
            Err(Hidden::NotOptedIn(_))
        ));
    }

    #[test]
    fn an_instance_tag_overrides_its_group_tag() {
        let mut p = policy();
        p.scope.opt_in = Some("chaos=opt-in".parse().unwrap());
        let opted_in = group("web-1", 4, &[("chaos", "opt-in")]);
        let backed_out = instance("i-1", Some("web-1"), &[("chaos", "off")]);
        assert!(matches!(
            p.instance_visibility(&backed_out, Some(&opted_in)),
            Err(Hidden::NotOptedIn(_))
        ));
        let plain = instance("i-2", Some("web-1"), &[]);
        assert_eq!(p.instance_visibility(&plain, Some(&opted_in)), Ok(()));
    }

    #[test]
    fn terminate_needs_the_grant() {
        let mut p = policy();
        p.grants.clear();
        let web = group("web-1", 4, &[]);
        let denial = p
            .check_terminate(
                &instance("i-1", Some("web-1"), &[]),
                view(&web, 4),
                &Tally::default(),
                &Tally::default(),
            )
            .unwrap_err();
        assert_eq!(denial, Denial::NotGranted(Grant::Terminate));
        assert_eq!(denial.rule(), "grant");
    }

    #[test]
    fn out_of_scope_denial_tells_the_plugin_nothing_more() {
        let p = policy();
        let batch = group("batch", 4, &[]);
        let denial = p
            .check_terminate(
                &instance("i-9", Some("batch"), &[]),
                view(&batch, 4),
                &Tally::default(),
                &Tally::default(),
            )
            .unwrap_err();
        assert_eq!(denial.rule(), "scope");
        assert_eq!(
            denial.plugin_message(),
            "i-9 is outside this experiment's scope"
        );
        assert!(denial.to_string().contains("batch"));
    }

    #[test]
    fn budget_group_share_and_healthy_floor() {
        let p = policy();
        let web = group("web-1", 4, &[]);
        let other = group("web-2", 10, &[]);
        let mut tally = Tally::default();
        assert_eq!(
            p.check_terminate(
                &instance("i-1", Some("web-1"), &[]),
                view(&web, 4),
                &tally,
                &tally
            ),
            Ok(false)
        );
        tally.record("i-1", Some("web-1"));
        // 0.5 × 4 = 2 per group; and the floor of 2 healthy: 3 healthy - 1 = 2 is fine.
        assert_eq!(
            p.check_terminate(
                &instance("i-2", Some("web-1"), &[]),
                view(&web, 3),
                &tally,
                &tally
            ),
            Ok(false)
        );
        // With only 2 healthy left the floor denies.
        let floor = p
            .check_terminate(
                &instance("i-2", Some("web-1"), &[]),
                view(&web, 2),
                &tally,
                &tally,
            )
            .unwrap_err();
        assert_eq!(floor.rule(), "min-healthy-per-group");
        tally.record("i-2", Some("web-1"));
        // The experiment's budget of 2 is spent, whatever the group.
        let budget = p
            .check_terminate(
                &instance("i-3", Some("web-2"), &[]),
                view(&other, 10),
                &tally,
                &tally,
            )
            .unwrap_err();
        assert!(budget.is_budget());
    }

    #[test]
    fn group_share_is_floored() {
        let mut p = policy();
        p.blast_radius.max_terminations = 10;
        p.blast_radius.min_healthy_per_group = 0;
        p.blast_radius.max_fraction_per_group = 0.34;
        let web = group("web-1", 2, &[]);
        let denial = p
            .check_terminate(
                &instance("i-1", Some("web-1"), &[]),
                view(&web, 2),
                &Tally::default(),
                &Tally::default(),
            )
            .unwrap_err();
        assert_eq!(denial.rule(), "max-fraction-per-group");
    }

    #[test]
    fn dry_run_is_reported_and_the_same_instance_twice_is_denied() {
        let mut p = policy();
        p.dry_run = true;
        let web = group("web-1", 4, &[]);
        let mut tally = Tally::default();
        let victim = instance("i-1", Some("web-1"), &[]);
        assert_eq!(
            p.check_terminate(&victim, view(&web, 4), &tally, &tally),
            Ok(true)
        );
        tally.record("i-1", Some("web-1"));
        assert_eq!(
            p.check_terminate(&victim, view(&web, 3), &tally, &tally)
                .unwrap_err()
                .rule(),
            "not-running"
        );
    }

    #[test]
    fn terminated_instances_are_not_running() {
        let p = policy();
        let web = group("web-1", 4, &[]);
        let mut gone = instance("i-1", Some("web-1"), &[]);
        gone.state = InstanceState::Terminated;
        assert_eq!(
            p.check_terminate(&gone, view(&web, 4), &Tally::default(), &Tally::default())
                .unwrap_err()
                .rule(),
            "not-running"
        );
    }

    #[test]
    fn an_instance_of_a_group_the_backend_does_not_list_is_out_of_scope() {
        let p = policy();
        // Its group would match the scope, but nothing is known of its tags
        // (an opt-out among them?), its size or its health.
        let orphan = instance("i-1", Some("web-9"), &[]);
        assert_eq!(
            p.instance_visibility(&orphan, None),
            Err(Hidden::UnknownGroup {
                group: "web-9".into()
            })
        );
        let denial = p
            .check_terminate(&orphan, None, &Tally::default(), &Tally::default())
            .unwrap_err();
        assert_eq!(denial.rule(), "scope");
        assert_eq!(
            denial.plugin_message(),
            "i-1 is outside this experiment's scope"
        );
    }

    /// A fresh experiment's decision on `id` of `group`, after `run`.
    fn after_run(p: &Policy, id: &str, group: &Group, healthy: u32, run: &Tally) -> Denial {
        p.check_terminate(
            &instance(id, Some(&group.name), &[]),
            view(group, healthy),
            &Tally::default(),
            run,
        )
        .unwrap_err()
    }

    #[test]
    fn the_run_budget_counts_every_experiment() {
        let p = policy();
        let web = group("web-1", 10, &[]);
        let mut run = Tally::default();
        run.record("i-1", Some("web-1"));
        run.record("i-2", Some("web-2"));
        run.record("i-3", Some("web-2"));
        // A fresh experiment has its own budget of 2 left, but the run's 3 are spent.
        let denial = after_run(&p, "i-4", &web, 10, &run);
        assert_eq!(denial, Denial::RunBudget { max: 3 });
        assert!(denial.is_budget());
        // Unset, the run may break as much as one experiment.
        let mut unset = policy();
        unset.blast_radius.max_terminations_per_run = None;
        assert_eq!(unset.blast_radius.per_run(), 2);
    }

    proptest::proptest! {
        /// What `plan` shows a group may lose is exactly how many of its
        /// healthy instances the policy then allows terminating, one after
        /// another, in a run with budget to spare.
        #[test]
        fn the_preview_of_a_group_is_what_the_policy_allows(
            desired in 0u32..12,
            healthy_part in 0u32..=100,
            min_healthy in 0u32..6,
            fraction in 0.0f64..=1.0,
            cap in proptest::option::of(0u32..6),
        ) {
            let healthy = desired * healthy_part / 100;
            let mut p = policy();
            p.blast_radius = BlastRadius {
                max_terminations: 100,
                max_terminations_per_run: Some(100),
                max_terminations_per_group_per_run: cap,
                min_healthy_per_group: min_healthy,
                max_fraction_per_group: fraction,
                min_time_between_kills: None,
            };
            let web = group("web-1", desired, &[]);
            let mut experiment = Tally::default();
            let mut run = Tally::default();
            let mut still_healthy = healthy;
            let mut allowed = 0;
            for n in 0..healthy {
                let id = format!("i-{n}");
                let candidate = instance(&id, Some("web-1"), &[]);
                if p.check_terminate(&candidate, view(&web, still_healthy), &experiment, &run).is_err() {
                    break;
                }
                experiment.record(&id, Some("web-1"));
                run.record(&id, Some("web-1"));
                still_healthy = still_healthy.saturating_sub(1);
                allowed += 1;
            }
            proptest::prop_assert_eq!(p.blast_radius.may_lose(desired, healthy), allowed);
        }
    }

    #[test]
    fn a_group_loses_its_share_once_per_run_and_no_more_than_its_cap() {
        let mut p = policy();
        p.blast_radius.max_terminations_per_run = Some(10);
        p.blast_radius.min_healthy_per_group = 0;
        let web = group("web-1", 4, &[]);
        let mut run = Tally::default();
        run.record("i-1", Some("web-1"));
        run.record("i-2", Some("web-1"));
        // Two earlier experiments took 0.5 × 4 = 2: a third may take none.
        let share = after_run(&p, "i-3", &web, 2, &run);
        assert_eq!(share.rule(), "max-fraction-per-group");
        p.blast_radius.max_fraction_per_group = 1.0;
        p.blast_radius.max_terminations_per_group_per_run = Some(2);
        let cap = after_run(&p, "i-3", &web, 2, &run);
        assert_eq!(
            cap,
            Denial::GroupRunBudget {
                group: "web-1".into(),
                max: 2
            }
        );
    }
}
