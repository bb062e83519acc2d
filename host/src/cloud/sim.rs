//! The simulated AWS fleet: Auto Scaling groups on a virtual clock.
//!
//! Everything is deterministic for a seed: instance ids and launch jitter
//! come from one seeded ChaCha8 stream, events play in time order (ties in
//! the order they were scheduled), and only ordered collections are
//! iterated. No real time passes: [`Cloud::sleep_ms`] jumps the clock
//! forward, playing the events on the way.
//!
//! The model, per group (timings from its [`GroupSpec`]):
//!
//! - Terminating an instance makes it `shutting-down` / `Terminating` (not
//!   healthy) and, `shutdown_secs` later, `terminated` / `Terminated`.
//!   Terminated instances stay describable for an hour, as in EC2, then
//!   are forgotten (a simulation over months stays as fast as its fleet).
//! - The group replaces a lost instance: at once after an Auto Scaling
//!   termination, `detect_secs` after an EC2 one or a failed launch. It
//!   launches into the zone with the fewest pending or in-service instances
//!   of the group (ties go to zone order), skipping zones in an outage, and
//!   never above `desired` (hence never above `max`).
//! - A launch is `pending` / `Pending` for `launch_secs × slow_launch_factor
//!   ± launch_jitter_secs` (at least 1 s), then `running` / `InService`. Its
//!   health check fails for `warmup_secs`; if that outlasts
//!   `health_check_grace_secs`, the group replaces it as unhealthy when the
//!   grace ends, as AWS does, so the group never recovers.
//!
//! As in EC2, terminating an instance that is already shutting down or
//! terminated succeeds and changes nothing. Outages only stop launches:
//! instances already running in the zone keep running.

mod fleet;

pub use fleet::{AlarmSpec, FleetSpec, GroupSpec, InstanceSpec, OutageSpec, DEFAULT_REGION};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::messaging::{BusEvent, ChannelRole};
use super::{
    Alarm, AlarmState, ApiCalls, Capacity, Cloud, CloudError, Group, GroupSnapshot, Instance,
    InstanceQuery, InstanceState, Lifecycle, Member, Millis, Published, TerminateVia,
};

/// Tag AWS puts on every instance an Auto Scaling group launches.
pub(crate) const GROUP_NAME_TAG: &str = "aws:autoscaling:groupName";

/// No launch is faster; also keeps a zero-delay fleet from looping forever
/// at one instant.
const MIN_LAUNCH_MS: Millis = 1_000;

/// Shutdown time of standalone instances, which have no group to say.
const STANDALONE_SHUTDOWN_MS: Millis = 5_000;

/// How long EC2 goes on describing a terminated instance.
const TERMINATED_VISIBLE_MS: Millis = 3_600_000;

/// The simulated fleet backend.
pub struct SimCloud {
    account: String,
    region: String,
    state: Mutex<State>,
}

/// One change in the fleet, for reports and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimEvent {
    /// When, on the virtual clock.
    pub at_ms: Millis,
    /// The instance that changed.
    pub instance: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Its zone.
    pub zone: String,
    /// What happened.
    pub change: Change,
}

/// What happened to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// The group launched it: pending.
    LaunchStarted,
    /// Its launch failed: pending → terminated.
    LaunchFailed,
    /// Running and in service (its health check may still fail: warm-up).
    InService,
    /// Warm-up over: its health check passes.
    WarmedUp,
    /// Still failing its health check when the grace period ended; the
    /// group terminates and replaces it.
    HealthCheckFailed,
    /// Termination began: shutting-down.
    ShuttingDown,
    /// Terminated.
    Terminated,
    /// Stopped (a fault): out of service until started.
    Stopped,
    /// Started again: pending until it runs.
    Started,
    /// Rebooted (a fault): failing its health check until it is back.
    Rebooted,
    /// Running again after a start or a reboot.
    Back,
    /// Its subnet was cut off the network (a fault): it fails its health
    /// check.
    CutOff,
    /// Its subnet is back on the network.
    Reconnected,
}

/// A zone's id as AWS gives it (`use1-az2`): each account maps its zone
/// letters to physical zones its own way, and so does the simulator, by the
/// account's name (the default account, `sim`, maps `a` to `az1`, `b` to
/// `az2`, …). `None` for a zone not named for the region.
fn zone_id(account: &str, region: &str, zone: &str) -> Option<String> {
    let letter = zone.strip_prefix(region)?.bytes().next()?;
    let index = u64::from(letter.checked_sub(b'a')?);
    let shift = if account == "sim" {
        0
    } else {
        account
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    };
    let number = (index.wrapping_add(shift)) % 6 + 1;
    // us-east-1 → use1, ap-southeast-2 → apse2, eu-central-1 → euc1.
    let mut parts = region.split('-');
    let (area, direction, digit) = (parts.next()?, parts.next()?, parts.next()?);
    let mut short = area.to_owned();
    for (word, letter) in [
        ("north", 'n'),
        ("south", 's'),
        ("east", 'e'),
        ("west", 'w'),
        ("central", 'c'),
    ] {
        if direction.contains(word) {
            short.push(letter);
        }
    }
    Some(format!("{short}{digit}-az{number}"))
}

/// An instance id as a number: the id is `i-0` and the key in 16 lowercase
/// hex digits, so keys sort as ids do, and maps keyed by number stay fast
/// with 100,000 instances.
type Key = u64;

/// The id of a key.
fn id_of(key: Key) -> String {
    format!("i-0{key:016x}")
}

/// The key of an id, if it is one the simulator could have made.
fn key_of(id: &str) -> Option<Key> {
    let hex = id.strip_prefix("i-0")?;
    let canonical = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if canonical {
        Key::from_str_radix(hex, 16).ok()
    } else {
        None
    }
}

/// Where an initial instance comes from, by index in the spec. Ordered so
/// that sorting (key, origin) pairs is deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    Group { group: usize, zone: usize },
    Standalone(usize),
}

/// Something scheduled on the virtual clock.
#[derive(Debug)]
enum Event {
    LaunchEnd {
        id: Key,
        fails: bool,
    },
    WarmupEnd {
        id: Key,
    },
    GraceEnd {
        id: Key,
    },
    ShutdownEnd {
        id: Key,
    },
    /// A terminated instance drops out of EC2's answers.
    Forget {
        id: Key,
    },
    /// The group noticed a loss: launch one replacement.
    Replace {
        group: String,
    },
    /// The group's health check sees a stopped member: unless health
    /// checks or their replacements are suspended, it replaces it.
    StoppedNoticed {
        id: Key,
    },
    /// A started or rebooted instance is running and healthy again.
    Back {
        id: Key,
    },
}

/// A group as the simulator runs it: members, timings in ms, faults.
#[derive(Debug)]
struct GroupState {
    group: Arc<Group>,
    /// Members not yet terminated.
    members: BTreeSet<Key>,
    /// Tags of the instances it launches.
    instance_tags: BTreeMap<String, String>,
    launch_ms: Millis,
    jitter_ms: Millis,
    detect_ms: Millis,
    shutdown_ms: Millis,
    warmup_ms: Millis,
    grace_ms: Millis,
    failed_launches_left: u32,
    slow_launch_factor: f64,
    /// What its instances are.
    instance_type: String,
    market: crate::cloud::Market,
    /// Its processes suspended now.
    suspended: BTreeSet<crate::cloud::ScalingProcess>,
    /// What a read of it answers, until a member changes (see
    /// [`State::record`]): most groups are unchanged between two polls.
    snapshot: Option<Arc<GroupSnapshot>>,
}

#[derive(Debug)]
struct Outage {
    zone: String,
    from_ms: Millis,
    until_ms: Millis,
}

#[derive(Debug)]
struct State {
    now: Millis,
    /// Breaks ties between events at the same time: scheduling order.
    seq: u64,
    events: BTreeMap<(Millis, u64), Event>,
    rng: ChaCha8Rng,
    instances: BTreeMap<Key, Instance>,
    groups: BTreeMap<String, GroupState>,
    outages: Vec<Outage>,
    alarms: Vec<AlarmSpec>,
    throttle_every: Option<u64>,
    calls: u64,
    /// Calls by the AWS action each stands for.
    calls_by_action: BTreeMap<&'static str, u64>,
    outbox: Vec<Published>,
    /// Events put on buses, with the bus, in order.
    bus: Vec<(String, BusEvent)>,
    /// The network ACL of each subnet that is not on the default one.
    acls: BTreeMap<String, String>,
    /// The deny-all ACLs, by their `wasmonkey:fault` tag.
    deny_acls: BTreeMap<String, String>,
    timeline: Vec<SimEvent>,
    /// Off for long simulations, whose timeline would only grow.
    keep_timeline: bool,
    /// The healthy floor watched for dips, if any.
    floor: Option<u32>,
    dips: BTreeMap<String, Dips>,
}

/// How a group fared against a healthy floor (see [`SimCloud::watch_floor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(crate) struct Dips {
    /// Times its healthy in-service count fell below the floor.
    pub below_floor: u32,
    /// The fewest healthy in-service instances it had.
    pub lowest_healthy: u32,
    #[serde(skip)]
    below: bool,
}

fn secs_to_ms(secs: u64) -> Millis {
    secs.saturating_mul(1_000)
}

impl SimCloud {
    /// Load a fleet file (see `examples/fleet.toml`) and build its fleet.
    /// Errors name the file and, where possible, the group and the field.
    pub fn from_fleet_file(path: &Path, seed: u64) -> anyhow::Result<SimCloud> {
        Ok(SimCloud::build(FleetSpec::load(path)?, seed))
    }

    /// Validate a fleet spec and build its fleet: every group at desired
    /// capacity, all instances running, in service and healthy, at time 0.
    pub fn new(spec: FleetSpec, seed: u64) -> anyhow::Result<SimCloud> {
        spec.validate()?;
        Ok(SimCloud::build(spec, seed))
    }

