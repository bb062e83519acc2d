//! The real AWS backend, through the official SDK: EC2 for instances, Auto
//! Scaling for groups, CloudWatch for the alarms of stop conditions, SSM
//! for the account's kill switch; the same credentials reach the
//! channels' topics and buses ([`super::messaging`]).
//!
//! Credentials come from aws-config's default chain (environment, profile,
//! SSO, instance metadata, assume-role) and never leave this module and
//! [`super::messaging`]. Every
//! call has an attempt timeout and an overall timeout, and throttling, 5xx
//! answers and dropped connections are retried by the SDK's standard retry
//! strategy: bounded attempts, exponential backoff with full jitter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::aws_settings::default_page_size;
pub use super::aws_settings::AwsSettings;
use super::{
    Alarm, AlarmState, Cloud, CloudError, Group, GroupSnapshot, Instance, InstanceQuery,
    InstanceState, Lifecycle, Market, Member, Millis, ScalingProcess, SubnetAcl, TerminateVia,
};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_autoscaling as autoscaling;
use aws_sdk_cloudwatch as cloudwatch;
use aws_sdk_ec2 as ec2;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm as ssm;
use aws_sdk_sts as sts;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::kill_switch::Pause;
use std::sync::{Arc, Mutex};

/// Counts every attempt the SDK sends (retries included: they are what an
/// account's API budget pays for), by service and operation.
#[derive(Debug, Clone)]
pub(crate) struct CallCounter {
    service: &'static str,
    calls: Arc<Mutex<super::ApiCalls>>,
}

impl CallCounter {
    /// Count `service`'s calls into `calls`.
    pub(crate) fn new(service: &'static str, calls: Arc<Mutex<super::ApiCalls>>) -> CallCounter {
        CallCounter { service, calls }
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "wasmonkey-api-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let action = cfg
            .load::<Metadata>()
            .map_or("unknown", |metadata| metadata.name())
            .to_owned();
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls.entry((self.service.to_owned(), action)).or_default() += 1;
        Ok(())
    }
}

/// The tag on every network ACL a fault creates: its run and fault.
const FAULT_TAG: &str = "wasmonkey:fault";

/// The tag Auto Scaling puts on the instances it launches.
pub(crate) const GROUP_TAG: &str = "aws:autoscaling:groupName";
/// Most groups per DescribeAutoScalingGroups call, by name or per page.
const GROUPS_PER_CALL: usize = 100;
/// Most values per DescribeInstances filter.
const FILTER_VALUES: usize = 200;
/// Most alarm names per DescribeAlarms call.
const ALARMS_PER_CALL: usize = 100;

impl AwsSettings {
    /// Load the SDK config: the default credential chain, with this
    /// region / profile / endpoint and our retry and timeout policy.
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader
            .retry_config(self.retry_config())
            .timeout_config(self.timeout_config())
            .load()
            .await
    }

    /// Bounded attempts, exponential backoff with jitter.
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts.max(1))
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(5))
    }

    /// A timeout on every attempt and on every call as a whole.
    pub fn timeout_config(&self) -> TimeoutConfig {
        let attempt = Duration::from_secs(self.attempt_timeout_secs.max(1));
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3).min(attempt))
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt * self.max_attempts.max(1) + Duration::from_secs(30))
            .build()
    }
}

/// The AWS backend.
pub struct AwsCloud {
    ec2: ec2::Client,
    autoscaling: autoscaling::Client,
    cloudwatch: cloudwatch::Client,
    /// SNS and EventBridge, through the same credentials and call count.
    messaging: super::messaging::aws::AwsMessaging,
    ssm: ssm::Client,
    sts: sts::Client,
    /// The account these credentials act in, once STS has said it.
    account: tokio::sync::OnceCell<String>,
    /// The account switch's SSM parameter, if it is on.
    account_switch: Option<String>,
    region: String,
    /// The endpoint, when it is not AWS's own (moto, a proxy).
    endpoint: Option<String>,
    terminate_via: TerminateVia,
    page_size: i32,
    started: Instant,
    calls: Arc<Mutex<super::ApiCalls>>,
}

impl AwsCloud {
    /// Connect with the settings' SDK config, once its region is checked:
    /// no call is made to a region that is unset or that AWS does not have.
    pub async fn connect(settings: &AwsSettings) -> anyhow::Result<AwsCloud> {
        let sdk = settings.sdk_config().await;
        settings
            .check_region(sdk.region().map(Region::as_ref))
            .map_err(|err| anyhow::anyhow!(err))?;
        let cloud = AwsCloud::new(&sdk, settings.terminate_via).with_page_size(settings.page_size);
        Ok(match settings.account_switch_parameter() {
            Some(name) => cloud.with_account_switch(name),
            None => cloud,
        })
    }

