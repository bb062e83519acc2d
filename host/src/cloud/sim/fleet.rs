//! The fleet file: what the simulator runs, as an operator writes it in
//! TOML. `examples/fleet.toml` documents every field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Region when the fleet file names none.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Tag keys with this prefix belong to AWS (it refuses them from users).
const RESERVED_TAG_PREFIX: &str = "aws:";

/// A whole simulated fleet: Auto Scaling groups, standalone instances and
/// the faults to inject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// AWS region; every zone must belong to it.
    #[serde(default = "default_region")]
    pub region: String,
    /// Every Nth API call answers `Throttled`; `None` never throttles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_every: Option<u64>,
    /// Auto Scaling groups (`[[group]]`).
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupSpec>,
    /// Instances in no group (`[[instance]]`).
    #[serde(default, rename = "instance")]
    pub instances: Vec<InstanceSpec>,
    /// Availability-zone outages (`[[outage]]`).
    #[serde(default, rename = "outage")]
    pub outages: Vec<OutageSpec>,
    /// Alarms, for `alarm` stop conditions offline (`[[alarm]]`).
    #[serde(default, rename = "alarm", skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<AlarmSpec>,
}

/// A CloudWatch alarm as the simulator plays it: in ALARM while its one
/// rule holds, else OK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmSpec {
    /// Alarm name, unique in the fleet.
    pub name: String,
    /// With `below_healthy`: ALARM while this group has fewer healthy
    /// in-service instances than that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The healthy count `group`'s alarm goes off below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below_healthy: Option<u32>,
    /// ALARM while an outage of this zone is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_outage: Option<String>,
    /// ALARM from this time on the virtual clock (seconds), until
    /// `until_secs` if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_secs: Option<u64>,
    /// When the alarm of `from_secs` ends (seconds on the virtual clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_secs: Option<u64>,
}

/// One Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name, unique in the fleet.
    pub name: String,
    /// Availability zones, in the order used to spread and to break ties.
    pub zones: Vec<String>,
    /// Desired capacity; the simulator never changes it.
    pub desired: u32,
    /// Minimum size.
    pub min: u32,
    /// Maximum size: the group never has more pending or in-service
    /// instances.
    pub max: u32,
    /// Tags of the group, propagated to its instances.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Time from launch (pending) to running and in service.
    #[serde(default = "default_launch_secs")]
    pub launch_secs: u64,
    /// Each launch takes `launch_secs` plus a uniform draw in ± this.
    #[serde(default = "default_launch_jitter_secs")]
    pub launch_jitter_secs: u64,
    /// Delay before the group notices an instance it did not terminate
    /// itself has left service, and launches a replacement.
    #[serde(default = "default_detect_secs")]
    pub detect_secs: u64,
    /// Time from shutting-down to terminated.
    #[serde(default = "default_shutdown_secs")]
    pub shutdown_secs: u64,
    /// After entering service, the health check fails for this long.
    #[serde(default)]
    pub warmup_secs: u64,
    /// After entering service, the group ignores a failing health check for
    /// this long; an instance still failing then is replaced.
    #[serde(default = "default_health_check_grace_secs")]
    pub health_check_grace_secs: u64,
    /// Fault: this many replacement launches fail (pending → terminated).
    #[serde(default)]
    pub failed_launches: u32,
    /// Fault: replacement launches take `launch_secs` times this.
    #[serde(default = "default_slow_launch_factor")]
    pub slow_launch_factor: f64,
    /// The EC2 instance type of its instances.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
    /// Whether its instances are spot (or on-demand) instances.
    #[serde(default)]
    pub market: crate::cloud::Market,
}

/// An instance in no Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Its availability zone.
    pub zone: String,
    /// Its tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Its EC2 instance type.
    #[serde(default = "default_instance_type")]
    pub instance_type: String,
}

/// An availability-zone outage: no launch into the zone succeeds in
/// `[from_secs, until_secs)`; instances already there keep running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageSpec {
    /// The zone that is down.
    pub zone: String,
    /// Start, in seconds on the virtual clock.
    pub from_secs: u64,
    /// End (exclusive), in seconds on the virtual clock.
    pub until_secs: u64,
}

