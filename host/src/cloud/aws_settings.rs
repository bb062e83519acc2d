//! The `[backend] kind = "aws"` settings. They parse in every build, so
//! that a build without the AWS backend (the `aws` feature) can still read a
//! config that asks for it and say how to get it.

use serde::Deserialize;

use super::TerminateVia;

/// The `[backend] kind = "aws"` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Region; default: the default chain's (`AWS_REGION`, profile…).
    #[serde(default)]
    pub region: Option<String>,
    /// Named profile from `~/.aws/config`; default: the default chain's.
    #[serde(default)]
    pub profile: Option<String>,
    /// Endpoint override, e.g. an emulator such as moto on loopback.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// `ec2` (TerminateInstances) or `auto-scaling`
    /// (TerminateInstanceInAutoScalingGroup without decrementing desired
    /// capacity, so lifecycle hooks fire).
    #[serde(default)]
    pub terminate_via: TerminateVia,
    /// Attempts per call, retries included.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Timeout of one attempt, in seconds.
    #[serde(default = "default_attempt_timeout")]
    pub attempt_timeout_secs: u64,
    /// Instances per DescribeInstances page (AWS allows 5 to 1000).
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    /// The account-and-region kill switch: an SSM parameter that every run
    /// and daemon on this account and region honours, and that `wasmonkey
    /// pause --account` sets. A parameter that cannot be read counts as
    /// set. `"off"` for none.
    #[serde(default = "default_account_switch")]
    pub account_switch: String,
    /// Accept a region missing from wasmonkey's list of AWS regions (one
    /// newer than this build). Otherwise such a region is refused before
    /// any call, as a typo would be.
    #[serde(default)]
    pub unlisted_region: bool,
}

/// The SSM parameter of the account-and-region kill switch.
pub const DEFAULT_ACCOUNT_SWITCH: &str = "/wasmonkey/kill-switch";

fn default_account_switch() -> String {
    DEFAULT_ACCOUNT_SWITCH.into()
}

/// The AWS regions this build knows, in every partition.
pub const KNOWN_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eusc-de-east-1",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-west-1",
    "us-west-2",
];

impl AwsSettings {
    /// Check the region the run will use (the settings', else the default
    /// chain's) before any call: a region that is unset, or that AWS does
    /// not have, fails here with what to do, not later as an unreadable
    /// answer.
    pub fn check_region(&self, resolved: Option<&str>) -> Result<String, String> {
        let Some(region) = resolved else {
            return Err(
                "no AWS region: set backend.region, or AWS_REGION, or a region in the profile"
                    .into(),
            );
        };
        if self.unlisted_region || KNOWN_REGIONS.contains(&region) {
            return Ok(region.to_owned());
        }
        let near: Vec<&str> = KNOWN_REGIONS
            .iter()
            .copied()
            .filter(|known| known.split('-').next() == region.split('-').next())
            .collect();
        Err(format!(
            "backend.region: {:?} is not an AWS region{}; if it is one newer than this build, set backend.unlisted_region = true",
            crate::text::shown(region, 64),
            if near.is_empty() {
                String::new()
            } else {
                format!(" (regions like it: {})", near.join(", "))
            }
        ))
    }

    /// The account switch's parameter, unless it is off.
    pub fn account_switch_parameter(&self) -> Option<&str> {
        (self.account_switch != "off").then_some(self.account_switch.as_str())
    }
}

pub(crate) fn default_page_size() -> i32 {
    1000
}

fn default_attempts() -> u32 {
    5
}

fn default_attempt_timeout() -> u64 {
    10
}
