//! The account's messaging services, as a backend provides them: SNS
//! topics and EventBridge buses, reached with the backend's credentials and
//! counted with its API calls. Only the calls live here; what is sent, when,
//! how it is journalled and retried is the notifier's.

#[cfg(feature = "aws")]
pub(crate) mod aws;
#[cfg(feature = "aws")]
mod eventbridge;
#[cfg(feature = "aws")]
mod sns;

use super::CloudError;

/// The messaging services of the account a backend runs in: SNS topics and
/// EventBridge buses (each in the region its ARN names), through the
/// backend's credentials and counted with its API calls. How a message is
/// journalled and retried is the notifier's.
#[async_trait::async_trait]
pub trait Messaging: Send + Sync {
    /// Publish one message to an SNS topic, as `role` when it is another
    /// account's.
    async fn publish(
        &self,
        topic: &str,
        role: Option<&ChannelRole>,
        subject: &str,
        body: &str,
    ) -> Result<(), CloudError>;

    /// Whether a topic can be published to: it exists where its ARN says
    /// and these credentials may read it.
    async fn check_topic(&self, topic: &str, role: Option<&ChannelRole>) -> Result<(), CloudError>;

    /// Put at most [`EVENTS_PER_CALL`] events on a bus; the positions of
    /// those it did not take, each with why.
    async fn put_events(
        &self,
        bus: &str,
        role: Option<&ChannelRole>,
        events: &[BusEvent],
    ) -> Result<Vec<(usize, String)>, CloudError>;

    /// Whether an event bus exists where its name (or ARN) says and these
    /// credentials may read it.
    async fn check_bus(&self, bus: &str, role: Option<&ChannelRole>) -> Result<(), CloudError>;
}

/// A role assumed through STS to reach a channel of another account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChannelRole {
    /// The role's ARN.
    pub role_arn: String,
    /// The external id its trust policy asks for.
    pub external_id: Option<String>,
}

/// One event for an EventBridge bus; its source is always `wasmonkey`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BusEvent {
    /// What happened, e.g. `wasmonkey Run Started` (docs/config.md lists them).
    pub detail_type: String,
    /// Its JSON detail.
    pub detail: String,
    /// When it happened, epoch ms.
    pub time_ms: i64,
}

/// The events source every wasmonkey event carries.
pub const EVENT_SOURCE: &str = "wasmonkey";
/// EventBridge's most entries per PutEvents call.
pub const EVENTS_PER_CALL: usize = 10;

/// Where an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`) of
/// `service` lives: its region and account.
pub(crate) fn arn_home<'a>(arn: &'a str, service: &str) -> Option<(&'a str, &'a str)> {
    let mut parts = arn.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some(svc), Some(region), Some(account), Some(name))
            if svc == service && !region.is_empty() && !account.is_empty() && !name.is_empty() =>
        {
            Some((region, account))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_names_where_its_topic_or_bus_lives() {
        assert_eq!(
            arn_home("arn:aws:sns:eu-west-1:123456789012:chaos-eu", "sns"),
            Some(("eu-west-1", "123456789012"))
        );
        assert_eq!(
            arn_home("arn:aws-cn:sns:cn-north-1:123456789012:t", "sns"),
            Some(("cn-north-1", "123456789012"))
        );
        assert_eq!(
            arn_home(
                "arn:aws:events:eu-west-1:123456789012:event-bus/chaos",
                "events"
            ),
            Some(("eu-west-1", "123456789012"))
        );
        for not_an_arn in [
            "chaos",
            "arn:aws:sqs:eu-west-1:1:q",
            "arn:aws:sns::1:t",
            "arn:aws:sns:eu-west-1:1:",
            "arn:aws",
            "arn:aws:events:eu-west-1:1:event-bus/b",
        ] {
            assert_eq!(arn_home(not_an_arn, "sns"), None, "{not_an_arn}");
        }
    }
}
