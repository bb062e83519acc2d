//! Each notification channel checked before a run that would publish: an
//! SNS topic or an EventBridge bus exists where its name says and these
//! credentials may reach it; a webhook's variables are set and its URL is
//! https (or loopback http). A page that cannot arrive is found before the
//! chaos, not after it.

use serde::Serialize;

use crate::cloud::messaging::arn_home;
use crate::cloud::Cloud;
use crate::config::Config;
use crate::notify::{ChannelState, Destination};
use crate::text::one_line;

/// A channel, as the run would publish to it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChannelCheck {
    /// The alias plugins and `[report] channel` name.
    pub name: String,
    /// `sns`, `eventbridge` or `webhook`.
    pub kind: &'static str,
    /// Where it sends: `topic T`, `event bus B`, or `webhook to HOST`
    /// (never the URL).
    pub target: String,
    /// The target with its region, account and role, as the report says it.
    pub described: String,
    /// The topic's or bus's region, from its ARN.
    pub region: Option<String>,
    /// The topic's or bus's account, from its ARN.
    pub account: Option<String>,
    /// The role assumed to reach it, if it is another account's.
    pub role: Option<String>,
    /// Whether a run starts without it (`[channels.NAME] optional`).
    pub optional: bool,
    /// What the check found.
    pub state: ChannelState,
    /// Why it cannot be reached.
    pub detail: Option<String>,
}

impl ChannelCheck {
    /// Why the run would not start, when this channel stops it.
    pub(crate) fn problem(&self) -> Option<String> {
        (self.state == ChannelState::Unreachable && !self.optional).then(|| {
            format!(
                "channel {}: {} cannot be reached: {} (a run that would publish refuses to start; `optional = true` in [channels.{0}] lets it start without)",
                one_line(&self.name),
                one_line(&self.target),
                one_line(self.detail.as_deref().unwrap_or("?"))
            )
        })
    }
}

/// Every channel of `config`, asked of `cloud`'s messaging when `ask`
/// (else unchecked).
pub(crate) async fn check(config: &Config, cloud: &dyn Cloud, ask: bool) -> Vec<ChannelCheck> {
    let messaging = cloud.messaging();
    let mut checks = Vec::with_capacity(config.channels.len());
    for (name, channel) in &config.channels {
        let (kind, home) = match (&channel.topic, &channel.event_bus) {
            (Some(topic), _) => ("sns", arn_home(topic, "sns")),
            (None, Some(bus)) => ("eventbridge", arn_home(bus, "events")),
            (None, None) => ("webhook", None),
        };
        let destination = Destination::of(channel);
        let (target, described) = match &destination {
            Ok(destination) => (destination.shown(), destination.described()),
            Err(_) => {
                let target = match (&channel.topic, &channel.event_bus, &channel.webhook_url_env) {
                    (Some(topic), _, _) => format!("topic {topic}"),
                    (None, Some(bus), _) => format!("event bus {bus}"),
                    (None, None, Some(var)) => format!("webhook (${var})"),
                    (None, None, None) => "nothing".to_owned(),
                };
                (target.clone(), target)
            }
        };
        let answer = match (ask, destination) {
            (false, _) => Ok(ChannelState::Unchecked),
            (true, Err(why)) => Err(why),
            (true, Ok(Destination::Webhook(_))) => Ok(ChannelState::Configured),
            (true, Ok(Destination::Topic { topic, role })) => messaging
                .check_topic(&topic, role.as_ref())
                .await
                .map(|()| ChannelState::Reachable)
                .map_err(|err| err.to_string()),
            (true, Ok(Destination::Bus { bus, role })) => messaging
                .check_bus(&bus, role.as_ref())
                .await
                .map(|()| ChannelState::Reachable)
                .map_err(|err| err.to_string()),
        };
        let (state, detail) = match answer {
            Ok(state) => (state, None),
            Err(why) => (ChannelState::Unreachable, Some(why)),
        };
        checks.push(ChannelCheck {
            name: name.clone(),
            kind,
            target,
            described,
            region: home.map(|(region, _)| region.to_owned()),
            account: home.map(|(_, account)| account.to_owned()),
            role: channel.role_arn.clone(),
            optional: channel.optional,
            state,
            detail,
        });
    }
    checks
}
