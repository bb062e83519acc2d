//! `[[account]]` and `[fan_out]`: the accounts and regions one run reaches,
//! each through a role the host assumes, and how hard the host may press
//! each account's APIs.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::Deserialize;

use super::BackendConfig;
use crate::cloud::aws_settings::KNOWN_REGIONS;
pub use crate::cloud::fan_out::Role;

/// One account a run reaches, and its regions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The account: AWS's 12 digits (on the simulator, a name of letters,
    /// digits and `-`). The host checks, before any action, that what it
    /// reaches is this account.
    pub id: String,
    /// How group, zone and subnet names call this account
    /// (`NAME/REGION/GROUP`): plugins see this name, never the id unless it
    /// is the name. Default: the id.
    #[serde(default)]
    pub name: Option<String>,
    /// The role the host assumes in it (`arn:aws:iam::ID:role/NAME`, of
    /// this account). Without one, the backend's own credentials, which
    /// must then be this account's. AWS only.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy asks for.
    #[serde(default)]
    pub external_id: Option<String>,
    /// The session name CloudTrail shows for the host's calls (default
    /// `wasmonkey`).
    #[serde(default)]
    pub session_name: Option<String>,
    /// Its regions (default: the backend's region; on the simulator, the
    /// fleet's).
    #[serde(default)]
    pub regions: Vec<String>,
}

/// `[fan_out]`: how a run over several account-regions reads and acts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FanOutConfig {
    /// Account-regions read or acted on at once.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Backend calls per second in each account, across its regions (a
    /// listing's pages count each). Default: 20 on AWS, none on the
    /// simulator.
    #[serde(default)]
    pub calls_per_second: Option<u32>,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        FanOutConfig {
            workers: default_workers(),
            calls_per_second: None,
        }
    }
}

fn default_workers() -> usize {
    4
}

/// Most account-regions read at once.
const MAX_WORKERS: usize = 64;

/// The calls per second an account gets on AWS when the config says none:
/// well under EC2's and Auto Scaling's refill rates, so that the host
/// leaves room for the account's own automation.
const DEFAULT_AWS_CALLS_PER_SECOND: u32 = 20;

/// One account-region a run reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRegion {
    /// How names call the account: its `name`, else its id.
    pub name: String,
    /// The account.
    pub account: String,
    /// The region (empty: the backend's own, resolved when connecting).
    pub region: String,
    /// The role to assume there, with its external id and session name.
    pub role: Option<Role>,
}

impl FanOutConfig {
    /// The calls per second each account gets on `backend`, if bounded.
    pub fn budget(&self, backend: &BackendConfig) -> Option<u32> {
        match backend {
            BackendConfig::Aws(_) => Some(
                self.calls_per_second
                    .unwrap_or(DEFAULT_AWS_CALLS_PER_SECOND),
            ),
            BackendConfig::Sim { .. } => self.calls_per_second,
        }
    }
}

/// Every account-region of `accounts`, in the config's order.
pub fn account_regions(accounts: &[AccountConfig]) -> Vec<AccountRegion> {
    accounts
        .iter()
        .flat_map(|account| {
            let regions = if account.regions.is_empty() {
                vec![String::new()]
            } else {
                account.regions.clone()
            };
            regions.into_iter().map(|region| AccountRegion {
                name: account.name.clone().unwrap_or_else(|| account.id.clone()),
                account: account.id.clone(),
                region,
                role: account.role_arn.as_ref().map(|role_arn| Role {
                    role_arn: role_arn.clone(),
                    external_id: account.external_id.clone(),
                    session_name: account
                        .session_name
                        .clone()
                        .unwrap_or_else(|| "wasmonkey".to_owned()),
                }),
            })
        })
        .collect()
}