fn default_region() -> String {
    DEFAULT_REGION.to_string()
}
fn default_launch_secs() -> u64 {
    45
}
fn default_launch_jitter_secs() -> u64 {
    10
}
fn default_detect_secs() -> u64 {
    10
}
fn default_shutdown_secs() -> u64 {
    5
}
fn default_health_check_grace_secs() -> u64 {
    300
}
fn default_slow_launch_factor() -> f64 {
    1.0
}
fn default_instance_type() -> String {
    "m5.large".to_owned()
}

impl Default for FleetSpec {
    /// An empty fleet in the default region.
    fn default() -> Self {
        FleetSpec {
            region: default_region(),
            throttle_every: None,
            groups: Vec::new(),
            instances: Vec::new(),
            outages: Vec::new(),
            alarms: Vec::new(),
        }
    }
}

impl GroupSpec {
    /// A group with the default timings and no faults, its size fixed at
    /// `desired` (min = max = desired).
    pub fn new(name: impl Into<String>, zones: &[&str], desired: u32) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            zones: zones.iter().map(|zone| zone.to_string()).collect(),
            desired,
            min: desired,
            max: desired,
            tags: BTreeMap::new(),
            launch_secs: default_launch_secs(),
            launch_jitter_secs: default_launch_jitter_secs(),
            detect_secs: default_detect_secs(),
            shutdown_secs: default_shutdown_secs(),
            warmup_secs: 0,
            health_check_grace_secs: default_health_check_grace_secs(),
            failed_launches: 0,
            slow_launch_factor: default_slow_launch_factor(),
            instance_type: default_instance_type(),
            market: crate::cloud::Market::OnDemand,
        }
    }
}