    fn build(spec: FleetSpec, seed: u64) -> SimCloud {
        let mut state = State {
            now: 0,
            seq: 0,
            events: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            instances: BTreeMap::new(),
            groups: BTreeMap::new(),
            outages: spec
                .outages
                .iter()
                .map(|outage| Outage {
                    zone: outage.zone.clone(),
                    from_ms: secs_to_ms(outage.from_secs),
                    until_ms: secs_to_ms(outage.until_secs),
                })
                .collect(),
            alarms: spec.alarms.clone(),
            throttle_every: spec.throttle_every,
            calls: 0,
            calls_by_action: BTreeMap::new(),
            outbox: Vec::new(),
            bus: Vec::new(),
            acls: BTreeMap::new(),
            deny_acls: BTreeMap::new(),
            timeline: Vec::new(),
            keep_timeline: true,
            floor: None,
            dips: BTreeMap::new(),
        };
        // Keys are drawn in spec order (groups, then standalone instances),
        // so ids follow the file. Then everything is built in key order:
        // maps built in bulk from sorted input are fast even in debug
        // builds, where 100,000 inserts one by one are not.
        let mut slots = Vec::new();
        for (group, spec) in spec.groups.iter().enumerate() {
            for index in 0..spec.desired as usize {
                // Round-robin over the zones; validation guarantees some.
                let zone = index % spec.zones.len().max(1);
                slots.push((state.rng.next_u64(), Origin::Group { group, zone }));
            }
        }
        for index in 0..spec.instances.len() {
            slots.push((state.rng.next_u64(), Origin::Standalone(index)));
        }
        slots.sort_unstable();
        // A repeat among 100,000 draws has odds of about 1 in 10^9: redraw
        // the key of the later instance in the file.
        while let Some(at) = slots.windows(2).position(|pair| pair[0].0 == pair[1].0) {
            slots[at + 1].0 = state.rng.next_u64();
            slots.sort_unstable();
        }

        let instance_tags: Vec<BTreeMap<String, String>> = spec
            .groups
            .iter()
            .map(|group| {
                let mut tags = group.tags.clone();
                tags.insert(GROUP_NAME_TAG.to_string(), group.name.clone());
                tags
            })
            .collect();
        let mut members: Vec<Vec<Key>> = vec![Vec::new(); spec.groups.len()];
        state.instances = slots
            .into_iter()
            .filter_map(|(key, origin)| {
                let instance = match origin {
                    Origin::Group { group, zone } => {
                        let spec = spec.groups.get(group)?;
                        members.get_mut(group)?.push(key);
                        Instance {
                            id: id_of(key),
                            group: Some(spec.name.clone()),
                            zone: spec.zones.get(zone)?.clone(),
                            state: InstanceState::Running,
                            lifecycle: Some(Lifecycle::InService),
                            healthy: true,
                            tags: instance_tags.get(group)?.clone(),
                            instance_type: spec.instance_type.clone(),
                            launched_ms: launched_before(key),
                            market: spec.market,
                            subnet: Some(subnet_of(spec.zones.get(zone)?)),
                            zone_id: None,
                        }
                    }
                    Origin::Standalone(index) => {
                        let spec = spec.instances.get(index)?;
                        Instance {
                            id: id_of(key),
                            group: None,
                            zone: spec.zone.clone(),
                            state: InstanceState::Running,
                            lifecycle: None,
                            healthy: true,
                            tags: spec.tags.clone(),
                            instance_type: spec.instance_type.clone(),
                            launched_ms: launched_before(key),
                            market: crate::cloud::Market::OnDemand,
                            subnet: Some(subnet_of(&spec.zone)),
                            zone_id: None,
                        }
                    }
                };
                Some((key, instance))
            })
            .collect();
        let groups = spec.groups.into_iter().zip(instance_tags).zip(members);
        for ((group, instance_tags), members) in groups {
            let group_state = GroupState {
                group: Arc::new(Group {
                    name: group.name.clone(),
                    zones: group.zones,
                    desired: group.desired,
                    min: group.min,
                    max: group.max,
                    tags: group.tags,
                }),
                // Already in key order: a cheap bulk build.
                members: members.into_iter().collect(),
                instance_tags,
                launch_ms: secs_to_ms(group.launch_secs),
                jitter_ms: secs_to_ms(group.launch_jitter_secs),
                detect_ms: secs_to_ms(group.detect_secs),
                shutdown_ms: secs_to_ms(group.shutdown_secs),
                warmup_ms: secs_to_ms(group.warmup_secs),
                grace_ms: secs_to_ms(group.health_check_grace_secs),
                failed_launches_left: group.failed_launches,
                slow_launch_factor: group.slow_launch_factor,
                instance_type: group.instance_type.clone(),
                market: group.market,
                suspended: BTreeSet::new(),
                snapshot: None,
            };
            state.groups.insert(group.name, group_state);
        }
        SimCloud {
            account: "sim".to_owned(),
            region: spec.region,
            state: Mutex::new(state),
        }
    }

    /// The same fleet, as account `account`'s in `region` (one leg of a run
    /// over several simulated accounts).
    pub fn as_account(mut self, account: &str, region: &str) -> SimCloud {
        account.clone_into(&mut self.account);
        region.clone_into(&mut self.region);
        self
    }

    /// The fleet's region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Every notification published so far, oldest first.
    pub fn outbox(&self) -> Vec<Published> {
        self.lock().outbox.clone()
    }

    /// Every event put on a bus so far, with its bus, oldest first.
    pub fn bus_events(&self) -> Vec<(String, BusEvent)> {
        self.lock().bus.clone()
    }

    /// Every change in the fleet since time 0, in the order it happened.
    /// The initial instances are not in it.
    pub fn timeline(&self) -> Vec<SimEvent> {
        self.lock().timeline.clone()
    }

    /// Keep the timeline (the default) or not: a simulation of months
    /// would only grow it.
    pub fn keep_timeline(&self, keep: bool) {
        self.lock().keep_timeline = keep;
    }

    /// Count, per group, the times its healthy in-service count falls below
    /// `floor`, from now on.
    pub(crate) fn watch_floor(&self, floor: u32) {
        self.lock().floor = Some(floor);
    }

    /// What [`SimCloud::watch_floor`] saw, by group (groups that changed).
    pub(crate) fn dips(&self) -> BTreeMap<String, Dips> {
        self.lock().dips.clone()
    }

    /// When the next scheduled event is due, if any. It may turn out to
    /// change nothing (e.g. the warm-up end of an instance since terminated).
    #[cfg(test)]
    pub(crate) fn next_event_ms(&self) -> Option<Millis> {
        self.lock().events.keys().next().map(|&(at, _)| at)
    }

    /// How many API calls (everything but the clock) were made, throttled
    /// ones included.
    #[cfg(test)]
    pub(crate) fn api_calls(&self) -> u64 {
        self.lock().calls
    }

    /// Every group, sorted by name.
    pub async fn list_groups(&self) -> Result<Vec<Group>, CloudError> {
        let state = self.call("DescribeAutoScalingGroups")?;
        Ok(state
            .groups
            .values()
            .map(|group| Group::clone(&group.group))
            .collect())
    }

    /// Instances matching the query, sorted by id.
    pub async fn list_instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        let state = self.call("DescribeInstances")?;
        Ok(state
            .instances
            .values()
            .filter(|instance| query.matches(instance))
            .map(|instance| self.described(instance))
            .collect())
    }

    /// An instance as the API describes it: with its zone's id.
    fn described(&self, instance: &Instance) -> Instance {
        Instance {
            zone_id: zone_id(&self.account, &self.region, &instance.zone),
            ..instance.clone()
        }
    }

    /// One instance, including one that terminated a while ago.
    pub async fn describe_instance(&self, id: &str) -> Result<Option<Instance>, CloudError> {
        let state = self.call("DescribeInstances")?;
        Ok(key_of(id)
            .and_then(|key| state.instances.get(&key))
            .map(|instance| self.described(instance)))
    }

    /// Capacity of the named groups, in the order asked.
    pub async fn capacity(&self, groups: &[String]) -> Result<Vec<(String, Capacity)>, CloudError> {
        let state = self.call("DescribeAutoScalingGroups")?;
        Ok(groups
            .iter()
            .filter_map(|name| {
                let group = state.groups.get(name)?;
                Some((name.clone(), state.capacity(group)))
            })
            .collect())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only a bug can panic with the lock held; carrying on beats
        // failing every later call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lock for an API call, which may be throttled.
    fn call(&self, operation: &'static str) -> Result<MutexGuard<'_, State>, CloudError> {
        let mut state = self.lock();
        state.calls += 1;
        *state.calls_by_action.entry(operation).or_default() += 1;
        if let Some(every) = state.throttle_every {
            if state.calls.is_multiple_of(every) {
                return Err(CloudError::Throttled(format!(
                    "{operation}: rate exceeded (simulated: throttle_every = {every})"
                )));
            }
        }
        Ok(state)
    }
}

impl fmt::Debug for SimCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SimCloud")
            .field("region", &self.region)
            .field("now_ms", &state.now)
            .field("groups", &state.groups.len())
            .field("instances", &state.instances.len())
            .finish_non_exhaustive()
    }
}

impl State {
    /// A key for a new instance (its id looks like EC2's: `i-0` + 16 hex
    /// digits); redrawn on the (unlikely) collision.
    fn fresh_key(&mut self) -> Key {
        loop {
            let key = self.rng.next_u64();
            if !self.instances.contains_key(&key) {
                return key;
            }
        }
    }

