//! The cloud as the host sees it: the domain model shared by every backend,
//! and the [`Cloud`] trait a backend implements.
//!
//! Backends know nothing of plugins or policy; they answer for the whole
//! fleet. The host narrows what they return to a plugin's scope before the
//! plugin sees it.

#[cfg(feature = "aws")]
pub mod aws;
pub mod aws_settings;
pub mod fan_out;
pub mod messaging;
pub mod sim;
pub mod undo;
pub mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Milliseconds on a backend's clock: virtual on the simulator, real on AWS.
/// The clock starts at 0 when the backend is created.
pub type Millis = u64;

/// EC2 state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Launching.
    Pending,
    /// Running.
    Running,
    /// Terminating.
    ShuttingDown,
    /// Gone (EC2 still describes it for about an hour).
    Terminated,
    /// Stopping.
    Stopping,
    /// Stopped.
    Stopped,
}

/// Auto Scaling lifecycle state of an instance in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    /// Launching into the group.
    Pending,
    /// Serving.
    InService,
    /// Leaving the group.
    Terminating,
    /// Gone from the group.
    Terminated,
    /// In the group, out of service on purpose.
    Standby,
    /// No longer in the group.
    Detached,
}

/// How an instance is bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    /// On demand.
    #[default]
    OnDemand,
    /// A spot instance.
    Spot,
}

/// An Auto Scaling process (AWS's names in the journal and the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScalingProcess {
    /// Launching instances (replacements included).
    Launch,
    /// Terminating instances to shrink the group.
    Terminate,
    /// Marking instances unhealthy.
    HealthCheck,
    /// Replacing instances marked unhealthy.
    ReplaceUnhealthy,
    /// Rebalancing zones.
    #[serde(rename = "AZRebalance")]
    AzRebalance,
    /// Acting on CloudWatch alarms.
    AlarmNotification,
    /// Scheduled actions.
    ScheduledActions,
    /// Registering with load balancers.
    AddToLoadBalancer,
    /// Instance refreshes.
    InstanceRefresh,
}

impl ScalingProcess {
    /// AWS's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ScalingProcess::Launch => "Launch",
            ScalingProcess::Terminate => "Terminate",
            ScalingProcess::HealthCheck => "HealthCheck",
            ScalingProcess::ReplaceUnhealthy => "ReplaceUnhealthy",
            ScalingProcess::AzRebalance => "AZRebalance",
            ScalingProcess::AlarmNotification => "AlarmNotification",
            ScalingProcess::ScheduledActions => "ScheduledActions",
            ScalingProcess::AddToLoadBalancer => "AddToLoadBalancer",
            ScalingProcess::InstanceRefresh => "InstanceRefresh",
        }
    }

    /// The process of AWS's name, if any.
    pub fn parse(name: &str) -> Option<ScalingProcess> {
        ScalingProcess::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Every process.
    pub const ALL: [ScalingProcess; 9] = [
        ScalingProcess::Launch,
        ScalingProcess::Terminate,
        ScalingProcess::HealthCheck,
        ScalingProcess::ReplaceUnhealthy,
        ScalingProcess::AzRebalance,
        ScalingProcess::AlarmNotification,
        ScalingProcess::ScheduledActions,
        ScalingProcess::AddToLoadBalancer,
        ScalingProcess::InstanceRefresh,
    ];
}

/// One instance of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Its id, `i-` and 8 or 17 hex digits.
    pub id: String,
    /// The Auto Scaling group it belongs to, if any.
    pub group: Option<String>,
    /// Its availability zone.
    pub zone: String,
    /// Its EC2 state.
    pub state: InstanceState,
    /// Its state in its group, if it has one.
    pub lifecycle: Option<Lifecycle>,
    /// Whether its health check passes.
    pub healthy: bool,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// Its EC2 instance type (empty when the backend did not say).
    #[serde(default)]
    pub instance_type: String,
    /// When it was launched, on the backend's clock: negative when that
    /// was before the backend's clock started; `i64::MIN` when the backend
    /// did not say.
    #[serde(default)]
    pub launched_ms: i64,
    /// On demand or spot.
    #[serde(default)]
    pub market: Market,
    /// Its subnet, when the backend says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Its zone's id (`use1-az2`): one physical zone has one id in every
    /// account, where each account maps zone names its own way. `None`
    /// when the backend cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<String>,
}

