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