impl FleetSpec {
    /// A generated fleet for benchmarks: `groups` groups named
    /// `group-0000`, … of `per_group` instances each, spread over three
    /// zones of the default region, tagged `env=bench`, default timings.
    pub fn uniform(groups: usize, per_group: u32) -> FleetSpec {
        let zones: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|letter| format!("{DEFAULT_REGION}{letter}"))
            .collect();
        let zone_refs: Vec<&str> = zones.iter().map(String::as_str).collect();
        let groups = (0..groups)
            .map(|index| {
                let mut group = GroupSpec::new(format!("group-{index:04}"), &zone_refs, per_group);
                group.min = 0;
                // Headroom, as real groups have, so replacements never hit max.
                group.max = per_group.saturating_mul(2);
                group.tags.insert("env".into(), "bench".into());
                group
            })
            .collect();
        FleetSpec {
            groups,
            ..FleetSpec::default()
        }
    }

    /// The same fleet in `region`: each zone named for it (`us-east-1a`
    /// in `eu-west-1` is `eu-west-1a`), for a simulated account-region.
    pub fn in_region(&self, region: &str) -> FleetSpec {
        let moved = |zone: &str| match zone.strip_prefix(self.region.as_str()) {
            Some(letter) => format!("{region}{letter}"),
            None => zone.to_owned(),
        };
        let mut spec = self.clone();
        spec.region = region.to_owned();
        for group in &mut spec.groups {
            group.zones = group.zones.iter().map(|z| moved(z)).collect();
        }
        for instance in &mut spec.instances {
            instance.zone = moved(&instance.zone);
        }
        for outage in &mut spec.outages {
            outage.zone = moved(&outage.zone);
        }
        for alarm in &mut spec.alarms {
            alarm.zone_outage = alarm.zone_outage.as_deref().map(moved);
        }
        spec
    }

    /// Read, parse and validate a fleet file. Errors name the file and,
    /// where possible, the line, the entry and the field.
    pub fn load(path: &Path) -> anyhow::Result<FleetSpec> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("{origin}: cannot read fleet file: {err}"))?;
        FleetSpec::parse(&text, &origin)
    }

    /// Parse and validate fleet TOML; `origin` (usually the file name)
    /// starts every error message.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<FleetSpec> {
        let spec: FleetSpec =
            toml::from_str(text).map_err(|err| anyhow::anyhow!(parse_error(text, origin, &err)))?;
        spec.check()
            .map_err(|message| anyhow::anyhow!("{origin}: {message}"))?;
        Ok(spec)
    }

    /// Check the fleet is one the simulator can run.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.check().map_err(|message| anyhow::anyhow!(message))
    }

    /// [`FleetSpec::validate`], with the message alone.
    fn check(&self) -> Result<(), String> {
        let region = &self.region;
        if region.is_empty() {
            return Err("region is empty".into());
        }
        if self.throttle_every == Some(0) {
            return Err(
                "throttle_every is 0; it must be at least 1 (leave it out to never throttle)"
                    .into(),
            );
        }
        let mut names = BTreeSet::new();
        let mut known_zones = BTreeSet::new();
        for (index, group) in self.groups.iter().enumerate() {
            if group.name.is_empty() {
                return Err(format!("group #{}: name is empty", index + 1));
            }
            let at = format!("group {:?}", group.name);
            if !names.insert(group.name.as_str()) {
                return Err(format!("{at}: name is used by an earlier group too"));
            }
            if group.zones.is_empty() {
                return Err(format!("{at}: zones is empty"));
            }
            let mut zones = BTreeSet::new();
            for zone in &group.zones {
                check_zone(region, zone).map_err(|message| format!("{at}: zones: {message}"))?;
                if !zones.insert(zone.as_str()) {
                    return Err(format!("{at}: zones: {zone:?} is listed twice"));
                }
                known_zones.insert(zone.as_str());
            }
            if group.min > group.max {
                return Err(format!(
                    "{at}: min {} is above max {}",
                    group.min, group.max
                ));
            }
            if group.desired > group.max {
                return Err(format!(
                    "{at}: desired {} is above max {}",
                    group.desired, group.max
                ));
            }
            if group.desired < group.min {
                return Err(format!(
                    "{at}: desired {} is below min {}",
                    group.desired, group.min
                ));
            }
            if !(group.slow_launch_factor.is_finite() && group.slow_launch_factor > 0.0) {
                return Err(format!(
                    "{at}: slow_launch_factor {} must be a positive number",
                    group.slow_launch_factor
                ));
            }
            check_tags(&group.tags).map_err(|message| format!("{at}: tags: {message}"))?;
        }
        for (index, instance) in self.instances.iter().enumerate() {
            let at = format!("instance #{}", index + 1);
            check_zone(region, &instance.zone)
                .map_err(|message| format!("{at}: zone: {message}"))?;
            known_zones.insert(instance.zone.as_str());
            check_tags(&instance.tags).map_err(|message| format!("{at}: tags: {message}"))?;
        }
        for (index, outage) in self.outages.iter().enumerate() {
            let at = format!("outage #{}", index + 1);
            check_zone(region, &outage.zone).map_err(|message| format!("{at}: zone: {message}"))?;
            // An outage nothing lives in is almost surely a typo.
            if !known_zones.contains(outage.zone.as_str()) {
                return Err(format!(
                    "{at}: zone: {:?} is not a zone of any group or instance",
                    outage.zone
                ));
            }
            if outage.until_secs <= outage.from_secs {
                return Err(format!(
                    "{at}: until_secs {} is not after from_secs {}",
                    outage.until_secs, outage.from_secs
                ));
            }
        }
        let mut alarm_names = BTreeSet::new();
        for (index, alarm) in self.alarms.iter().enumerate() {
            let at = format!("alarm #{} ({:?})", index + 1, alarm.name);
            if alarm.name.is_empty() {
                return Err(format!("alarm #{}: name is empty", index + 1));
            }
            if !alarm_names.insert(alarm.name.as_str()) {
                return Err(format!("{at}: name is used by an earlier alarm too"));
            }
            let rules = [
                alarm.group.is_some() || alarm.below_healthy.is_some(),
                alarm.zone_outage.is_some(),
                alarm.from_secs.is_some() || alarm.until_secs.is_some(),
            ];
            if rules.iter().filter(|&&r| r).count() != 1 {
                return Err(format!(
                    "{at}: give exactly one rule: group and below_healthy, zone_outage, or from_secs (and until_secs)"
                ));
            }
            match (&alarm.group, alarm.below_healthy) {
                (Some(group), Some(_)) if !names.contains(group.as_str()) => {
                    return Err(format!("{at}: group {group:?} is not a group of the fleet"));
                }
                (Some(_), None) | (None, Some(_)) => {
                    return Err(format!("{at}: group and below_healthy go together"));
                }
                _ => {}
            }
            if let Some(zone) = &alarm.zone_outage {
                if !known_zones.contains(zone.as_str()) {
                    return Err(format!(
                        "{at}: zone_outage: {zone:?} is not a zone of any group or instance"
                    ));
                }
            }
            if alarm.until_secs.is_some() && alarm.from_secs.is_none() {
                return Err(format!("{at}: until_secs needs from_secs"));
            }
            if let (Some(from), Some(until)) = (alarm.from_secs, alarm.until_secs) {
                if until <= from {
                    return Err(format!(
                        "{at}: until_secs {until} is not after from_secs {from}"
                    ));
                }
            }
        }
        let total = self
            .groups
            .iter()
            .map(|g| u64::from(g.desired))
            .sum::<u64>()
            .saturating_add(self.instances.len() as u64);
        if total > MAX_INSTANCES {
            return Err(format!(
                "the fleet starts with {total} instances; the simulator runs at most {MAX_INSTANCES}"
            ));
        }
        Ok(())
    }
}