    fn schedule(&mut self, at: Millis, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    fn record(&mut self, id: Key, change: Change) {
        let Some(instance) = self.instances.get(&id) else {
            return;
        };
        let group = instance.group.clone();
        if let Some(state) = group.as_ref().and_then(|g| self.groups.get_mut(g)) {
            state.snapshot = None;
        }
        if self.keep_timeline {
            self.timeline.push(SimEvent {
                at_ms: self.now,
                instance: instance.id.clone(),
                group: group.clone(),
                zone: instance.zone.clone(),
                change,
            });
        }
        if let (Some(floor), Some(group)) = (self.floor, group) {
            self.watch(&group, floor);
        }
    }

    /// Every change of a member passes here, after the change: a dip below
    /// the floor cannot happen unseen.
    fn watch(&mut self, group: &str, floor: u32) {
        let Some(state) = self.groups.get(group) else {
            return;
        };
        let healthy = self.capacity(state).healthy_in_service();
        let dips = self.dips.entry(group.to_owned()).or_insert(Dips {
            lowest_healthy: healthy,
            ..Dips::default()
        });
        let below = healthy < floor;
        dips.below_floor += u32::from(below && !dips.below);
        dips.below = below;
        dips.lowest_healthy = dips.lowest_healthy.min(healthy);
    }

    /// Play every event due up to `until`, then set the clock to it.
    fn advance(&mut self, until: Millis) {
        while let Some(entry) = self.events.first_entry() {
            let (at, _) = *entry.key();
            if at > until {
                break;
            }
            let event = entry.remove();
            // Events are never scheduled in the past; max() keeps the clock
            // monotonic even so.
            self.now = self.now.max(at);
            self.apply(event);
        }
        self.now = self.now.max(until);
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::LaunchEnd { id, fails } => self.launch_end(id, fails),
            Event::WarmupEnd { id } => {
                if let Some(instance) = self.instances.get_mut(&id) {
                    if instance.lifecycle == Some(Lifecycle::InService) && !instance.healthy {
                        instance.healthy = true;
                        self.record(id, Change::WarmedUp);
                    }
                }
            }
            Event::GraceEnd { id } => self.replace_if(id, |instance| {
                instance.lifecycle == Some(Lifecycle::InService) && !instance.healthy
            }),
            Event::ShutdownEnd { id } => self.shutdown_end(id),
            Event::Forget { id } => {
                self.instances.remove(&id);
            }
            Event::Replace { group } => self.launch(&group),
            Event::StoppedNoticed { id } => {
                self.replace_if(id, |instance| instance.state == InstanceState::Stopped);
            }
            Event::Back { id } => {
                let cut_off = self.is_cut_off(id);
                if let Some(instance) = self.instances.get_mut(&id) {
                    if matches!(
                        instance.state,
                        InstanceState::Pending | InstanceState::Running
                    ) && !instance.healthy
                        && !cut_off
                    {
                        instance.state = InstanceState::Running;
                        instance.healthy = true;
                        self.record(id, Change::Back);
                    }
                }
            }
        }
    }

    /// The group's health check failing an instance for which `failing`
    /// holds: unless health checks or their replacements are suspended, it
    /// terminates the instance and launches a replacement.
    fn replace_if(&mut self, id: Key, failing: impl Fn(&Instance) -> bool) {
        let group = match self.instances.get(&id) {
            Some(instance)
                if failing(instance) && !self.replacing_suspended(instance.group.as_deref()) =>
            {
                instance.group.clone()
            }
            _ => return,
        };
        self.record(id, Change::HealthCheckFailed);
        self.begin_shutdown(id);
        if let Some(group) = group {
            self.launch(&group);
        }
    }

    /// The group named `name`, or the answer AWS gives for an unknown one.
    fn group_mut(&mut self, name: &str) -> Result<&mut GroupState, CloudError> {
        self.groups
            .get_mut(name)
            .ok_or_else(|| CloudError::NotFound(format!("no group {name}")))
    }

    /// Whether an instance's subnet is behind a deny-all ACL now.
    fn is_cut_off(&self, id: Key) -> bool {
        self.instances
            .get(&id)
            .and_then(|i| i.subnet.as_ref())
            .is_some_and(|subnet| self.acls.get(subnet).is_some_and(|acl| is_deny_all(acl)))
    }

    /// Cut off (or reconnect) every running instance of `subnets`.
    fn cut_subnets(&mut self, subnets: &BTreeSet<&str>, cut: bool) {
        let keys: Vec<Key> = self
            .instances
            .iter()
            .filter(|(_, i)| {
                i.state == InstanceState::Running
                    && i.subnet.as_deref().is_some_and(|s| subnets.contains(s))
            })
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            if let Some(instance) = self.instances.get_mut(&key) {
                instance.healthy = !cut;
            }
            self.record(
                key,
                if cut {
                    Change::CutOff
                } else {
                    Change::Reconnected
                },
            );
        }
    }

    /// Whether `group` (if any) neither marks nor replaces unhealthy
    /// members now.
    fn replacing_suspended(&self, group: Option<&str>) -> bool {
        use crate::cloud::ScalingProcess::{HealthCheck, ReplaceUnhealthy};
        group
            .and_then(|group| self.groups.get(group))
            .is_some_and(|g| {
                g.suspended.contains(&HealthCheck) || g.suspended.contains(&ReplaceUnhealthy)
            })
    }

    fn launch_end(&mut self, id: Key, fails: bool) {
        let Some(instance) = self.instances.get_mut(&id) else {
            return;
        };
        // Terminated while pending: nothing left to launch.
        if instance.state != InstanceState::Pending {
            return;
        }
        let Some(group_name) = instance.group.clone() else {
            return;
        };
        let Some(group) = self.groups.get_mut(&group_name) else {
            return;
        };
        if fails {
            instance.state = InstanceState::Terminated;
            instance.lifecycle = Some(Lifecycle::Terminated);
            instance.healthy = false;
            group.members.remove(&id);
            let retry_at = self.now.saturating_add(group.detect_ms);
            self.record(id, Change::LaunchFailed);
            self.schedule(retry_at, Event::Replace { group: group_name });
            return;
        }
        instance.state = InstanceState::Running;
        instance.lifecycle = Some(Lifecycle::InService);
        let cut_off = instance
            .subnet
            .as_ref()
            .is_some_and(|subnet| self.acls.get(subnet).is_some_and(|acl| is_deny_all(acl)));
        instance.healthy = group.warmup_ms == 0 && !cut_off;
        let (warmup_ms, grace_ms) = (group.warmup_ms, group.grace_ms);
        self.record(id, Change::InService);
        if warmup_ms > 0 {
            let now = self.now;
            self.schedule(now.saturating_add(warmup_ms), Event::WarmupEnd { id });
            if warmup_ms > grace_ms {
                self.schedule(now.saturating_add(grace_ms), Event::GraceEnd { id });
            }
        }
    }

    fn shutdown_end(&mut self, id: Key) {
        let Some(instance) = self.instances.get_mut(&id) else {
            return;
        };
        if instance.state != InstanceState::ShuttingDown {
            return;
        }
        instance.state = InstanceState::Terminated;
        if let Some(group) = &instance.group {
            instance.lifecycle = Some(Lifecycle::Terminated);
            if let Some(group) = self.groups.get_mut(group) {
                group.members.remove(&id);
            }
        }
        self.record(id, Change::Terminated);
        let at = self.now.saturating_add(TERMINATED_VISIBLE_MS);
        self.schedule(at, Event::Forget { id });
    }

    /// Running or pending → shutting-down; terminated `shutdown_secs` later.
    fn begin_shutdown(&mut self, id: Key) {
        let Some(instance) = self.instances.get_mut(&id) else {
            return;
        };
        instance.state = InstanceState::ShuttingDown;
        instance.healthy = false;
        let shutdown_ms = match &instance.group {
            Some(group) => {
                instance.lifecycle = Some(Lifecycle::Terminating);
                self.groups
                    .get(group)
                    .map_or(STANDALONE_SHUTDOWN_MS, |group| group.shutdown_ms)
            }
            None => STANDALONE_SHUTDOWN_MS,
        };
        self.record(id, Change::ShuttingDown);
        let at = self.now.saturating_add(shutdown_ms);
        self.schedule(at, Event::ShutdownEnd { id });
    }

    /// An alarm's state now, from its rule.
    fn alarm(&self, spec: &AlarmSpec) -> Alarm {
        let (alarm, reason) = if let (Some(group), Some(below)) = (&spec.group, spec.below_healthy)
        {
            let healthy = self
                .groups
                .get(group)
                .map_or(0, |g| self.capacity(g).healthy_in_service());
            (
                healthy < below,
                format!("{group} has {healthy} healthy in service (alarm below {below})"),
            )
        } else if let Some(zone) = &spec.zone_outage {
            let down = self.zone_is_down(zone);
            (
                down,
                format!("{zone} is {}", if down { "down" } else { "up" }),
            )
        } else {
            let from = spec.from_secs.map_or(Millis::MAX, secs_to_ms);
            let until = spec.until_secs.map_or(Millis::MAX, secs_to_ms);
            let on = from <= self.now && self.now < until;
            (on, format!("scheduled in ALARM from {} s", from / 1000))
        };
        Alarm {
            name: spec.name.clone(),
            state: if alarm {
                AlarmState::Alarm
            } else {
                AlarmState::Ok
            },
            reason,
        }
    }

    fn zone_is_down(&self, zone: &str) -> bool {
        self.outages.iter().any(|outage| {
            outage.zone == zone && outage.from_ms <= self.now && self.now < outage.until_ms
        })
    }

    /// The group launches one replacement, if it is below desired.
    fn launch(&mut self, group_name: &str) {
        let Some(group) = self.groups.get(group_name) else {
            return;
        };
        if group
            .suspended
            .contains(&crate::cloud::ScalingProcess::Launch)
        {
            return;
        }
        // Pending or in service, per zone of the group.
        let mut per_zone = vec![0u32; group.group.zones.len()];
        let mut live = 0u32;
        for id in &group.members {
            let Some(instance) = self.instances.get(id) else {
                continue;
            };
            if matches!(
                instance.lifecycle,
                Some(Lifecycle::Pending | Lifecycle::InService)
            ) {
                live += 1;
                if let Some(slot) = group.group.zones.iter().position(|z| *z == instance.zone) {
                    per_zone[slot] += 1;
                }
            }
        }
        if live >= group.group.desired || live >= group.group.max {
            return;
        }
        let zone = group
            .group
            .zones
            .iter()
            .zip(&per_zone)
            .filter(|(zone, _)| !self.zone_is_down(zone))
            // min_by_key keeps the first of equals: zone order breaks ties.
            .min_by_key(|&(_, &count)| count)
            .map(|(zone, _)| zone.clone());
        let Some(zone) = zone else {
            // Every zone is down: AWS keeps retrying; so do we.
            let retry_at = self.now.saturating_add(group.detect_ms.max(MIN_LAUNCH_MS));
            tracing::debug!(
                group = group_name,
                at_ms = self.now,
                "sim: no zone to launch into"
            );
            self.schedule(
                retry_at,
                Event::Replace {
                    group: group_name.into(),
                },
            );
            return;
        };
        let base_ms = (group.launch_ms as f64 * group.slow_launch_factor).round() as Millis;
        let jitter_ms = group.jitter_ms.min(i64::MAX as u64) as i64;
        let tags = group.instance_tags.clone();
        let jitter = if jitter_ms > 0 {
            self.rng.random_range(-jitter_ms..=jitter_ms)
        } else {
            0
        };
        let duration = base_ms.saturating_add_signed(jitter).max(MIN_LAUNCH_MS);
        let fails = match self.groups.get_mut(group_name) {
            Some(group) if group.failed_launches_left > 0 => {
                group.failed_launches_left -= 1;
                true
            }
            _ => false,
        };
        let id = self.fresh_key();
        let (instance_type, market) = self.groups.get(group_name).map_or_else(
            || (String::new(), crate::cloud::Market::OnDemand),
            |group| (group.instance_type.clone(), group.market),
        );
        let subnet = Some(subnet_of(&zone));
        self.instances.insert(
            id,
            Instance {
                id: id_of(id),
                group: Some(group_name.into()),
                zone,
                state: InstanceState::Pending,
                lifecycle: Some(Lifecycle::Pending),
                healthy: false,
                tags,
                instance_type,
                launched_ms: i64::try_from(self.now).unwrap_or(i64::MAX),
                market,
                subnet,
                zone_id: None,
            },
        );
        if let Some(group) = self.groups.get_mut(group_name) {
            group.members.insert(id);
        }
        self.record(id, Change::LaunchStarted);
        let at = self.now.saturating_add(duration);
        self.schedule(at, Event::LaunchEnd { id, fails });
    }

    fn snapshot(group: &GroupState, instances: &BTreeMap<Key, Instance>) -> GroupSnapshot {
        GroupSnapshot {
            group: Arc::clone(&group.group),
            members: group
                .members
                .iter()
                .filter_map(|id| {
                    let instance = instances.get(id)?;
                    Some(Member {
                        id: instance.id.clone(),
                        zone: instance.zone.clone(),
                        lifecycle: instance.lifecycle?,
                        healthy: instance.healthy,
                    })
                })
                .collect(),
        }
    }

    /// Counted from the members in place: the floor is watched at every
    /// change, where building a snapshot would cost more than the change.
    fn capacity(&self, group: &GroupState) -> Capacity {
        let mut capacity = Capacity {
            desired: group.group.desired,
            ..Capacity::default()
        };
        for instance in group.members.iter().filter_map(|id| self.instances.get(id)) {
            match instance.lifecycle {
                Some(Lifecycle::InService) => {
                    capacity.in_service += 1;
                    capacity.unhealthy += u32::from(!instance.healthy);
                }
                Some(Lifecycle::Pending) => capacity.pending += 1,
                Some(Lifecycle::Terminating) => capacity.terminating += 1,
                _ => {}
            }
        }
        capacity
    }
}