    /// The backend of one account-region of a run over several: the
    /// settings' own SDK config `base` in `region` (empty: its own), as
    /// `role` when there is one (assumed through STS in that region with
    /// the host's own credentials, and refreshed before it expires).
    pub async fn connect_leg(
        settings: &AwsSettings,
        base: &SdkConfig,
        region: &str,
        role: Option<&super::fan_out::Role>,
    ) -> anyhow::Result<AwsCloud> {
        let region = if region.is_empty() {
            settings
                .check_region(base.region().map(Region::as_ref))
                .map_err(|err| anyhow::anyhow!(err))?
        } else {
            region.to_owned()
        };
        let mut builder = base.to_builder().region(Region::new(region.clone()));
        if let Some(role) = role {
            let mut assume = aws_config::sts::AssumeRoleProvider::builder(role.role_arn.clone())
                .session_name(role.session_name.clone())
                .region(Region::new(region.clone()))
                .configure(base);
            if let Some(external_id) = &role.external_id {
                assume = assume.external_id(external_id.clone());
            }
            builder = builder.credentials_provider(
                aws_sdk_sts::config::SharedCredentialsProvider::new(assume.build().await),
            );
        }
        let cloud = AwsCloud::new(&builder.build(), settings.terminate_via)
            .with_page_size(settings.page_size);
        Ok(match settings.account_switch_parameter() {
            Some(name) => cloud.with_account_switch(name),
            None => cloud,
        })
    }

    /// The region it acts in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Honour the account-and-region kill switch kept in the SSM
    /// parameter `name`.
    pub fn with_account_switch(mut self, name: &str) -> AwsCloud {
        self.account_switch = Some(name.to_owned());
        self
    }

    /// Read DescribeInstances in pages of `size` (clamped to AWS's 5..=1000).
    pub fn with_page_size(mut self, size: i32) -> AwsCloud {
        self.page_size = size.clamp(5, 1000);
        self
    }

    /// Clients from an SDK config (tests build one with static credentials).
    pub fn new(sdk: &SdkConfig, terminate_via: TerminateVia) -> AwsCloud {
        let calls = Arc::new(Mutex::new(super::ApiCalls::new()));
        let counter = |service| CallCounter {
            service,
            calls: Arc::clone(&calls),
        };
        AwsCloud {
            ec2: ec2::Client::from_conf(
                ec2::config::Builder::from(sdk)
                    .interceptor(counter("ec2"))
                    .build(),
            ),
            autoscaling: autoscaling::Client::from_conf(
                autoscaling::config::Builder::from(sdk)
                    .interceptor(counter("autoscaling"))
                    .build(),
            ),
            cloudwatch: cloudwatch::Client::from_conf(
                cloudwatch::config::Builder::from(sdk)
                    .interceptor(counter("cloudwatch"))
                    .build(),
            ),
            messaging: super::messaging::aws::AwsMessaging::new(sdk.clone(), Arc::clone(&calls)),
            ssm: ssm::Client::from_conf(
                ssm::config::Builder::from(sdk)
                    .interceptor(counter("ssm"))
                    .build(),
            ),
            sts: sts::Client::from_conf(
                sts::config::Builder::from(sdk)
                    .interceptor(counter("sts"))
                    .build(),
            ),
            account: tokio::sync::OnceCell::new(),
            account_switch: None,
            region: sdk.region().map_or_else(String::new, |r| r.to_string()),
            endpoint: sdk.endpoint_url().map(str::to_owned),
            terminate_via,
            page_size: default_page_size(),
            started: Instant::now(),
            calls,
        }
    }

