//! The account's messaging services on AWS: SNS topics and EventBridge
//! buses, each reached in the region its ARN names (a bare bus name: the
//! backend's region), as the channel's role when it is another account's.
//! The clients share the backend's SDK config (credentials, endpoint,
//! timeouts) and its API-call count; they do not retry, because
//! the notifier retries and journals every attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::retry::RetryConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use super::{BusEvent, ChannelRole, Messaging};
use crate::cloud::aws::{classify, CallCounter};
use crate::cloud::{ApiCalls, CloudError};

/// Where and as whom a client calls: a region and an optional role.
type Reach = (String, Option<ChannelRole>);

/// SNS and EventBridge through the backend's SDK config.
pub(crate) struct AwsMessaging {
    sdk: SdkConfig,
    calls: Arc<Mutex<ApiCalls>>,
    /// The SDK config of each region and role, built at its first use (an
    /// assumed role's provider refreshes what it assumed before expiry).
    configs: tokio::sync::Mutex<BTreeMap<Reach, SdkConfig>>,
    pub(super) sns: Clients<aws_sdk_sns::Client>,
    pub(super) events: Clients<aws_sdk_eventbridge::Client>,
}

/// One service's clients by region and role.
pub(super) struct Clients<C>(Mutex<BTreeMap<Reach, C>>);

impl<C: Clone> Clients<C> {
    fn get(&self, reach: &Reach) -> Option<C> {
        self.lock().get(reach).cloned()
    }

    fn keep(&self, reach: Reach, client: C) -> C {
        self.lock().entry(reach).or_insert(client).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Reach, C>> {
        // Every update is one insert: a poisoned map is still a whole one.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AwsMessaging {
    /// Messaging through `sdk`, its calls counted in `calls`.
    pub(crate) fn new(sdk: SdkConfig, calls: Arc<Mutex<ApiCalls>>) -> AwsMessaging {
        AwsMessaging {
            sdk,
            calls,
            configs: tokio::sync::Mutex::default(),
            sns: Clients(Mutex::default()),
            events: Clients(Mutex::default()),
        }
    }

    /// The region an ARN of `service` names, else the backend's.
    fn region_of(&self, name: &str, service: &str) -> String {
        super::arn_home(name, service).map_or_else(
            || {
                self.sdk
                    .region()
                    .map_or_else(String::new, ToString::to_string)
            },
            |(region, _)| region.to_owned(),
        )
    }

    /// The SDK config for `reach`: the backend's, in that region, without
    /// the SDK's retries, with the role's credentials when there is one.
    async fn config(&self, reach: &Reach) -> SdkConfig {
        let mut configs = self.configs.lock().await;
        if let Some(config) = configs.get(reach) {
            return config.clone();
        }
        let (region, role) = reach;
        let mut builder = self
            .sdk
            .to_builder()
            .region(Region::new(region.clone()))
            .retry_config(RetryConfig::disabled());
        if let Some(role) = role {
            // STS in the channel's region, with the host's own credentials.
            let mut assume = aws_config::sts::AssumeRoleProvider::builder(role.role_arn.clone())
                .session_name("wasmonkey")
                .region(Region::new(region.clone()))
                .configure(&self.sdk);
            if let Some(external_id) = &role.external_id {
                assume = assume.external_id(external_id.clone());
            }
            builder = builder.credentials_provider(
                aws_sdk_sns::config::SharedCredentialsProvider::new(assume.build().await),
            );
        }
        let config = builder.build();
        configs.insert(reach.clone(), config.clone());
        config
    }

    /// The SNS client for `topic`, as `role`.
    pub(super) async fn sns_for(
        &self,
        topic: &str,
        role: Option<&ChannelRole>,
    ) -> aws_sdk_sns::Client {
        let reach = (self.region_of(topic, "sns"), role.cloned());
        if let Some(client) = self.sns.get(&reach) {
            return client;
        }
        let config = aws_sdk_sns::config::Builder::from(&self.config(&reach).await)
            .interceptor(CallCounter::new("sns", Arc::clone(&self.calls)))
            .build();
        self.sns.keep(reach, aws_sdk_sns::Client::from_conf(config))
    }

    /// The EventBridge client for `bus`, as `role`.
    pub(super) async fn events_for(
        &self,
        bus: &str,
        role: Option<&ChannelRole>,
    ) -> aws_sdk_eventbridge::Client {
        let reach = (self.region_of(bus, "events"), role.cloned());
        if let Some(client) = self.events.get(&reach) {
            return client;
        }
        let config = aws_sdk_eventbridge::config::Builder::from(&self.config(&reach).await)
            .interceptor(CallCounter::new("eventbridge", Arc::clone(&self.calls)))
            .build();
        self.events
            .keep(reach, aws_sdk_eventbridge::Client::from_conf(config))
    }
}

#[async_trait::async_trait]
impl Messaging for AwsMessaging {
    async fn publish(
        &self,
        topic: &str,
        role: Option<&ChannelRole>,
        subject: &str,
        body: &str,
    ) -> Result<(), CloudError> {
        super::sns::publish(self, topic, role, subject, body).await
    }

    async fn check_topic(&self, topic: &str, role: Option<&ChannelRole>) -> Result<(), CloudError> {
        super::sns::check(self, topic, role).await
    }

    async fn put_events(
        &self,
        bus: &str,
        role: Option<&ChannelRole>,
        events: &[BusEvent],
    ) -> Result<Vec<(usize, String)>, CloudError> {
        super::eventbridge::put(self, bus, role, events).await
    }

    async fn check_bus(&self, bus: &str, role: Option<&ChannelRole>) -> Result<(), CloudError> {
        super::eventbridge::check(self, bus, role).await
    }
}

/// A channel call's failure, with what no retry can heal (what it names
/// does not exist in its region, the credentials may not, a parameter is
/// invalid) as [`CloudError::Refused`].
pub(super) fn classify_channel<E, R>(action: &str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    let permanent = matches!(
        err.code(),
        Some(
            "NotFound"
                | "NotFoundException"
                | "ResourceNotFoundException"
                | "AuthorizationError"
                | "AccessDenied"
                | "AccessDeniedException"
                | "InvalidParameter"
                | "InvalidParameterValue"
                | "ValidationException"
                | "KMSAccessDenied"
                | "KMSDisabled"
                | "KMSNotFound"
                | "EndpointDisabled"
        )
    );
    match classify(action, err) {
        CloudError::Backend(message) | CloudError::NotFound(message) if permanent => {
            CloudError::Refused(message)
        }
        other => other,
    }
}