#[async_trait::async_trait]
impl Cloud for SimCloud {
    fn kind(&self) -> &'static str {
        "sim"
    }

    async fn whereabouts(&self) -> super::Whereabouts {
        super::Whereabouts {
            account: Some(self.account.clone()),
            region: Some(self.region.clone()),
        }
    }

    /// Counted by the AWS action each call stands for, so that a dashboard
    /// reads a simulated run as it would a real one.
    fn api_calls(&self) -> ApiCalls {
        self.lock()
            .calls_by_action
            .iter()
            .map(|(&action, &calls)| {
                let service = match action {
                    "DescribeInstances" | "TerminateInstances" => "ec2",
                    "DescribeAlarms" => "cloudwatch",
                    "Publish" => "sns",
                    _ => "autoscaling",
                };
                ((service.to_owned(), action.to_owned()), calls)
            })
            .collect()
    }

    fn now_ms(&self) -> Millis {
        self.lock().now
    }

    async fn sleep_ms(&self, ms: Millis) {
        let mut state = self.lock();
        let until = state.now.saturating_add(ms);
        state.advance(until);
    }

    async fn groups(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<Arc<GroupSnapshot>>, CloudError> {
        let mut state = self.call("DescribeAutoScalingGroups")?;
        let State {
            groups, instances, ..
        } = &mut *state;
        let mut answer = |group: &mut GroupState| match &group.snapshot {
            Some(snapshot) => Arc::clone(snapshot),
            None => {
                let snapshot = Arc::new(State::snapshot(group, instances));
                group.snapshot = Some(Arc::clone(&snapshot));
                snapshot
            }
        };
        Ok(match names {
            None => groups.values_mut().map(&mut answer).collect(),
            Some(names) => {
                // Sorted by name, as every group's listing is.
                let wanted: BTreeSet<&String> = names.iter().collect();
                wanted
                    .into_iter()
                    .filter_map(|name| groups.get_mut(name).map(&mut answer))
                    .collect()
            }
        })
    }

    async fn instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        self.list_instances(query).await
    }

    async fn alarms(&self, names: &[String]) -> Result<Vec<Alarm>, CloudError> {
        let state = self.call("DescribeAlarms")?;
        Ok(state
            .alarms
            .iter()
            .filter(|spec| names.contains(&spec.name))
            .map(|spec| state.alarm(spec))
            .collect())
    }

    async fn instances_by_id(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        let state = self.call("DescribeInstances")?;
        let mut found: Vec<Instance> = ids
            .iter()
            .filter_map(|id| Some(self.described(state.instances.get(&key_of(id)?)?)))
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        Ok(found)
    }

    /// Terminating an instance that is already shutting down or terminated
    /// succeeds and changes nothing, as EC2 TerminateInstances does.
    /// `AutoScaling` on an instance in no group fails, as AWS's does.
    async fn terminate(
        &self,
        id: &str,
        via: TerminateVia,
    ) -> Result<Option<InstanceState>, CloudError> {
        let operation = match via {
            TerminateVia::Ec2 => "TerminateInstances",
            TerminateVia::AutoScaling => "TerminateInstanceInAutoScalingGroup",
        };
        let mut state = self.call(operation)?;
        let Some((key, instance)) =
            key_of(id).and_then(|key| Some((key, state.instances.get(&key)?)))
        else {
            return Err(CloudError::NotFound(format!("instance {id}")));
        };
        if matches!(
            instance.state,
            InstanceState::ShuttingDown | InstanceState::Terminated
        ) {
            return Ok(answered(via, instance.state));
        }
        let group = instance.group.clone();
        match (via, group) {
            (TerminateVia::AutoScaling, None) => Err(CloudError::Backend(format!(
                "instance {id} is not in an Auto Scaling group"
            ))),
            (TerminateVia::AutoScaling, Some(group)) => {
                state.begin_shutdown(key);
                // Desired capacity stays: the group replaces it at once.
                state.launch(&group);
                Ok(None)
            }
            (TerminateVia::Ec2, group) => {
                state.begin_shutdown(key);
                if let Some(group) = group {
                    let detect_ms = state.groups.get(&group).map_or(0, |group| group.detect_ms);
                    let at = state.now.saturating_add(detect_ms);
                    state.schedule(at, Event::Replace { group });
                }
                Ok(answered(via, InstanceState::ShuttingDown))
            }
        }
    }

    fn messaging(&self) -> &dyn super::messaging::Messaging {
        self
    }

    async fn stop_instance(&self, id: &str) -> Result<(), CloudError> {
        let mut state = self.call("StopInstances")?;
        let (key, group) = match key_of(id).and_then(|key| Some((key, state.instances.get(&key)?)))
        {
            Some((key, instance)) if instance.state == InstanceState::Running => {
                (key, instance.group.clone())
            }
            Some((_, instance)) => {
                return Err(CloudError::Refused(format!(
                    "{id} is {:?}, not running",
                    instance.state
                )))
            }
            None => return Err(CloudError::NotFound(format!("no instance {id}"))),
        };
        if let Some(instance) = state.instances.get_mut(&key) {
            instance.state = InstanceState::Stopped;
            instance.healthy = false;
        }
        state.record(key, Change::Stopped);
        if let Some(group) = group {
            let detect_ms = state.groups.get(&group).map_or(0, |g| g.detect_ms);
            let at = state.now.saturating_add(detect_ms);
            state.schedule(at, Event::StoppedNoticed { id: key });
        }
        Ok(())
    }

    async fn start_instance(&self, id: &str) -> Result<(), CloudError> {
        let mut state = self.call("StartInstances")?;
        let key = match key_of(id).and_then(|key| Some((key, state.instances.get(&key)?))) {
            Some((key, instance)) => match instance.state {
                InstanceState::Stopped | InstanceState::Stopping => key,
                // Already started: a second undo changes nothing.
                InstanceState::Pending | InstanceState::Running => return Ok(()),
                gone => {
                    return Err(CloudError::NotFound(format!(
                        "{id} is {gone:?}: there is nothing to start"
                    )))
                }
            },
            None => return Err(CloudError::NotFound(format!("no instance {id}"))),
        };
        if let Some(instance) = state.instances.get_mut(&key) {
            instance.state = InstanceState::Pending;
        }
        state.record(key, Change::Started);
        let at = state.now.saturating_add(START_MS);
        state.schedule(at, Event::Back { id: key });
        Ok(())
    }

    async fn reboot_instance(&self, id: &str) -> Result<(), CloudError> {
        let mut state = self.call("RebootInstances")?;
        let key = match key_of(id).and_then(|key| Some((key, state.instances.get(&key)?))) {
            Some((key, instance)) if instance.state == InstanceState::Running => key,
            Some((_, instance)) => {
                return Err(CloudError::Refused(format!(
                    "{id} is {:?}, not running",
                    instance.state
                )))
            }
            None => return Err(CloudError::NotFound(format!("no instance {id}"))),
        };
        if let Some(instance) = state.instances.get_mut(&key) {
            instance.healthy = false;
        }
        state.record(key, Change::Rebooted);
        let at = state.now.saturating_add(REBOOT_MS);
        state.schedule(at, Event::Back { id: key });
        Ok(())
    }

    async fn suspended_processes(
        &self,
        group: &str,
    ) -> Result<Vec<crate::cloud::ScalingProcess>, CloudError> {
        let state = self.call("DescribeAutoScalingGroups")?;
        state
            .groups
            .get(group)
            .map(|g| g.suspended.iter().copied().collect())
            .ok_or_else(|| CloudError::NotFound(format!("no group {group}")))
    }

    async fn suspend_processes(
        &self,
        group: &str,
        processes: &[crate::cloud::ScalingProcess],
    ) -> Result<(), CloudError> {
        let mut state = self.call("SuspendProcesses")?;
        let g = state.group_mut(group)?;
        g.suspended.extend(processes.iter().copied());
        g.snapshot = None;
        Ok(())
    }

    async fn resume_processes(
        &self,
        group: &str,
        processes: &[crate::cloud::ScalingProcess],
    ) -> Result<(), CloudError> {
        let mut state = self.call("ResumeProcesses")?;
        let g = state.group_mut(group)?;
        for process in processes {
            g.suspended.remove(process);
        }
        g.snapshot = None;
        let desired = g.group.desired;
        if processes.contains(&crate::cloud::ScalingProcess::Launch) {
            // What the group could not launch while Launch was suspended,
            // it launches now (each call launches one, while short).
            for _ in 0..desired {
                state.launch(group);
            }
        }
        Ok(())
    }

    async fn subnet_acls(
        &self,
        subnets: &[String],
    ) -> Result<Vec<crate::cloud::SubnetAcl>, CloudError> {
        let state = self.call("DescribeNetworkAcls")?;
        let known: BTreeSet<String> = state
            .instances
            .values()
            .filter_map(|i| i.subnet.clone())
            .collect();
        Ok(subnets
            .iter()
            .filter(|s| known.contains(*s))
            .map(|subnet| crate::cloud::SubnetAcl {
                subnet: subnet.clone(),
                vpc: SIM_VPC.to_owned(),
                acl: state
                    .acls
                    .get(subnet)
                    .cloned()
                    .unwrap_or_else(|| DEFAULT_ACL.to_owned()),
            })
            .collect())
    }

    async fn blackhole_subnets(
        &self,
        _vpc: &str,
        subnets: &[String],
        tag: &str,
    ) -> Result<(), CloudError> {
        let mut state = self.call("CreateNetworkAcl")?;
        let acl = format!("{DENY_ACL_PREFIX}{}", state.deny_acls.len() + 1);
        state.deny_acls.insert(tag.to_owned(), acl.clone());
        for subnet in subnets {
            state.acls.insert(subnet.clone(), acl.clone());
        }
        let cut: BTreeSet<&str> = subnets.iter().map(String::as_str).collect();
        state.cut_subnets(&cut, true);
        Ok(())
    }

    async fn restore_subnets(
        &self,
        restore: &[crate::cloud::SubnetAcl],
        tag: &str,
    ) -> Result<(), CloudError> {
        let mut state = self.call("ReplaceNetworkAclAssociation")?;
        for back in restore {
            if back.acl == DEFAULT_ACL {
                state.acls.remove(&back.subnet);
            } else {
                state.acls.insert(back.subnet.clone(), back.acl.clone());
            }
        }
        state.deny_acls.remove(tag);
        let reconnected: Vec<String> = restore
            .iter()
            .map(|back| back.subnet.clone())
            .filter(|subnet| !state.acls.get(subnet).is_some_and(|acl| is_deny_all(acl)))
            .collect();
        let reconnected: BTreeSet<&str> = reconnected.iter().map(String::as_str).collect();
        state.cut_subnets(&reconnected, false);
        Ok(())
    }
}