    /// Epoch ms of this backend's clock 0.
    fn origin_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let elapsed = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(0);
        now.saturating_sub(elapsed)
    }

    /// The network ACLs associated with `subnets` (one call).
    async fn acls_of(&self, subnets: &[String]) -> Result<Vec<ec2::types::NetworkAcl>, CloudError> {
        Ok(self
            .ec2
            .describe_network_acls()
            .filters(
                ec2::types::Filter::builder()
                    .name("association.subnet-id")
                    .set_values(Some(subnets.to_vec()))
                    .build(),
            )
            .send()
            .await
            .map_err(|err| classify("ec2:DescribeNetworkAcls", err))?
            .network_acls()
            .to_vec())
    }

    /// The association of `subnet` with its network ACL now: its id and
    /// the ACL's.
    async fn association_of(&self, subnet: &str) -> Result<(String, String), CloudError> {
        let acls = self.acls_of(&[subnet.to_owned()]).await?;
        acls.iter()
            .find_map(|acl| {
                acl.associations()
                    .iter()
                    .find(|a| a.subnet_id() == Some(subnet))
                    .and_then(|a| {
                        Some((
                            a.network_acl_association_id()?.to_owned(),
                            acl.network_acl_id()?.to_owned(),
                        ))
                    })
            })
            .ok_or_else(|| CloudError::NotFound(format!("no network ACL association of {subnet}")))
    }

    /// Associate `subnet` with `acl`, unless it is already.
    async fn associate(&self, subnet: &str, acl: &str) -> Result<(), CloudError> {
        let (association, current) = self.association_of(subnet).await?;
        if current == acl {
            return Ok(());
        }
        self.ec2
            .replace_network_acl_association()
            .association_id(association)
            .network_acl_id(acl)
            .send()
            .await
            .map(drop)
            .map_err(|err| classify("ec2:ReplaceNetworkAclAssociation", err))
    }

    /// The configured termination API.
    pub fn terminate_via(&self) -> TerminateVia {
        self.terminate_via
    }

    /// Auto Scaling groups by name (all of them when `names` is `None`).
    async fn describe_groups(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<autoscaling::types::AutoScalingGroup>, CloudError> {
        let batches: Vec<Option<Vec<String>>> = match names {
            None => vec![None],
            Some([]) => return Ok(Vec::new()),
            Some(names) => names
                .chunks(GROUPS_PER_CALL)
                .map(|c| Some(c.to_vec()))
                .collect(),
        };
        let mut groups = Vec::new();
        for batch in batches {
            let mut pages = self
                .autoscaling
                .describe_auto_scaling_groups()
                .set_max_records(batch.is_none().then_some(GROUPS_PER_CALL as i32))
                .set_auto_scaling_group_names(batch)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|err| classify("autoscaling:DescribeAutoScalingGroups", err))?;
                groups.extend(page.auto_scaling_groups().iter().cloned());
            }
        }
        Ok(groups)
    }

    /// EC2 instances matching server-side filters, all pages.
    async fn ec2_instances(
        &self,
        filters: Vec<ec2::types::Filter>,
    ) -> Result<Vec<ec2::types::Instance>, CloudError> {
        let mut pages = self
            .ec2
            .describe_instances()
            .set_filters(if filters.is_empty() {
                None
            } else {
                Some(filters)
            })
            .set_max_results(Some(self.page_size))
            .into_paginator()
            .send();
        let mut instances = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| classify("ec2:DescribeInstances", err))?;
            for reservation in page.reservations() {
                instances.extend(reservation.instances().iter().cloned());
            }
        }
        Ok(instances)
    }
}

/// A group and its members from one DescribeAutoScalingGroups answer.
fn snapshot(raw: &autoscaling::types::AutoScalingGroup) -> GroupSnapshot {
    let count = |n: Option<i32>| u32::try_from(n.unwrap_or(0)).unwrap_or(0);
    GroupSnapshot {
        group: Arc::new(Group {
            name: raw.auto_scaling_group_name().unwrap_or_default().to_owned(),
            zones: raw.availability_zones().to_vec(),
            desired: count(raw.desired_capacity()),
            min: count(raw.min_size()),
            max: count(raw.max_size()),
            tags: tag_map(raw.tags().iter().map(|t| (t.key(), t.value()))),
        }),
        members: raw
            .instances()
            .iter()
            .filter_map(|instance| {
                let (lifecycle, healthy) = member_state(instance);
                Some(Member {
                    id: instance.instance_id()?.to_owned(),
                    zone: instance.availability_zone().unwrap_or_default().to_owned(),
                    lifecycle,
                    healthy,
                })
            })
            .collect(),
    }
}

/// A group member's lifecycle and health, as its group reports them.
fn member_state(instance: &autoscaling::types::Instance) -> (Lifecycle, bool) {
    let lifecycle = instance
        .lifecycle_state()
        .map_or(Lifecycle::Pending, |state| lifecycle(state.as_str()));
    let healthy = instance
        .health_status()
        .is_none_or(|h| h.eq_ignore_ascii_case("healthy"));
    (lifecycle, healthy)
}