/// Most instances a simulated fleet starts with: a fleet file cannot make
/// the host allocate without end.
pub(super) const MAX_INSTANCES: u64 = 1_000_000;

/// A zone of `region` is the region's name followed by something, like
/// `us-east-1a` or the local zone `us-east-1-bos-1a`.
fn check_zone(region: &str, zone: &str) -> Result<(), String> {
    if zone.is_empty() {
        return Err("zone name is empty".into());
    }
    match zone.strip_prefix(region) {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(format!("{zone:?} is not a zone of region {region}")),
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    for key in tags.keys() {
        if key.is_empty() {
            return Err("a tag key is empty".into());
        }
        if key.starts_with(RESERVED_TAG_PREFIX) {
            return Err(format!(
                "{key:?}: keys starting with {RESERVED_TAG_PREFIX:?} are reserved for AWS"
            ));
        }
    }
    Ok(())
}

/// One line: `file:line:col: group "web": desired: <what toml said>`.
fn parse_error(text: &str, origin: &str, err: &toml::de::Error) -> String {
    // Syntax errors come on several lines; reports want one.
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let message = message.as_str();
    let (at, key) = match err.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            (format!(":{line}:{column}"), key_before(text, span.start))
        }
        None => (String::new(), None),
    };
    let entry = failing_entry(text, err.message())
        .map(|entry| format!("{entry}: "))
        .unwrap_or_default();
    // toml names the field of unknown-field and missing-field errors but
    // not of bad values: take it from the `key = value` line.
    let key = key
        .filter(|key| !message.contains(&format!("`{key}`")))
        .map(|key| format!("{key}: "))
        .unwrap_or_default();
    format!("{origin}{at}: {entry}{key}{message}")
}

/// The key of the `key = value` line that `offset` falls in the value of.
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let line = before.rsplit('\n').next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then_some(key)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

/// Which `[[group]]`, `[[instance]]` or `[[outage]]` entry fails with this
/// message, found by deserializing each entry on its own: toml's error has
/// the line but not the entry.
fn failing_entry(text: &str, message: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let group_label = |index: usize, entry: &toml::Value| match entry.get("name") {
        Some(toml::Value::String(name)) => format!("group {name:?}"),
        _ => format!("group #{}", index + 1),
    };
    first_failing::<GroupSpec>(&table, "group", message, group_label)
        .or_else(|| {
            first_failing::<InstanceSpec>(&table, "instance", message, |index, _| {
                format!("instance #{}", index + 1)
            })
        })
        .or_else(|| {
            first_failing::<OutageSpec>(&table, "outage", message, |index, _| {
                format!("outage #{}", index + 1)
            })
        })
}