/// The simulated account's topics and buses: every name exists, and what is
/// sent is kept, in order ([`SimCloud::outbox`], [`SimCloud::bus_events`]).
#[async_trait::async_trait]
impl super::messaging::Messaging for SimCloud {
    async fn publish(
        &self,
        topic: &str,
        _role: Option<&ChannelRole>,
        subject: &str,
        body: &str,
    ) -> Result<(), CloudError> {
        let mut state = self.call("Publish")?;
        let at_ms = state.now;
        state.outbox.push(Published {
            topic: topic.into(),
            subject: subject.into(),
            body: body.into(),
            at_ms,
        });
        Ok(())
    }

    async fn check_topic(
        &self,
        _topic: &str,
        _role: Option<&ChannelRole>,
    ) -> Result<(), CloudError> {
        Ok(())
    }

    async fn put_events(
        &self,
        bus: &str,
        _role: Option<&ChannelRole>,
        events: &[BusEvent],
    ) -> Result<Vec<(usize, String)>, CloudError> {
        let mut state = self.call("PutEvents")?;
        state
            .bus
            .extend(events.iter().map(|event| (bus.to_owned(), event.clone())));
        Ok(Vec::new())
    }

    async fn check_bus(&self, _bus: &str, _role: Option<&ChannelRole>) -> Result<(), CloudError> {
        Ok(())
    }
}

/// The simulated account's one VPC, its default network ACL, and how the
/// deny-all ones it creates are named.
const SIM_VPC: &str = "vpc-sim";
const DEFAULT_ACL: &str = "acl-default";
const DENY_ACL_PREFIX: &str = "acl-deny-all-";

/// The simulated subnet of a zone: one per zone.
fn subnet_of(zone: &str) -> String {
    format!("subnet-{zone}")
}

/// Whether an ACL is one of the deny-all ones the simulator created.
fn is_deny_all(acl: &str) -> bool {
    acl.starts_with(DENY_ACL_PREFIX)
}

/// How long a started instance takes to run again.
const START_MS: Millis = 20_000;
/// How long a rebooted instance fails its health check.
const REBOOT_MS: Millis = 30_000;

/// When an instance of the fleet file was launched: from an hour to 30 days
/// before the clock starts, drawn from its (seeded) key.
fn launched_before(key: Key) -> i64 {
    const HOUR_MS: u64 = 3_600_000;
    let ms = HOUR_MS + key % (30 * 24 * HOUR_MS - HOUR_MS);
    -i64::try_from(ms).unwrap_or(i64::MAX)
}