/// Auto Scaling lifecycle state names → ours (Pending:Wait is pending…).
fn lifecycle(state: &str) -> Lifecycle {
    match state.split(':').next().unwrap_or(state) {
        "InService" => Lifecycle::InService,
        "Terminating" => Lifecycle::Terminating,
        "Terminated" => Lifecycle::Terminated,
        "Standby" | "EnteringStandby" => Lifecycle::Standby,
        "Detaching" | "Detached" => Lifecycle::Detached,
        _ => Lifecycle::Pending,
    }
}

fn state(instance: &ec2::types::Instance) -> InstanceState {
    state_of(instance.state())
}

fn state_of(state: Option<&ec2::types::InstanceState>) -> InstanceState {
    use ec2::types::InstanceStateName as S;
    match state.and_then(|s| s.name()) {
        Some(S::Running) => InstanceState::Running,
        Some(S::ShuttingDown) => InstanceState::ShuttingDown,
        Some(S::Terminated) => InstanceState::Terminated,
        Some(S::Stopping) => InstanceState::Stopping,
        Some(S::Stopped) => InstanceState::Stopped,
        _ => InstanceState::Pending,
    }
}

/// EC2 and Auto Scaling tags as a map; a tag without a key is dropped, one
/// without a value has the empty value.
fn tag_map<'a>(
    tags: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> BTreeMap<String, String> {
    tags.filter_map(|(key, value)| Some((key?.to_owned(), value.unwrap_or_default().to_owned())))
        .collect()
}

/// An instance as EC2 alone knows it: its group from the group tag, its
/// lifecycle guessed from its state, healthy only if standalone and
/// running. The fleet view puts its group's answer in place of the guess.
/// `origin_ms` is the epoch ms of the backend's clock 0.
fn instance(raw: &ec2::types::Instance, origin_ms: i64) -> Option<Instance> {
    let id = raw.instance_id()?.to_owned();
    let tags = tag_map(raw.tags().iter().map(|t| (t.key(), t.value())));
    let state = state(raw);
    let group = tags.get(GROUP_TAG).cloned();
    let lifecycle = group.as_ref().map(|_| match state {
        InstanceState::ShuttingDown => Lifecycle::Terminating,
        InstanceState::Pending => Lifecycle::Pending,
        InstanceState::Running => Lifecycle::Detached,
        _ => Lifecycle::Terminated,
    });
    Some(Instance {
        id,
        zone: raw
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned(),
        healthy: state == InstanceState::Running && lifecycle.is_none(),
        group,
        state,
        lifecycle,
        tags,
        instance_type: raw
            .instance_type()
            .map_or_else(String::new, |t| t.as_str().to_owned()),
        launched_ms: raw
            .launch_time()
            .and_then(|t| t.to_millis().ok())
            .map_or(i64::MIN, |ms| ms.saturating_sub(origin_ms)),
        market: match raw.instance_lifecycle() {
            Some(ec2::types::InstanceLifecycleType::Spot) => Market::Spot,
            _ => Market::OnDemand,
        },
        subnet: raw.subnet_id().map(str::to_owned),
        zone_id: raw
            .placement()
            .and_then(|p| p.availability_zone_id())
            .map(str::to_owned),
    })
}

/// Sorted by id, each once; launch times on the clock of `origin_ms`.
fn sorted(raw: &[ec2::types::Instance], origin_ms: i64) -> Vec<Instance> {
    let mut instances: Vec<Instance> = raw
        .iter()
        .filter_map(|raw| instance(raw, origin_ms))
        .collect();
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    instances.dedup_by(|a, b| a.id == b.id);
    instances
}

fn filter(name: &str, values: Vec<String>) -> ec2::types::Filter {
    ec2::types::Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

fn state_name(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Pending => "pending",
        InstanceState::Running => "running",
        InstanceState::ShuttingDown => "shutting-down",
        InstanceState::Terminated => "terminated",
        InstanceState::Stopping => "stopping",
        InstanceState::Stopped => "stopped",
    }
}