/// A subnet and the network ACL it is associated with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetAcl {
    /// The subnet.
    pub subnet: String,
    /// Its VPC.
    pub vpc: String,
    /// The network ACL.
    pub acl: String,
}

impl Instance {
    /// Whether it is shutting down or gone: a termination took effect.
    pub(crate) fn is_going_away(&self) -> bool {
        matches!(
            self.state,
            InstanceState::ShuttingDown | InstanceState::Terminated
        ) || matches!(
            self.lifecycle,
            Some(Lifecycle::Terminating | Lifecycle::Terminated)
        )
    }
}

/// An Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its name, unique in the region.
    pub name: String,
    /// The zones it launches into.
    pub zones: Vec<String>,
    /// Desired capacity.
    pub desired: u32,
    /// Minimum size.
    pub min: u32,
    /// Maximum size.
    pub max: u32,
    /// Its tags (opt-in and opt-out are read from them).
    pub tags: BTreeMap<String, String>,
}

/// An instance as its group reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The instance.
    pub id: String,
    /// Its zone.
    pub zone: String,
    /// Its state in the group.
    pub lifecycle: Lifecycle,
    /// Whether the group's health check passes.
    pub healthy: bool,
}

/// A group and its members as one read saw them: on AWS one
/// DescribeAutoScalingGroups answer carries both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// Shared: a poll over hundreds of groups copies members, not groups.
    pub group: Arc<Group>,
    /// Its instances, as it reports them.
    pub members: Vec<Member>,
}

impl GroupSnapshot {
    /// Its capacity, counted from its members.
    pub fn capacity(&self) -> Capacity {
        let mut capacity = Capacity {
            desired: self.group.desired,
            ..Capacity::default()
        };
        for member in &self.members {
            match member.lifecycle {
                Lifecycle::InService => {
                    capacity.in_service += 1;
                    capacity.unhealthy += u32::from(!member.healthy);
                }
                Lifecycle::Pending => capacity.pending += 1,
                Lifecycle::Terminating => capacity.terminating += 1,
                _ => {}
            }
        }
        capacity
    }

    /// The member with this id, if it is one.
    pub(crate) fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// Capacity of a group at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capacity {
    /// Desired capacity.
    pub desired: u32,
    /// Members in service, healthy or not.
    pub in_service: u32,
    /// Members launching.
    pub pending: u32,
    /// Members leaving.
    pub terminating: u32,
    /// Members in service whose health check fails.
    pub unhealthy: u32,
}

impl Capacity {
    /// Back at desired capacity with every instance in service and healthy.
    pub(crate) fn is_recovered(&self) -> bool {
        self.in_service == self.desired
            && self.pending == 0
            && self.terminating == 0
            && self.unhealthy == 0
    }

    /// Instances in service and healthy.
    pub(crate) fn healthy_in_service(&self) -> u32 {
        self.in_service.saturating_sub(self.unhealthy)
    }
}

/// Server-side narrowing of an instance listing. Backends may return more
/// than asked (the host filters again); they must not return less.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceQuery {
    /// Only instances of these groups (already resolved from patterns). A
    /// set: every instance of a large fleet is checked against it.
    pub groups: Option<BTreeSet<String>>,
    /// Only instances in this zone.
    pub zone: Option<String>,
    /// Only instances in one of these states; empty means any.
    pub states: Vec<InstanceState>,
    /// Only instances carrying all these tags.
    pub tags: BTreeMap<String, String>,
}