/// What the termination API's answer says of the instance: EC2's gives its
/// state, Auto Scaling's an activity.
fn answered(via: TerminateVia, state: InstanceState) -> Option<InstanceState> {
    match via {
        TerminateVia::Ec2 => Some(state),
        TerminateVia::AutoScaling => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::messaging::Messaging as _;

    const A: &str = "us-east-1a";
    const B: &str = "us-east-1b";
    const C: &str = "us-east-1c";

    /// `web`: 6 instances over three zones, no jitter, so times are exact:
    /// launch 45 s, detect 10 s, shutdown 5 s.
    fn web() -> GroupSpec {
        let mut group = GroupSpec::new("web", &[A, B, C], 6);
        group.max = 9;
        group.launch_jitter_secs = 0;
        group
    }

    fn sim_of(groups: Vec<GroupSpec>) -> SimCloud {
        let spec = FleetSpec {
            groups,
            ..FleetSpec::default()
        };
        match SimCloud::new(spec, 7) {
            Ok(sim) => sim,
            Err(err) => panic!("{err}"),
        }
    }

    async fn instances(sim: &SimCloud, group: &str) -> Vec<Instance> {
        let query = InstanceQuery {
            groups: Some(BTreeSet::from([group.to_string()])),
            ..InstanceQuery::default()
        };
        sim.list_instances(&query).await.unwrap_or_default()
    }

    async fn capacity(sim: &SimCloud, group: &str) -> Capacity {
        let found = sim.capacity(&[group.to_string()]).await;
        match found.as_deref() {
            Ok([(_, capacity)]) => *capacity,
            other => panic!("capacity of {group}: {other:?}"),
        }
    }

    /// Step the clock 1 ms at a time from now; the first time the group is
    /// recovered.
    async fn recovered_at(sim: &SimCloud, group: &str, limit_ms: Millis) -> Option<Millis> {
        while sim.now_ms() <= limit_ms {
            if capacity(sim, group).await.is_recovered() {
                return Some(sim.now_ms());
            }
            match sim.next_event_ms() {
                Some(at) if at > sim.now_ms() => sim.sleep_ms(at - sim.now_ms()).await,
                Some(_) => sim.sleep_ms(0).await,
                // Nothing will ever change: give up.
                None => sim.sleep_ms(limit_ms + 1 - sim.now_ms()).await,
            }
        }
        None
    }

    /// Live (pending or in-service) instances of a group per zone.
    async fn live_per_zone(sim: &SimCloud, group: &str) -> BTreeMap<String, usize> {
        let mut zones = BTreeMap::new();
        for instance in instances(sim, group).await {
            if matches!(
                instance.lifecycle,
                Some(Lifecycle::Pending | Lifecycle::InService)
            ) {
                *zones.entry(instance.zone).or_default() += 1;
            }
        }
        zones
    }

    async fn first_in(sim: &SimCloud, group: &str, zone: &str) -> String {
        instances(sim, group)
            .await
            .into_iter()
            .find(|instance| instance.zone == zone && instance.state == InstanceState::Running)
            .map(|instance| instance.id)
            .unwrap_or_else(|| panic!("no running instance of {group} in {zone}"))
    }

    fn launches(sim: &SimCloud) -> Vec<SimEvent> {
        sim.timeline()
            .into_iter()
            .filter(|event| event.change == Change::LaunchStarted)
            .collect()
    }

    #[test]
    fn zone_ids_are_named_as_aws_names_them_and_mapped_per_account() {
        assert_eq!(
            zone_id("sim", "us-east-1", "us-east-1a").as_deref(),
            Some("use1-az1")
        );
        assert_eq!(
            zone_id("sim", "us-east-1", "us-east-1c").as_deref(),
            Some("use1-az3")
        );
        assert_eq!(
            zone_id("sim", "ap-southeast-2", "ap-southeast-2b").as_deref(),
            Some("apse2-az2")
        );
        assert_eq!(
            zone_id("sim", "eu-central-1", "eu-central-1a").as_deref(),
            Some("euc1-az1")
        );
        assert_eq!(zone_id("sim", "us-east-1", "z-a"), None);
        // Another account's `a` is another physical zone, the same every time.
        let blue = zone_id("blue", "us-east-1", "us-east-1a");
        assert_eq!(blue, zone_id("blue", "us-east-1", "us-east-1a"));
        let ids: std::collections::BTreeSet<Option<String>> = ["sim", "blue", "green", "red"]
            .iter()
            .map(|account| zone_id(account, "us-east-1", "us-east-1a"))
            .collect();
        assert!(
            ids.len() > 1,
            "every account maps a to the same zone: {ids:?}"
        );
    }

    #[test]
    fn sim_cloud_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SimCloud>();
    }

    #[tokio::test]
    async fn initial_fleet_is_in_service_and_spread_round_robin() -> Result<(), CloudError> {
        let mut group = web();
        group.tags.insert("env".into(), "prod".into());
        let spec = FleetSpec {
            groups: vec![group],
            instances: vec![InstanceSpec {
                zone: B.into(),
                tags: BTreeMap::from([("Name".into(), "bastion".into())]),
                instance_type: "t3.micro".into(),
            }],
            ..FleetSpec::default()
        };
        let sim = SimCloud::new(spec, 1).map_err(|err| CloudError::Backend(err.to_string()))?;
        assert_eq!(sim.kind(), "sim");
        assert_eq!(sim.now_ms(), 0);
        assert_eq!(sim.region(), "us-east-1");
        let all = sim.list_instances(&InstanceQuery::default()).await?;
        assert_eq!(all.len(), 7);
        let ids: Vec<&str> = all.iter().map(|instance| instance.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "listing is sorted by id");
        for instance in &all {
            assert_eq!(instance.id.len(), 19, "{}", instance.id);
            assert!(instance.id.starts_with("i-"));
            assert!(instance.id[2..]
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
            assert_eq!(instance.state, InstanceState::Running);
            assert!(instance.healthy);
        }
        let web = instances(&sim, "web").await;
        assert_eq!(web.len(), 6);
        for instance in &web {
            assert_eq!(instance.lifecycle, Some(Lifecycle::InService));
            assert_eq!(instance.tags.get("env").map(String::as_str), Some("prod"));
            assert_eq!(
                instance.tags.get(GROUP_NAME_TAG).map(String::as_str),
                Some("web")
            );
        }
        let per_zone = live_per_zone(&sim, "web").await;
        assert_eq!(
            per_zone,
            BTreeMap::from([(A.into(), 2), (B.into(), 2), (C.into(), 2)])
        );
        let bastion: Vec<_> = all
            .iter()
            .filter(|instance| instance.group.is_none())
            .collect();
        assert_eq!(bastion.len(), 1);
        assert_eq!(bastion[0].lifecycle, None);
        assert_eq!(bastion[0].zone, B);
        let groups = sim.list_groups().await?;
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].tags.get("env").map(String::as_str), Some("prod"));
        assert!(!groups[0].tags.contains_key(GROUP_NAME_TAG));
        assert!(capacity(&sim, "web").await.is_recovered());
        Ok(())
    }

    #[tokio::test]
    async fn ec2_termination_is_replaced_after_detect_plus_launch() -> Result<(), CloudError> {
        let sim = sim_of(vec![web()]);
        let victim = first_in(&sim, "web", B).await;
        sim.terminate(&victim, TerminateVia::Ec2).await?;

        let gone = sim.describe_instance(&victim).await?;
        let gone = gone.ok_or_else(|| CloudError::NotFound(victim.clone()))?;
        assert_eq!(gone.state, InstanceState::ShuttingDown);
        assert_eq!(gone.lifecycle, Some(Lifecycle::Terminating));
        assert!(!gone.healthy);
        let now = capacity(&sim, "web").await;
        assert_eq!((now.in_service, now.terminating, now.pending), (5, 1, 0));

        // shutdown_secs = 5: terminated, nothing launched yet.
        sim.sleep_ms(5_000).await;
        let gone = sim.describe_instance(&victim).await?;
        assert_eq!(
            gone.map(|i| (i.state, i.lifecycle)),
            Some((InstanceState::Terminated, Some(Lifecycle::Terminated)))
        );
        let now = capacity(&sim, "web").await;
        assert_eq!((now.in_service, now.terminating, now.pending), (5, 0, 0));

        // detect_secs = 10: the replacement is pending.
        sim.sleep_ms(4_999).await;
        assert_eq!(capacity(&sim, "web").await.pending, 0);
        sim.sleep_ms(1).await;
        assert_eq!(capacity(&sim, "web").await.pending, 1);

        // launch_secs = 45, no jitter: recovered at exactly 10 + 45 s.
        assert_eq!(recovered_at(&sim, "web", 600_000).await, Some(55_000));
        let replacement = &launches(&sim)[0];
        assert_eq!(
            replacement.zone, B,
            "the replacement refills the emptied zone"
        );
        let terminated = sim
            .list_instances(&InstanceQuery {
                states: vec![InstanceState::Terminated],
                ..InstanceQuery::default()
            })
            .await?;
        assert_eq!(terminated.len(), 1, "terminated instances stay listable");
        assert_eq!(terminated[0].id, victim);
        Ok(())
    }

    #[tokio::test]
    async fn a_group_read_shows_every_change_of_its_members() -> Result<(), CloudError> {
        let sim = sim_of(vec![web()]);
        let names = ["web".to_owned()];
        let lifecycle_of = |groups: Vec<Arc<GroupSnapshot>>, id: &str| {
            groups[0]
                .members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.lifecycle)
        };
        let victim = first_in(&sim, "web", B).await;
        let before = sim.groups(Some(&names)).await?;
        assert_eq!(lifecycle_of(before, &victim), Some(Lifecycle::InService));
        // Read twice unchanged: the same answer is handed out again.
        let (once, twice) = (sim.groups(None).await?, sim.groups(None).await?);
        assert!(Arc::ptr_eq(&once[0], &twice[0]));
        sim.terminate(&victim, TerminateVia::Ec2).await?;
        let after = sim.groups(Some(&names)).await?;
        assert_eq!(lifecycle_of(after, &victim), Some(Lifecycle::Terminating));
        // shutdown_secs = 5: no longer a member.
        sim.sleep_ms(5_000).await;
        assert_eq!(lifecycle_of(sim.groups(None).await?, &victim), None);
        // detect 10 s after the termination: a replacement is pending.
        sim.sleep_ms(5_000).await;
        let pending = sim.groups(None).await?[0]
            .members
            .iter()
            .filter(|m| m.lifecycle == Lifecycle::Pending)
            .count();
        assert_eq!(pending, 1);
        Ok(())
    }

    #[tokio::test]
    async fn terminated_instances_are_forgotten_after_an_hour() -> Result<(), CloudError> {
        let sim = sim_of(vec![web()]);
        let victim = first_in(&sim, "web", B).await;
        sim.terminate(&victim, TerminateVia::Ec2).await?;
        // Terminated after shutdown_secs = 5, then visible for an hour.
        sim.sleep_ms(5_000 + TERMINATED_VISIBLE_MS - 1).await;
        assert!(sim.describe_instance(&victim).await?.is_some());
        sim.sleep_ms(1).await;
        assert_eq!(sim.describe_instance(&victim).await?, None);
        let all = sim.list_instances(&InstanceQuery::default()).await?;
        assert!(all.iter().all(|i| i.id != victim));
        assert_eq!(
            all.len(),
            6,
            "the group's six, the victim's replacement among them"
        );
        Ok(())
    }

    #[tokio::test]
    async fn launch_jitter_stays_within_bounds() -> Result<(), CloudError> {
        let mut group = web();
        group.launch_jitter_secs = 10;
        let sim = sim_of(vec![group]);
        let mut durations = BTreeSet::new();
        for _ in 0..20 {
            let start = sim.now_ms();
            let victim = first_in(&sim, "web", A).await;
            sim.terminate(&victim, TerminateVia::Ec2).await?;
            let at = recovered_at(&sim, "web", start + 600_000).await;
            let at = at.ok_or_else(|| CloudError::Backend("never recovered".into()))?;
            // detect 10 s + launch 45 ± 10 s.
            let took = at - start;
            assert!(
                (45_000..=65_000).contains(&took),
                "recovered after {took} ms"
            );
            durations.insert(took);
        }
        assert!(durations.len() > 1, "jitter varies launches: {durations:?}");
        Ok(())
    }

    #[tokio::test]
    async fn warmup_counts_as_unhealthy_until_it_ends() -> Result<(), CloudError> {
        let mut group = web();
        group.warmup_secs = 30;
        group.health_check_grace_secs = 60;
        let sim = sim_of(vec![group]);
        let victim = first_in(&sim, "web", A).await;
        sim.terminate(&victim, TerminateVia::Ec2).await?;
        sim.sleep_ms(55_000).await;
        let now = capacity(&sim, "web").await;
        assert_eq!((now.in_service, now.unhealthy, now.pending), (6, 1, 0));
        assert_eq!(now.healthy_in_service(), 5);
        assert!(!now.is_recovered());
        // 10 detect + 45 launch + 30 warm-up.
        assert_eq!(recovered_at(&sim, "web", 600_000).await, Some(85_000));
        Ok(())
    }

    #[tokio::test]
    async fn warmup_longer_than_grace_never_recovers() -> Result<(), CloudError> {
        let mut group = web();
        group.warmup_secs = 120;
        group.health_check_grace_secs = 60;
        let sim = sim_of(vec![group]);
        let victim = first_in(&sim, "web", A).await;
        sim.terminate(&victim, TerminateVia::Ec2).await?;
        assert_eq!(recovered_at(&sim, "web", 1_000_000).await, None);
        let timeline = sim.timeline();
        let failed: Vec<_> = timeline
            .iter()
            .filter(|event| event.change == Change::HealthCheckFailed)
            .collect();
        // In service at 55 s, killed at 115 s; every 105 s after that.
        assert!(failed.len() >= 5, "{failed:?}");
        assert_eq!(failed[0].at_ms, 115_000);
        assert_eq!(failed[1].at_ms, 220_000);
        // The group never runs above desired.
        let now = capacity(&sim, "web").await;
        assert!(now.in_service + now.pending <= 6);
        Ok(())
    }

    #[tokio::test]
    async fn auto_scaling_termination_launches_at_once() -> Result<(), CloudError> {
        let sim = sim_of(vec![web()]);
        let victim = first_in(&sim, "web", C).await;
        sim.terminate(&victim, TerminateVia::AutoScaling).await?;
        let now = capacity(&sim, "web").await;
        assert_eq!(
            (now.desired, now.in_service, now.pending, now.terminating),
            (6, 5, 1, 1)
        );
        assert_eq!(launches(&sim)[0].zone, C);
        assert_eq!(recovered_at(&sim, "web", 600_000).await, Some(45_000));
        Ok(())
    }

    #[tokio::test]
    async fn replacements_go_to_the_emptiest_zone() -> Result<(), CloudError> {
        let sim = sim_of(vec![web()]);
        // a: 2 → 0, b: 2 → 1, c: 2.
        for zone in [A, A, B] {
            let victim = first_in(&sim, "web", zone).await;
            sim.terminate(&victim, TerminateVia::Ec2).await?;
        }
        sim.sleep_ms(10_000).await;
        let zones: Vec<String> = launches(&sim).into_iter().map(|event| event.zone).collect();
        // Each launch sees the previous: a(0) → a(1) ties b(1) → a first.
        assert_eq!(zones, [A, A, B]);
        assert_eq!(
            live_per_zone(&sim, "web").await,
            BTreeMap::from([(A.into(), 2), (B.into(), 2), (C.into(), 2)])
        );
        Ok(())
    }

    #[tokio::test]
    async fn ties_between_zones_go_to_zone_order() -> Result<(), CloudError> {
        // 4 over three zones: a 2, b 1, c 1; losing one in a ties all three.
        let mut group = web();
        group.desired = 4;
        group.min = 4;
        let sim = sim_of(vec![group]);
        let victim = first_in(&sim, "web", A).await;
        sim.terminate(&victim, TerminateVia::AutoScaling).await?;
        assert_eq!(launches(&sim)[0].zone, A);
        // Now lose one in c: c is the emptiest.
        let victim = first_in(&sim, "web", C).await;
        sim.terminate(&victim, TerminateVia::AutoScaling).await?;
        assert_eq!(launches(&sim)[1].zone, C);
        Ok(())
    }

    #[tokio::test]
    async fn zone_outage_sends_replacements_elsewhere() -> Result<(), CloudError> {
        let spec = FleetSpec {
            groups: vec![web()],
            outages: vec![OutageSpec {
                zone: B.into(),
                from_secs: 0,
                until_secs: 100,
            }],
            ..FleetSpec::default()
        };
        let sim = SimCloud::new(spec, 3).map_err(|err| CloudError::Backend(err.to_string()))?;
        let victim = first_in(&sim, "web", B).await;
        sim.terminate(&victim, TerminateVia::Ec2).await?;
        assert_eq!(recovered_at(&sim, "web", 600_000).await, Some(55_000));
        // b is down: a and c tie at 2, a comes first.
        assert_eq!(launches(&sim)[0].zone, A);
        // After the outage, b is the emptiest again and gets the next one.
        sim.sleep_ms(100_000 - sim.now_ms()).await;
        let victim = first_in(&sim, "web", A).await;
        sim.terminate(&victim, TerminateVia::AutoScaling).await?;
        assert_eq!(launches(&sim)[1].zone, B);
        Ok(())
    }

    #[tokio::test]
    async fn group_waits_when_every_zone_is_down() -> Result<(), CloudError> {
        let mut group = GroupSpec::new("solo", &[A], 1);
        group.launch_jitter_secs = 0;
        let spec = FleetSpec {
            groups: vec![group],
            outages: vec![OutageSpec {
                zone: A.into(),
                from_secs: 0,
                until_secs: 60,
            }],
            ..FleetSpec::default()
        };
        let sim = SimCloud::new(spec, 3).map_err(|err| CloudError::Backend(err.to_string()))?;
        let victim = first_in(&sim, "solo", A).await;
        sim.terminate(&victim, TerminateVia::Ec2).await?;
        // Tries at 10, 20, … 50 s fail; 60 s launches; in service at 105 s.
        assert_eq!(recovered_at(&sim, "solo", 600_000).await, Some(105_000));
        assert_eq!(launches(&sim)[0].at_ms, 60_000);
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_launch_costs_one_more_cycle() -> Result<(), CloudError> {
        let mut group = web();
        group.failed_launches = 1;
        let sim = sim_of(vec![group]);
        let victim = first_in(&sim, "web", A).await;
        sim.terminate(&victim, TerminateVia::Ec2).await?;
        // Launch at 10 s fails at 55 s; retry at 65 s; in service at 110 s.
        assert_eq!(recovered_at(&sim, "web", 600_000).await, Some(110_000));
        let failed: Vec<_> = sim
            .timeline()
            .into_iter()
            .filter(|event| event.change == Change::LaunchFailed)
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].at_ms, 55_000);
        let dead = sim.describe_instance(&failed[0].instance).await?;
        assert_eq!(dead.map(|i| i.state), Some(InstanceState::Terminated));
        // Only the first launch fails.
        let victim = first_in(&sim, "web", B).await;
        sim.terminate(&victim, TerminateVia::AutoScaling).await?;
        assert_eq!(recovered_at(&sim, "web", 1_000_000).await, Some(155_000));
        Ok(())
    }

    #[tokio::test]
    async fn slow_launch_factor_stretches_launches() -> Result<(), CloudError> {
        let mut group = web();
        group.slow_launch_factor = 2.0;
        let sim = sim_of(vec![group]);
        let victim = first_in(&sim, "web", A).await;
        sim.terminate(&victim, TerminateVia::Ec2).await?;
        assert_eq!(recovered_at(&sim, "web", 600_000).await, Some(100_000));
        Ok(())
    }

    /// Terminate a few instances, let the fleet play out, return what it did.
    async fn scenario(seed: u64) -> Result<(Vec<Instance>, Vec<SimEvent>), CloudError> {
        let mut group = web();
        group.launch_jitter_secs = 10;
        let spec = FleetSpec {
            groups: vec![group, GroupSpec::new("api", &[A, B], 4)],
            ..FleetSpec::default()
        };
        let sim = SimCloud::new(spec, seed).map_err(|err| CloudError::Backend(err.to_string()))?;
        let ids: Vec<String> = sim
            .list_instances(&InstanceQuery::default())
            .await?
            .into_iter()
            .map(|instance| instance.id)
            .collect();
        for (step, id) in ids.iter().step_by(3).enumerate() {
            let via = if step % 2 == 0 {
                TerminateVia::Ec2
            } else {
                TerminateVia::AutoScaling
            };
            sim.terminate(id, via).await?;
            sim.sleep_ms(7_000).await;
        }
        sim.sleep_ms(300_000).await;
        Ok((
            sim.list_instances(&InstanceQuery::default()).await?,
            sim.timeline(),
        ))
    }

    #[tokio::test]
    async fn same_seed_same_fleet_and_timeline() -> Result<(), CloudError> {
        let (fleet, timeline) = scenario(42).await?;
        assert!(timeline.len() > 10);
        assert_eq!(scenario(42).await?, (fleet.clone(), timeline));
        let (other, _) = scenario(43).await?;
        let ids = |fleet: &[Instance]| -> BTreeSet<String> {
            fleet.iter().map(|instance| instance.id.clone()).collect()
        };
        assert!(ids(&fleet).is_disjoint(&ids(&other)));
        Ok(())
    }

    #[tokio::test]
    async fn sleep_granularity_does_not_change_the_timeline() -> Result<(), CloudError> {
        let run = |step: Millis| async move {
            let mut group = web();
            group.launch_jitter_secs = 10;
            group.warmup_secs = 20;
            let sim = sim_of(vec![group]);
            for zone in [A, B, C] {
                let victim = first_in(&sim, "web", zone).await;
                sim.terminate(&victim, TerminateVia::Ec2).await?;
            }
            let mut previous = sim.now_ms();
            while sim.now_ms() < 200_000 {
                sim.sleep_ms(step).await;
                assert!(sim.now_ms() >= previous, "the clock never goes back");
                previous = sim.now_ms();
            }
            Ok::<_, CloudError>(sim.timeline())
        };
        let coarse = run(200_000).await?;
        assert_eq!(run(1_000).await?, coarse);
        assert_eq!(run(777).await?, coarse);
        let times: Vec<Millis> = coarse.iter().map(|event| event.at_ms).collect();
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
        Ok(())
    }

    #[tokio::test]
    async fn same_time_events_play_in_scheduling_order() -> Result<(), CloudError> {
        let sim = sim_of(vec![web()]);
        let first = first_in(&sim, "web", C).await;
        let second = first_in(&sim, "web", A).await;
        sim.terminate(&first, TerminateVia::Ec2).await?;
        sim.terminate(&second, TerminateVia::Ec2).await?;
        sim.sleep_ms(0).await;
        assert_eq!(sim.now_ms(), 0);
        sim.sleep_ms(5_000).await;
        assert_eq!(sim.now_ms(), 5_000);
        let terminated: Vec<String> = sim
            .timeline()
            .into_iter()
            .filter(|event| event.change == Change::Terminated)
            .map(|event| {
                assert_eq!(event.at_ms, 5_000);
                event.instance
            })
            .collect();
        assert_eq!(terminated, [first, second]);
        Ok(())
    }

    #[tokio::test]
    async fn throttle_every_answers_throttled() -> Result<(), CloudError> {
        let spec = FleetSpec {
            groups: vec![web()],
            throttle_every: Some(3),
            ..FleetSpec::default()
        };
        let sim = SimCloud::new(spec, 1).map_err(|err| CloudError::Backend(err.to_string()))?;
        let query = InstanceQuery::default();
        assert!(sim.list_groups().await.is_ok());
        let victim = sim.list_instances(&query).await?[0].id.clone();
        let throttled = sim.terminate(&victim, TerminateVia::Ec2).await;
        assert!(
            matches!(throttled, Err(CloudError::Throttled(_))),
            "{throttled:?}"
        );
        // The throttled call did nothing.
        let still = sim.describe_instance(&victim).await?;
        assert_eq!(still.map(|i| i.state), Some(InstanceState::Running));
        assert!(sim.publish("t", None, "s", "b").await.is_ok());
        assert!(matches!(
            sim.capacity(&["web".into()]).await,
            Err(CloudError::Throttled(_))
        ));
        assert_eq!(sim.api_calls(), 6);
        assert!(sim.outbox().len() == 1);
        Ok(())
    }

    #[tokio::test]
    async fn terminate_edge_cases() -> Result<(), CloudError> {
        let spec = FleetSpec {
            groups: vec![web()],
            instances: vec![InstanceSpec {
                zone: A.into(),
                tags: BTreeMap::new(),
                instance_type: "t3.micro".into(),
            }],
            ..FleetSpec::default()
        };
        let sim = SimCloud::new(spec, 9).map_err(|err| CloudError::Backend(err.to_string()))?;
        let unknown = sim.terminate("i-0000000000000000", TerminateVia::Ec2).await;
        assert!(
            matches!(unknown, Err(CloudError::NotFound(_))),
            "{unknown:?}"
        );
        assert_eq!(sim.describe_instance("i-0000000000000000").await?, None);

        let standalone = sim
            .list_instances(&InstanceQuery::default())
            .await?
            .into_iter()
            .find(|instance| instance.group.is_none())
            .map(|instance| instance.id)
            .ok_or_else(|| CloudError::NotFound("standalone".into()))?;
        let via_asg = sim.terminate(&standalone, TerminateVia::AutoScaling).await;
        assert!(
            matches!(via_asg, Err(CloudError::Backend(_))),
            "{via_asg:?}"
        );
        sim.terminate(&standalone, TerminateVia::Ec2).await?;
        // Already shutting down: a no-op success, as in EC2.
        sim.terminate(&standalone, TerminateVia::Ec2).await?;
        sim.sleep_ms(60_000).await;
        let gone = sim.describe_instance(&standalone).await?;
        assert_eq!(
            gone.map(|i| (i.state, i.lifecycle)),
            Some((InstanceState::Terminated, None))
        );
        // Already terminated: still a no-op success.
        sim.terminate(&standalone, TerminateVia::Ec2).await?;
        assert!(
            launches(&sim).is_empty(),
            "nobody replaces a standalone instance"
        );

        // Terminating a pending replacement cancels its launch; the group
        // notices and launches another.
        let victim = first_in(&sim, "web", A).await;
        sim.terminate(&victim, TerminateVia::AutoScaling).await?;
        let pending = launches(&sim)[0].instance.clone();
        sim.terminate(&pending, TerminateVia::Ec2).await?;
        sim.sleep_ms(10_000).await;
        assert_eq!(launches(&sim).len(), 2);
        let start = sim.now_ms() - 10_000;
        assert_eq!(
            recovered_at(&sim, "web", start + 600_000).await,
            Some(start + 55_000)
        );
        let cancelled = sim.describe_instance(&pending).await?;
        assert_eq!(cancelled.map(|i| i.state), Some(InstanceState::Terminated));
        Ok(())
    }

    #[tokio::test]
    async fn capacity_answers_in_order_asked() -> Result<(), CloudError> {
        let sim = sim_of(vec![web(), GroupSpec::new("api", &[A, B], 4)]);
        let asked = ["api".to_string(), "nope".into(), "web".into()];
        let answer = sim.capacity(&asked).await?;
        let names: Vec<&str> = answer.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["api", "web"]);
        assert_eq!(answer[0].1.desired, 4);
        assert_eq!(answer[1].1.in_service, 6);
        let groups: Vec<String> = sim
            .list_groups()
            .await?
            .into_iter()
            .map(|g| g.name)
            .collect();
        assert_eq!(groups, ["api", "web"]);
        Ok(())
    }

    #[tokio::test]
    async fn a_subnet_behind_a_deny_all_acl_fails_health_checks_until_it_is_moved_back(
    ) -> Result<(), CloudError> {
        let sim = sim_of(vec![web()]);
        let subnet = subnet_of(B);
        let before = sim.subnet_acls(std::slice::from_ref(&subnet)).await?;
        assert_eq!(before[0].acl, DEFAULT_ACL);
        sim.blackhole_subnets(SIM_VPC, std::slice::from_ref(&subnet), "t")
            .await?;
        let healthy_in_b =
            |all: &[Instance]| all.iter().filter(|i| i.zone == B && i.healthy).count();
        let all = sim.list_instances(&InstanceQuery::default()).await?;
        assert_eq!(healthy_in_b(&all), 0);
        assert!(all.iter().any(|i| i.zone == A && i.healthy));
        // Its group does not replace them (its health checks are EC2's).
        sim.sleep_ms(600_000).await;
        let all = sim.list_instances(&InstanceQuery::default()).await?;
        assert_eq!(all.iter().filter(|i| i.zone == B).count(), 2);
        assert_eq!(healthy_in_b(&all), 0);
        sim.restore_subnets(&before, "t").await?;
        let all = sim.list_instances(&InstanceQuery::default()).await?;
        assert_eq!(healthy_in_b(&all), 2);
        assert_eq!(sim.subnet_acls(&[subnet]).await?, before);
        Ok(())
    }

    #[tokio::test]
    async fn publish_records_in_the_outbox() -> Result<(), CloudError> {
        let sim = sim_of(vec![web()]);
        sim.sleep_ms(1_500).await;
        sim.publish("chaos-events", None, "killed", "i-0abc")
            .await?;
        assert_eq!(
            sim.outbox(),
            [Published {
                topic: "chaos-events".into(),
                subject: "killed".into(),
                body: "i-0abc".into(),
                at_ms: 1_500,
            }]
        );
        Ok(())
    }

    #[tokio::test]
    async fn churn_never_exceeds_desired() -> Result<(), CloudError> {
        let mut group = web();
        group.launch_jitter_secs = 10;
        group.failed_launches = 3;
        let sim = sim_of(vec![group]);
        for round in 0..40u64 {
            let live = instances(&sim, "web").await;
            let victim = live
                .iter()
                .filter(|i| matches!(i.state, InstanceState::Running | InstanceState::Pending))
                .nth((round % 3) as usize)
                .map(|i| i.id.clone());
            if let Some(victim) = victim {
                let via = if round % 2 == 0 {
                    TerminateVia::Ec2
                } else {
                    TerminateVia::AutoScaling
                };
                sim.terminate(&victim, via).await?;
            }
            sim.sleep_ms(3_000 + round * 1_000).await;
            let now = capacity(&sim, "web").await;
            assert!(now.in_service + now.pending <= 6, "round {round}: {now:?}");
        }
        assert!(recovered_at(&sim, "web", sim.now_ms() + 1_000_000)
            .await
            .is_some());
        Ok(())
    }

    #[tokio::test]
    async fn a_hundred_thousand_instances_list() -> Result<(), CloudError> {
        let started = std::time::Instant::now();
        let sim = SimCloud::new(FleetSpec::uniform(100, 1_000), 5)
            .map_err(|err| CloudError::Backend(err.to_string()))?;
        let built = started.elapsed();
        let all = sim.list_instances(&InstanceQuery::default()).await?;
        assert_eq!(all.len(), 100_000);
        assert!(all.windows(2).all(|pair| pair[0].id < pair[1].id));
        let one = sim
            .list_instances(&InstanceQuery {
                groups: Some(BTreeSet::from(["group-0042".into()])),
                zone: Some(B.into()),
                ..InstanceQuery::default()
            })
            .await?;
        assert_eq!(one.len(), 333);
        eprintln!(
            "100,000 instances: built in {built:?}, total {:?}",
            started.elapsed()
        );
        Ok(())
    }

    #[tokio::test]
    async fn fleet_file_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("wasmonkey-sim-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("bad-fleet.toml");
        let written = std::fs::write(
            &path,
            "[[group]]\nname = \"web\"\nzones = [\"us-east-1a\"]\ndesired = 12\nmin = 1\nmax = 9\n",
        );
        assert!(written.is_ok());
        let err = match SimCloud::from_fleet_file(&path, 1) {
            Ok(_) => panic!("a bad fleet loaded"),
            Err(err) => err.to_string(),
        };
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            err,
            format!(
                "{}: group \"web\": desired 12 is above max 9",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn example_fleet_runs() -> Result<(), CloudError> {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/fleet.toml"
        ));
        let sim = SimCloud::from_fleet_file(path, 1)
            .map_err(|err| CloudError::Backend(err.to_string()))?;
        let groups = sim.list_groups().await?;
        let names: Vec<String> = groups.iter().map(|group| group.name.clone()).collect();
        let capacity = sim.capacity(&names).await?;
        assert!(capacity.iter().all(|(_, capacity)| capacity.is_recovered()));
        let total: u32 = groups.iter().map(|group| group.desired).sum();
        let all = sim.list_instances(&InstanceQuery::default()).await?;
        assert_eq!(all.len() as u32, total + 1, "groups plus the bastion");
        Ok(())
    }
}