/// Turn an SDK error into ours: one line that names the API action, the
/// AWS error code and message, and what to check. No `Debug` output of
/// the SDK's reaches the operator.
pub(crate) fn classify<E, R>(action: &str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = err.code().unwrap_or_default().to_owned();
    let message = err.message().unwrap_or_default().to_owned();
    let chain = || crate::text::shown(&error_chain(&err), 1024);
    match &err {
        SdkError::TimeoutError(_) => {
            return CloudError::Backend(format!(
                "{action} timed out: no answer within backend.attempt_timeout_secs; check that the endpoint is reachable"
            ))
        }
        SdkError::DispatchFailure(failure) => {
            let text = chain();
            let lower = text.to_ascii_lowercase();
            return CloudError::Backend(if lower.contains("credential") || lower.contains("identity") {
                format!(
                    "{action}: no credentials ({text}); check the default credential chain (AWS_PROFILE or backend.profile, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, SSO, an instance role)"
                )
            } else if failure.is_io() || failure.is_timeout() {
                format!(
                    "{action}: endpoint unreachable ({text}); check the network, backend.endpoint_url and backend.region"
                )
            } else {
                format!("{action}: the request could not be sent ({text})")
            });
        }
        SdkError::ResponseError(_) => {
            return CloudError::Backend(format!(
                "{action}: the answer is not one AWS gives ({}); check that backend.endpoint_url is an AWS endpoint for backend.region",
                chain()
            ))
        }
        SdkError::ConstructionFailure(_) => {
            return CloudError::Backend(format!(
                "{action}: the request could not be built ({})",
                chain()
            ))
        }
        _ => {}
    }
    let message = crate::text::shown(&message, 1024);
    match code.as_str() {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "RequestThrottled"
        | "TooManyRequestsException"
        | "SlowDown" => CloudError::Throttled(format!("{action}: {code}: {message}")),
        c if c.starts_with("InvalidInstanceID")
            || c == "ValidationError" && message.contains("not found") =>
        {
            CloudError::NotFound(format!("{action}: {code}: {message}"))
        }
        "UnauthorizedOperation"
        | "AccessDenied"
        | "AccessDeniedException"
        | "AuthorizationError" => CloudError::Backend(format!(
            "{action}: access denied: {code}: {message}; grant the IAM action {action} to these credentials (docs/aws.md has a least-privilege policy)"
        )),
        "AuthFailure"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException" => CloudError::Backend(format!(
            "{action}: the credentials were refused: {code}: {message}; check the credentials and that they are for this region's partition"
        )),
        "" => CloudError::Backend(format!("{action}: {}", chain())),
        _ => CloudError::Backend(format!("{action}: {code}: {message}")),
    }
}

/// An error and its sources, each in its own words (their `Display`),
/// without repeats.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(current) = next {
        let text = current.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

/// The account-and-region kill switch: an SSM parameter holding the pause
/// as JSON. No parameter is "clear"; any other answer that is not a pause
/// (an error, a value that is not one) is "set".
struct AccountSwitch {
    ssm: ssm::Client,
    name: String,
    region: String,
}

/// Most bytes of a reason kept in the parameter (SSM's standard tier
/// holds 4 KB).
const ACCOUNT_REASON_BYTES: usize = 2048;

#[async_trait::async_trait]
impl crate::kill_switch::Switch for AccountSwitch {
    async fn paused(&self) -> Option<Pause> {
        let location = self.location();
        match self.ssm.get_parameter().name(&self.name).send().await {
            Ok(answer) => {
                let value = answer
                    .parameter()
                    .and_then(|p| p.value())
                    .unwrap_or_default();
                Some(serde_json::from_str(value).unwrap_or_else(|err| {
                    Pause::unreadable(&location, &format!("its value is not a pause: {err}"))
                }))
            }
            Err(err) if err.code() == Some("ParameterNotFound") => None,
            Err(err) => Some(Pause::unreadable(
                &location,
                &classify("ssm:GetParameter", err).to_string(),
            )),
        }
    }

    async fn pause(&self, reason: &str) -> anyhow::Result<Pause> {
        let pause = Pause::now(&crate::text::bounded(reason, ACCOUNT_REASON_BYTES));
        self.ssm
            .put_parameter()
            .name(&self.name)
            .value(serde_json::to_string(&pause)?)
            .r#type(ssm::types::ParameterType::String)
            .overwrite(true)
            .description("wasmonkey's kill switch: while it exists, no wasmonkey run on this account and region terminates anything")
            .send()
            .await
            .map_err(|err| anyhow::anyhow!("{}", classify("ssm:PutParameter", err)))?;
        Ok(pause)
    }

    async fn resume(&self) -> anyhow::Result<Option<Pause>> {
        let was = self.paused().await;
        match self.ssm.delete_parameter().name(&self.name).send().await {
            Ok(_) => Ok(was),
            Err(err) if err.code() == Some("ParameterNotFound") => Ok(None),
            Err(err) => Err(anyhow::anyhow!("{}", classify("ssm:DeleteParameter", err))),
        }
    }

    fn scope(&self) -> crate::kill_switch::SwitchScope {
        crate::kill_switch::SwitchScope::Account
    }