/// Every problem of `[[account]]` and `[fan_out]`, each with its dotted key.
pub(super) fn problems(
    accounts: &[AccountConfig],
    fan_out: &FanOutConfig,
    backend: &BackendConfig,
) -> Vec<(String, String)> {
    let mut wrong = Vec::new();
    let aws = match backend {
        BackendConfig::Aws(settings) => Some(settings),
        BackendConfig::Sim { .. } => None,
    };
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut names: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for (i, account) in accounts.iter().enumerate() {
        let at = format!("account.{}", i + 1);
        let id = &account.id;
        let id_ok = if aws.is_some() {
            id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())
        } else {
            is_name(id)
        };
        if !id_ok {
            let what = if aws.is_some() {
                "an AWS account's 12 digits"
            } else {
                "a name of letters, digits and -"
            };
            wrong.push((
                format!("{at}.id"),
                format!("{at}.id: {:?} is not {what}", crate::text::shown(id, 64)),
            ));
        }
        if let Some(name) = &account.name {
            if !is_name(name) {
                wrong.push((
                    format!("{at}.name"),
                    format!(
                        "{at}.name: {:?} is not a name of letters, digits and -",
                        crate::text::shown(name, 64)
                    ),
                ));
            }
        }
        let name = account.name.as_deref().unwrap_or(id);
        match names.get(name) {
            Some(other) if *other != id.as_str() => wrong.push((
                format!("{at}.name"),
                format!("{at}: the name {name:?} is account {other}'s already; each account needs its own"),
            )),
            _ => {
                names.insert(name, id);
            }
        }
        match (&account.role_arn, aws) {
            (Some(_), None) => wrong.push((
                format!("{at}.role_arn"),
                format!("{at}.role_arn: roles are assumed on AWS only (backend kind = \"aws\")"),
            )),
            (Some(role), Some(_)) => {
                if let Err(why) = role_problem(role, id) {
                    wrong.push((format!("{at}.role_arn"), format!("{at}.role_arn: {why}")));
                }
            }
            (None, _) => {
                for (field, given) in [
                    ("external_id", account.external_id.is_some()),
                    ("session_name", account.session_name.is_some()),
                ] {
                    if given {
                        wrong.push((
                            format!("{at}.{field}"),
                            format!("{at}.{field} needs role_arn"),
                        ));
                    }
                }
            }
        }
        if let Some(name) = &account.session_name {
            let ok = (2..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b));
            if !ok {
                wrong.push((
                    format!("{at}.session_name"),
                    format!(
                        "{at}.session_name: {:?} is not 2 to 64 of letters, digits and +=,.@-_",
                        crate::text::shown(name, 64)
                    ),
                ));
            }
        }
        let regions: Vec<String> = if account.regions.is_empty() {
            vec![String::new()]
        } else {
            account.regions.clone()
        };
        for region in &regions {
            if let Some(settings) = aws {
                if !region.is_empty()
                    && !settings.unlisted_region
                    && !KNOWN_REGIONS.contains(&region.as_str())
                {
                    wrong.push((
                        format!("{at}.regions"),
                        format!(
                            "{at}.regions: {:?} is not an AWS region (backend.unlisted_region = true accepts one newer than this build)",
                            crate::text::shown(region, 64)
                        ),
                    ));
                }
            }
            if !seen.insert((id.clone(), region.clone())) {
                let shown = if region.is_empty() {
                    "the backend's region".to_owned()
                } else {
                    format!("region {region}")
                };
                wrong.push((
                    format!("{at}.regions"),
                    format!(
                        "{at}: account {id} in {shown} is listed twice; each account-region is reached once, so that each instance is reported once"
                    ),
                ));
            }
        }
    }
    if !(1..=MAX_WORKERS).contains(&fan_out.workers) {
        wrong.push((
            "fan_out.workers".into(),
            format!(
                "fan_out.workers must be within 1..={MAX_WORKERS}, got {}",
                fan_out.workers
            ),
        ));
    }
    if fan_out.calls_per_second == Some(0) {
        wrong.push((
            "fan_out.calls_per_second".into(),
            "fan_out.calls_per_second must be at least 1".into(),
        ));
    }
    wrong
}

/// A name that can stand before `/REGION/` in every name of its account.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Why `role` is not a role of account `id`, if it is not.
fn role_problem(role: &str, id: &str) -> Result<(), String> {
    let parts: Vec<&str> = role.splitn(6, ':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len();
    if !well_formed {
        return Err(format!(
            "{:?} is not a role's ARN like \"arn:aws:iam::{id}:role/wasmonkey\"",
            crate::text::shown(role, 128)
        ));
    }
    if parts[4] != id {
        return Err(format!(
            "the role is account {}'s, not {id}'s",
            crate::text::shown(parts[4], 64)
        ));
    }
    Ok(())
}