impl InstanceQuery {
    /// Whether an instance satisfies the query.
    pub fn matches(&self, instance: &Instance) -> bool {
        let group_ok = match (&self.groups, &instance.group) {
            (None, _) => true,
            (Some(names), Some(group)) => names.contains(group),
            (Some(_), None) => false,
        };
        group_ok
            && self.zone.as_ref().is_none_or(|zone| *zone == instance.zone)
            && (self.states.is_empty() || self.states.contains(&instance.state))
            && self
                .tags
                .iter()
                .all(|(key, value)| instance.tags.get(key) == Some(value))
    }
}

/// How to terminate an instance that belongs to a group.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum TerminateVia {
    /// EC2 TerminateInstances: the group notices at its next health check.
    #[default]
    Ec2,
    /// Auto Scaling TerminateInstanceInAutoScalingGroup without decrementing
    /// desired capacity, so lifecycle hooks fire.
    AutoScaling,
}

/// Failure of a backend call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// What was asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The API refused for rate: try again later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Any other failure, as the backend put it.
    #[error("backend failure: {0}")]
    Backend(String),
    /// The backend refused the request itself (what it names does not
    /// exist, these credentials may not, a parameter is invalid): the same
    /// request would be refused again, so it is not retried.
    #[error("refused: {0}")]
    Refused(String),
}

/// State of a (CloudWatch) alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmState {
    /// Within its threshold.
    Ok,
    /// Past its threshold.
    Alarm,
    /// Not enough data to tell.
    InsufficientData,
}

/// An alarm and why it is in its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// Its name.
    pub name: String,
    /// Its state now.
    pub state: AlarmState,
    /// Why, as the backend says.
    pub reason: String,
}

/// A message a backend delivered to a notification topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The topic.
    pub topic: String,
    /// The subject line.
    pub subject: String,
    /// The message.
    pub body: String,
    /// When, on the backend's clock.
    pub at_ms: Millis,
}

/// API calls a backend made (attempts, retries included), by service and
/// action, e.g. `("ec2", "DescribeInstances")`.
pub(crate) type ApiCalls = std::collections::BTreeMap<(String, String), u64>;

/// The account and region a backend acts in, as far as it knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Whereabouts {
    /// The account: AWS's 12 digits from STS, `sim` on the simulator.
    pub account: Option<String>,
    /// The region.
    pub region: Option<String>,
}

/// A fleet backend: the simulator or real AWS.
#[async_trait::async_trait]
pub trait Cloud: Send + Sync {
    /// Short name for reports: `sim` or `aws`.
    fn kind(&self) -> &'static str;

    /// Now, on this backend's clock.
    fn now_ms(&self) -> Millis;

    /// Wait on this backend's clock. The simulator advances virtual time and
    /// plays the fleet's events; AWS really waits.
    async fn sleep_ms(&self, ms: Millis);

    /// Groups with their members, sorted by name: every group when `names`
    /// is `None`, else the named ones (unknown names are left out).
    /// Shared, so that a backend may hand out what it already holds.
    async fn groups(&self, names: Option<&[String]>)
        -> Result<Vec<Arc<GroupSnapshot>>, CloudError>;

    /// Instances matching the query, sorted by id, as the instance API
    /// knows them. A backend that reads groups elsewhere may fill the group
    /// fields from the instance alone (AWS does, from the group tag);
    /// [`view::FleetView`] completes them from group snapshots.
    async fn instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, CloudError>;