    fn location(&self) -> String {
        format!("ssm:{} in {}", self.name, self.region)
    }

    fn remote(&self) -> bool {
        true
    }
}

#[async_trait::async_trait]
impl Cloud for AwsCloud {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn api_calls(&self) -> super::ApiCalls {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn account_switches(&self) -> Vec<Arc<dyn crate::kill_switch::Switch>> {
        let Some(name) = self.account_switch.clone() else {
            return Vec::new();
        };
        vec![Arc::new(AccountSwitch {
            ssm: self.ssm.clone(),
            name,
            region: self.region.clone(),
        })]
    }

    fn now_ms(&self) -> Millis {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn sleep_ms(&self, ms: Millis) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn groups(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<Arc<GroupSnapshot>>, CloudError> {
        let mut groups: Vec<Arc<GroupSnapshot>> = self
            .describe_groups(names)
            .await?
            .iter()
            .map(|raw| Arc::new(snapshot(raw)))
            .collect();
        groups.sort_by(|a, b| a.group.name.cmp(&b.group.name));
        Ok(groups)
    }

    async fn instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        let mut base = Vec::new();
        if let Some(zone) = &query.zone {
            base.push(filter("availability-zone", vec![zone.clone()]));
        }
        if !query.states.is_empty() {
            base.push(filter(
                "instance-state-name",
                query
                    .states
                    .iter()
                    .map(|s| state_name(*s).to_owned())
                    .collect(),
            ));
        }
        for (key, value) in &query.tags {
            base.push(filter(&format!("tag:{key}"), vec![value.clone()]));
        }
        let mut raw = Vec::new();
        match &query.groups {
            None => raw = self.ec2_instances(base).await?,
            Some(names) => {
                let names: Vec<String> = names.iter().cloned().collect();
                for chunk in names.chunks(FILTER_VALUES) {
                    let mut filters = base.clone();
                    filters.push(filter(&format!("tag:{GROUP_TAG}"), chunk.to_vec()));
                    raw.extend(self.ec2_instances(filters).await?);
                }
            }
        }
        let mut instances = sorted(&raw, self.origin_ms());
        instances.retain(|i| query.matches(i));
        Ok(instances)
    }

    /// By an `instance-id` filter rather than `InstanceIds`, which fails
    /// the whole call when one id is unknown.
    async fn instances_by_id(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        let mut raw = Vec::new();
        for chunk in ids.chunks(FILTER_VALUES) {
            raw.extend(
                self.ec2_instances(vec![filter("instance-id", chunk.to_vec())])
                    .await?,
            );
        }
        Ok(sorted(&raw, self.origin_ms()))
    }

    async fn terminate(
        &self,
        id: &str,
        via: TerminateVia,
    ) -> Result<Option<InstanceState>, CloudError> {
        match via {
            TerminateVia::Ec2 => self
                .ec2
                .terminate_instances()
                .instance_ids(id)
                .send()
                .await
                .map(|answer| {
                    answer
                        .terminating_instances()
                        .iter()
                        .find(|change| change.instance_id() == Some(id))
                        .map(|change| state_of(change.current_state()))
                })
                .map_err(|err| classify("ec2:TerminateInstances", err)),
            TerminateVia::AutoScaling => self
                .autoscaling
                .terminate_instance_in_auto_scaling_group()
                .instance_id(id)
                .should_decrement_desired_capacity(false)
                .send()
                .await
                .map(|_| None)
                .map_err(|err| classify("autoscaling:TerminateInstanceInAutoScalingGroup", err)),
        }
    }

    async fn stop_instance(&self, id: &str) -> Result<(), CloudError> {
        self.ec2
            .stop_instances()
            .instance_ids(id)
            .send()
            .await
            .map(drop)
            .map_err(|err| classify("ec2:StopInstances", err))
    }

    async fn start_instance(&self, id: &str) -> Result<(), CloudError> {
        match self.ec2.start_instances().instance_ids(id).send().await {
            Ok(_) => Ok(()),
            // Terminated (its group replaced it) or gone: nothing to start.
            Err(err) if err.code() == Some("IncorrectInstanceState") => {
                let state = self
                    .instances_by_id(&[id.to_owned()])
                    .await?
                    .first()
                    .map(|i| i.state);
                match state {
                    Some(InstanceState::Running | InstanceState::Pending) => Ok(()),
                    Some(InstanceState::Stopping) => Err(CloudError::Backend(format!(
                        "ec2:StartInstances: {id} is still stopping"
                    ))),
                    other => Err(CloudError::NotFound(format!(
                        "{id} is {}",
                        other.map_or("gone", state_name)
                    ))),
                }
            }
            Err(err) => Err(classify("ec2:StartInstances", err)),
        }
    }

    async fn reboot_instance(&self, id: &str) -> Result<(), CloudError> {
        self.ec2
            .reboot_instances()
            .instance_ids(id)
            .send()
            .await
            .map(drop)
            .map_err(|err| classify("ec2:RebootInstances", err))
    }

    async fn suspended_processes(&self, group: &str) -> Result<Vec<ScalingProcess>, CloudError> {
        let groups = self.describe_groups(Some(&[group.to_owned()])).await?;
        let found = groups
            .first()
            .ok_or_else(|| CloudError::NotFound(format!("no group {group}")))?;
        Ok(found
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().and_then(ScalingProcess::parse))
            .collect())
    }