fn first_failing<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    message: &str,
    label: impl Fn(usize, &toml::Value) -> String,
) -> Option<String> {
    let toml::Value::Array(entries) = table.get(key)? else {
        return None;
    };
    entries
        .iter()
        .enumerate()
        .find_map(|(index, entry)| match entry.clone().try_into::<T>() {
            Err(err) if err.message() == message => Some(label(index, entry)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        match FleetSpec::parse(text, "fleet.toml") {
            Ok(spec) => panic!("expected an error, parsed {spec:?}"),
            Err(err) => err.to_string(),
        }
    }

    const WEB: &str = r#"
[[group]]
name = "web"
zones = ["us-east-1a", "us-east-1b"]
desired = 4
min = 2
max = 6
"#;

    #[test]
    fn defaults_apply() -> anyhow::Result<()> {
        let spec = FleetSpec::parse(WEB, "fleet.toml")?;
        assert_eq!(spec.region, "us-east-1");
        assert_eq!(spec.throttle_every, None);
        let group = &spec.groups[0];
        assert_eq!(group.launch_secs, 45);
        assert_eq!(group.launch_jitter_secs, 10);
        assert_eq!(group.detect_secs, 10);
        assert_eq!(group.shutdown_secs, 5);
        assert_eq!(group.warmup_secs, 0);
        assert_eq!(group.health_check_grace_secs, 300);
        assert_eq!(group.failed_launches, 0);
        assert_eq!(group.slow_launch_factor, 1.0);
        Ok(())
    }

    #[test]
    fn integer_slow_launch_factor_is_accepted() -> anyhow::Result<()> {
        let spec = FleetSpec::parse(&format!("{WEB}slow_launch_factor = 2\n"), "fleet.toml")?;
        assert_eq!(spec.groups[0].slow_launch_factor, 2.0);
        Ok(())
    }

    #[test]
    fn unknown_field_names_file_line_group_and_field() {
        let err = parse_err(&format!("{WEB}sizee = 3\n"));
        assert!(err.starts_with("fleet.toml:8:1: group \"web\": "), "{err}");
        assert!(err.contains("unknown field `sizee`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_group() {
        let err = parse_err(&WEB.replace("desired = 4", "desired = \"four\""));
        assert_eq!(
            err,
            "fleet.toml:5:11: group \"web\": desired: invalid type: string \"four\", expected u32"
        );
    }

    #[test]
    fn missing_field_names_the_group() {
        let err = parse_err(&WEB.replace("min = 2\n", ""));
        assert!(err.contains("group \"web\": missing field `min`"), "{err}");
    }

    #[test]
    fn unknown_top_level_and_instance_fields() {
        let err = parse_err("region = 3\n");
        assert_eq!(
            err,
            "fleet.toml:1:10: region: invalid type: integer `3`, expected a string"
        );
        let err = parse_err("regoin = \"us-east-1\"\n");
        assert!(err.starts_with("fleet.toml:1:1: "), "{err}");
        assert!(err.contains("unknown field `regoin`"), "{err}");
        let err = parse_err("[[instance]]\nzone = \"us-east-1a\"\nname = \"bastion\"\n");
        assert!(err.contains("instance #1: unknown field `name`"), "{err}");
    }

    #[test]
    fn a_fleet_too_large_to_simulate_is_refused_before_it_is_built() {
        let huge = WEB
            .replace("desired = 4", "desired = 4000000000")
            .replace("max = 6", "max = 4000000000");
        let err = parse_err(&huge);
        assert!(err.contains("at most 1000000"), "{err}");
    }

    #[test]
    fn desired_above_max() {
        let err = parse_err(&WEB.replace("desired = 4", "desired = 12"));
        assert_eq!(err, "fleet.toml: group \"web\": desired 12 is above max 6");
    }

    #[test]
    fn desired_below_min_and_min_above_max() {
        let err = parse_err(&WEB.replace("desired = 4", "desired = 1"));
        assert_eq!(err, "fleet.toml: group \"web\": desired 1 is below min 2");
        let err = parse_err(&WEB.replace("min = 2", "min = 7"));
        assert_eq!(err, "fleet.toml: group \"web\": min 7 is above max 6");
    }

    #[test]
    fn empty_zones() {
        let err = parse_err(&WEB.replace(r#"["us-east-1a", "us-east-1b"]"#, "[]"));
        assert_eq!(err, "fleet.toml: group \"web\": zones is empty");
    }

    #[test]
    fn zone_outside_region_or_repeated() {
        let err = parse_err(&WEB.replace("us-east-1b", "eu-west-1b"));
        assert_eq!(
            err,
            "fleet.toml: group \"web\": zones: \"eu-west-1b\" is not a zone of region us-east-1"
        );
        let err = parse_err(&WEB.replace("us-east-1b", "us-east-1a"));
        assert_eq!(
            err,
            "fleet.toml: group \"web\": zones: \"us-east-1a\" is listed twice"
        );
    }

    #[test]
    fn duplicate_group_names() {
        let err = parse_err(&format!("{WEB}{WEB}"));
        assert_eq!(
            err,
            "fleet.toml: group \"web\": name is used by an earlier group too"
        );
    }

    #[test]
    fn bad_faults_and_outages() {
        let err = parse_err(&format!("{WEB}slow_launch_factor = 0.0\n"));
        assert!(err.contains("group \"web\": slow_launch_factor 0"), "{err}");
        let err = parse_err(&format!("throttle_every = 0\n{WEB}"));
        assert!(err.starts_with("fleet.toml: throttle_every is 0"), "{err}");
        let outage = |zone: &str, from: u64, until: u64| {
            format!(
                "{WEB}\n[[outage]]\nzone = \"{zone}\"\nfrom_secs = {from}\nuntil_secs = {until}\n"
            )
        };
        let err = parse_err(&outage("us-east-1a", 60, 60));
        assert_eq!(
            err,
            "fleet.toml: outage #1: until_secs 60 is not after from_secs 60"
        );
        let err = parse_err(&outage("us-east-1f", 0, 60));
        assert!(err.contains("outage #1: zone: \"us-east-1f\" is not a zone of any group"));
        assert!(FleetSpec::parse(&outage("us-east-1b", 0, 60), "fleet.toml").is_ok());
    }

    #[test]
    fn reserved_tag_keys() {
        let err = parse_err(&format!("{WEB}tags = {{ \"aws:owner\" = \"me\" }}\n"));
        assert!(err.contains("group \"web\": tags: \"aws:owner\""), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = match FleetSpec::load(Path::new("/nonexistent/fleet.toml")) {
            Ok(_) => panic!("loaded a missing file"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.starts_with("/nonexistent/fleet.toml: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn example_fleet_parses() -> anyhow::Result<()> {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/fleet.toml"
        ));
        let spec = FleetSpec::load(path)?;
        assert_eq!(spec.region, "us-east-1");
        let names: Vec<&str> = spec
            .groups
            .iter()
            .map(|group| group.name.as_str())
            .collect();
        assert_eq!(names, ["web-prod", "api-prod", "batch-prod"]);
        assert_eq!(spec.groups[0].desired, 6);
        assert_eq!(spec.groups[0].zones.len(), 3);
        assert_eq!(spec.groups[1].desired, 4);
        assert!(spec.groups[1].warmup_secs > 0);
        assert_eq!(
            spec.groups[2].tags.get("chaos-opt-out").map(String::as_str),
            Some("true")
        );
        assert_eq!(spec.instances.len(), 1);
        for group in &spec.groups {
            assert!((30..=90).contains(&group.launch_secs), "{}", group.name);
        }
        Ok(())
    }

    /// The example's optional faults are written `#key = value`; switched
    /// on, they must parse too.
    #[test]
    fn example_fleet_faults_parse() -> anyhow::Result<()> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/fleet.toml");
        let text = std::fs::read_to_string(path)?;
        let enabled: String = text
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => rest,
                _ => line,
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        let spec = FleetSpec::parse(&enabled, path)?;
        assert_eq!(spec.throttle_every, Some(25));
        assert_eq!(spec.groups[0].failed_launches, 1);
        assert_eq!(spec.groups[0].slow_launch_factor, 2.5);
        assert_eq!(
            spec.outages,
            [OutageSpec {
                zone: "us-east-1b".into(),
                from_secs: 120,
                until_secs: 900
            }]
        );
        Ok(())
    }

    #[test]
    fn uniform_fleet_is_valid_and_round_trips() -> anyhow::Result<()> {
        let spec = FleetSpec::uniform(10, 100);
        spec.validate()?;
        assert_eq!(spec.groups.len(), 10);
        assert_eq!(spec.groups[9].name, "group-0009");
        assert!(spec.groups.iter().all(|group| group.desired == 100));
        let text = toml::to_string(&spec)?;
        assert_eq!(FleetSpec::parse(&text, "round-trip")?, spec);
        Ok(())
    }
}