    /// The instances with these ids, in one read where the API allows,
    /// including ones that terminated a while ago; unknown ids are left out.
    async fn instances_by_id(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError>;

    /// Terminate an instance; its state as the API's answer gives it
    /// (EC2's TerminateInstances does, Auto Scaling's does not).
    async fn terminate(
        &self,
        id: &str,
        via: TerminateVia,
    ) -> Result<Option<InstanceState>, CloudError>;

    /// Check, without acting, that terminating the instance is permitted
    /// (EC2's `DryRun`). Backends without permissions answer `Ok`.
    async fn check_terminate_permission(&self, _id: &str) -> Result<(), CloudError> {
        Ok(())
    }

    /// Stop a running instance (EC2's StopInstances).
    async fn stop_instance(&self, _id: &str) -> Result<(), CloudError> {
        Err(self.cannot("stop instances"))
    }

    /// Start a stopped instance (EC2's StartInstances): the undo of a stop.
    async fn start_instance(&self, _id: &str) -> Result<(), CloudError> {
        Err(self.cannot("start instances"))
    }

    /// Reboot a running instance (EC2's RebootInstances).
    async fn reboot_instance(&self, _id: &str) -> Result<(), CloudError> {
        Err(self.cannot("reboot instances"))
    }

    /// The processes suspended on a group now.
    async fn suspended_processes(&self, _group: &str) -> Result<Vec<ScalingProcess>, CloudError> {
        Err(self.cannot("read suspended processes"))
    }

    /// Suspend a group's processes (Auto Scaling's SuspendProcesses).
    async fn suspend_processes(
        &self,
        _group: &str,
        _processes: &[ScalingProcess],
    ) -> Result<(), CloudError> {
        Err(self.cannot("suspend processes"))
    }

    /// Resume a group's processes (ResumeProcesses): the undo of a suspend.
    async fn resume_processes(
        &self,
        _group: &str,
        _processes: &[ScalingProcess],
    ) -> Result<(), CloudError> {
        Err(self.cannot("resume processes"))
    }

    /// Each of `subnets` with the network ACL it is associated with now.
    async fn subnet_acls(&self, _subnets: &[String]) -> Result<Vec<SubnetAcl>, CloudError> {
        Err(self.cannot("read network ACLs"))
    }

    /// Move `subnets` (of `vpc`) behind a new network ACL that denies all
    /// traffic, tagged `wasmonkey:fault` = `tag`.
    async fn blackhole_subnets(
        &self,
        _vpc: &str,
        _subnets: &[String],
        _tag: &str,
    ) -> Result<(), CloudError> {
        Err(self.cannot("change network ACLs"))
    }

    /// Move each subnet back behind its ACL, then delete the deny-all ACLs
    /// tagged `tag`: the undo of [`Cloud::blackhole_subnets`], idempotent.
    async fn restore_subnets(&self, _restore: &[SubnetAcl], _tag: &str) -> Result<(), CloudError> {
        Err(self.cannot("change network ACLs"))
    }

    /// What a backend that cannot do `what` answers.
    fn cannot(&self, what: &str) -> CloudError {
        CloudError::Refused(format!("the {} backend cannot {what} yet", self.kind()))
    }

    /// The named alarms' states; unknown names are left out. A backend
    /// without alarms fails, so that a stop condition on one fails closed.
    async fn alarms(&self, _names: &[String]) -> Result<Vec<Alarm>, CloudError> {
        Err(CloudError::Backend(format!(
            "the {} backend has no alarms",
            self.kind()
        )))
    }

    /// The account's messaging services (SNS topics, EventBridge buses),
    /// reached with this backend's credentials and counted with its calls;
    /// the notifier decides what is sent, journalled and retried.
    fn messaging(&self) -> &dyn messaging::Messaging;

    /// Which account's fleet this backend acts on, as far as it can tell
    /// without a call: an undo owed on one backend is carried out only by
    /// the same backend (a simulation never "undoes" a real fault).
    fn identity(&self) -> String {
        self.kind().to_owned()
    }

    /// The account and region this backend acts in, for the journal, the
    /// report and the metrics' labels (AWS asks STS once, and remembers).
    /// What cannot be learnt is left out, never guessed.
    async fn whereabouts(&self) -> Whereabouts {
        Whereabouts::default()
    }

    /// The API calls made so far.
    fn api_calls(&self) -> ApiCalls {
        ApiCalls::new()
    }

    /// The kill switches every operator of this backend's accounts and
    /// regions sees (AWS: an SSM parameter in each).
    fn account_switches(&self) -> Vec<std::sync::Arc<dyn crate::kill_switch::Switch>> {
        Vec::new()
    }
}