    async fn suspend_processes(
        &self,
        group: &str,
        processes: &[ScalingProcess],
    ) -> Result<(), CloudError> {
        self.autoscaling
            .suspend_processes()
            .auto_scaling_group_name(group)
            .set_scaling_processes(Some(
                processes.iter().map(|p| p.name().to_owned()).collect(),
            ))
            .send()
            .await
            .map(drop)
            .map_err(|err| classify("autoscaling:SuspendProcesses", err))
    }

    async fn resume_processes(
        &self,
        group: &str,
        processes: &[ScalingProcess],
    ) -> Result<(), CloudError> {
        match self
            .autoscaling
            .resume_processes()
            .auto_scaling_group_name(group)
            .set_scaling_processes(Some(
                processes.iter().map(|p| p.name().to_owned()).collect(),
            ))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match classify("autoscaling:ResumeProcesses", err) {
                // The group was deleted: nothing left to resume.
                CloudError::Backend(m)
                    if m.contains("ValidationError") && m.contains("not found") =>
                {
                    Err(CloudError::NotFound(m))
                }
                other => Err(other),
            },
        }
    }

    async fn subnet_acls(&self, subnets: &[String]) -> Result<Vec<SubnetAcl>, CloudError> {
        let acls = self.acls_of(subnets).await?;
        let mut found = Vec::new();
        for acl in &acls {
            let (Some(id), Some(vpc)) = (acl.network_acl_id(), acl.vpc_id()) else {
                continue;
            };
            for association in acl.associations() {
                if let Some(subnet) = association
                    .subnet_id()
                    .filter(|s| subnets.iter().any(|x| x == s))
                {
                    found.push(SubnetAcl {
                        subnet: subnet.to_owned(),
                        vpc: vpc.to_owned(),
                        acl: id.to_owned(),
                    });
                }
            }
        }
        found.sort();
        found.dedup();
        Ok(found)
    }

