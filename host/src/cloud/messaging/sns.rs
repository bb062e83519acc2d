//! SNS topics: one message per publish, the topic checked with
//! GetTopicAttributes before a run that would publish.

use super::aws::{classify_channel, AwsMessaging};
use super::ChannelRole;
use crate::cloud::CloudError;

/// Publish one message to `topic`.
pub(super) async fn publish(
    aws: &AwsMessaging,
    topic: &str,
    role: Option<&ChannelRole>,
    subject: &str,
    body: &str,
) -> Result<(), CloudError> {
    aws.sns_for(topic, role)
        .await
        .publish()
        .topic_arn(topic)
        .subject(subject_line(subject))
        .message(body)
        .send()
        .await
        .map(drop)
        .map_err(|err| classify_channel("sns:Publish", err))
}

/// Whether `topic` exists where its ARN says and may be read.
pub(super) async fn check(
    aws: &AwsMessaging,
    topic: &str,
    role: Option<&ChannelRole>,
) -> Result<(), CloudError> {
    aws.sns_for(topic, role)
        .await
        .get_topic_attributes()
        .topic_arn(topic)
        .send()
        .await
        .map(drop)
        .map_err(|err| classify_channel("sns:GetTopicAttributes", err))
}

/// SNS takes a subject of printable ASCII, at most 100 characters.
fn subject_line(subject: &str) -> String {
    subject
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                ' '
            }
        })
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_printable_ascii_of_at_most_100() {
        assert_eq!(subject_line("a\nb — c"), "a b   c");
        assert_eq!(subject_line(&"x".repeat(300)).len(), 100);
    }
}