    async fn blackhole_subnets(
        &self,
        vpc: &str,
        subnets: &[String],
        tag: &str,
    ) -> Result<(), CloudError> {
        use ec2::types::{ResourceType, Tag, TagSpecification};
        // A new network ACL denies all traffic until entries allow some.
        let acl = self
            .ec2
            .create_network_acl()
            .vpc_id(vpc)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::NetworkAcl)
                    .tags(Tag::builder().key(FAULT_TAG).value(tag).build())
                    .build(),
            )
            .send()
            .await
            .map_err(|err| classify("ec2:CreateNetworkAcl", err))?
            .network_acl()
            .and_then(|acl| acl.network_acl_id())
            .map(str::to_owned)
            .ok_or_else(|| CloudError::Backend("ec2:CreateNetworkAcl answered no ACL id".into()))?;
        for subnet in subnets {
            self.associate(subnet, &acl).await?;
        }
        Ok(())
    }

    async fn restore_subnets(&self, restore: &[SubnetAcl], tag: &str) -> Result<(), CloudError> {
        for back in restore {
            match self.associate(&back.subnet, &back.acl).await {
                Ok(()) | Err(CloudError::NotFound(_)) => {}
                Err(err) => return Err(err),
            }
        }
        let tagged = self
            .ec2
            .describe_network_acls()
            .filters(
                ec2::types::Filter::builder()
                    .name(format!("tag:{FAULT_TAG}"))
                    .values(tag)
                    .build(),
            )
            .send()
            .await
            .map_err(|err| classify("ec2:DescribeNetworkAcls", err))?;
        for acl in tagged.network_acls() {
            if let Some(id) = acl.network_acl_id() {
                self.ec2
                    .delete_network_acl()
                    .network_acl_id(id)
                    .send()
                    .await
                    .map_err(|err| classify("ec2:DeleteNetworkAcl", err))?;
            }
        }
        Ok(())
    }

    async fn alarms(&self, names: &[String]) -> Result<Vec<Alarm>, CloudError> {
        use cloudwatch::types::{AlarmType, StateValue};
        let state = |value: Option<&StateValue>| match value {
            Some(StateValue::Alarm) => AlarmState::Alarm,
            Some(StateValue::Ok) => AlarmState::Ok,
            _ => AlarmState::InsufficientData,
        };
        let mut found = Vec::new();
        for chunk in names.chunks(ALARMS_PER_CALL) {
            let mut pages = self
                .cloudwatch
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .max_records(ALARMS_PER_CALL as i32)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|err| classify("cloudwatch:DescribeAlarms", err))?;
                for alarm in page.metric_alarms() {
                    found.push(Alarm {
                        name: alarm.alarm_name().unwrap_or_default().to_owned(),
                        state: state(alarm.state_value()),
                        reason: alarm.state_reason().unwrap_or_default().to_owned(),
                    });
                }
                for alarm in page.composite_alarms() {
                    found.push(Alarm {
                        name: alarm.alarm_name().unwrap_or_default().to_owned(),
                        state: state(alarm.state_value()),
                        reason: alarm.state_reason().unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        Ok(found)
    }

    async fn check_terminate_permission(&self, id: &str) -> Result<(), CloudError> {
        match self
            .ec2
            .terminate_instances()
            .instance_ids(id)
            .dry_run(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // EC2's answer to a permitted dry run is this "error".
            Err(err) if err.code() == Some("DryRunOperation") => Ok(()),
            Err(err) => Err(classify("ec2:TerminateInstances", err)),
        }
    }

    fn messaging(&self) -> &dyn super::messaging::Messaging {
        &self.messaging
    }

    async fn whereabouts(&self) -> super::Whereabouts {
        // GetCallerIdentity needs no permission: it fails only when the
        // credentials or the network do, and then the account is unknown.
        let account = self
            .account
            .get_or_try_init(|| async {
                let answer = self
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|err| classify("sts:GetCallerIdentity", err))?;
                answer.account().map(str::to_owned).ok_or_else(|| {
                    CloudError::Backend("sts:GetCallerIdentity named no account".into())
                })
            })
            .await;
        let account = match account {
            Ok(account) => Some(account.clone()),
            Err(err) => {
                tracing::warn!("the account is unknown: {err}");
                None
            }
        };
        super::Whereabouts {
            account,
            region: (!self.region.is_empty()).then(|| self.region.clone()),
        }
    }

    fn identity(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("aws region {} at {endpoint}", self.region),
            None => format!("aws region {}", self.region),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instances_zone_id_is_read_from_its_placement() {
        let raw = |placement: ec2::types::Placement| {
            ec2::types::Instance::builder()
                .instance_id("i-0123456789abcdef0")
                .placement(placement)
                .build()
        };
        let with_id = raw(ec2::types::Placement::builder()
            .availability_zone("us-east-1a")
            .availability_zone_id("use1-az4")
            .build());
        let found = instance(&with_id, 0).map(|i| (i.zone, i.zone_id));
        assert_eq!(
            found,
            Some(("us-east-1a".to_owned(), Some("use1-az4".to_owned())))
        );
        // Without one (moto gives none), it is unknown, never guessed.
        let without = raw(ec2::types::Placement::builder()
            .availability_zone("us-east-1a")
            .build());
        assert_eq!(instance(&without, 0).and_then(|i| i.zone_id), None);
    }

    #[test]
    fn lifecycle_names_map_to_ours() {
        assert_eq!(lifecycle("InService"), Lifecycle::InService);
        assert_eq!(lifecycle("Pending:Wait"), Lifecycle::Pending);
        assert_eq!(lifecycle("Terminating:Proceed"), Lifecycle::Terminating);
        assert_eq!(lifecycle("Warmed:Pending"), Lifecycle::Pending);
    }

    #[test]
    fn settings_parse_with_defaults() {
        let settings: AwsSettings =
            toml::from_str("region = \"eu-west-1\"\nterminate_via = \"auto-scaling\"").unwrap();
        assert_eq!(settings.terminate_via, TerminateVia::AutoScaling);
        assert_eq!(settings.max_attempts, 5);
        assert!(toml::from_str::<AwsSettings>("regoin = \"x\"").is_err());
    }
}
