//! Each notification channel checked before a run that would publish: an
//! SNS topic exists where its ARN says and these credentials may reach it;
//! a webhook's variables are set and its URL is https (or loopback http). A
//! page that cannot arrive is found before the chaos, not after it.

use serde::Serialize;

use crate::cloud::{topic_home, Cloud};
use crate::config::Config;
use crate::notify::Destination;
use crate::text::one_line;

/// A channel, as the run would publish to it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChannelCheck {
    /// The alias plugins and `[report] channel` name.
    pub name: String,
    /// `sns` or `webhook`.
    pub kind: &'static str,
    /// Where it sends: the topic, or `webhook to HOST` (never the URL).
    pub target: String,
    /// The topic's region, from its ARN.
    pub region: Option<String>,
    /// The topic's account, from its ARN.
    pub account: Option<String>,
    /// The role assumed to reach it, if it is another account's.
    pub role: Option<String>,
    /// Whether a run starts without it (`[channels.NAME] optional`).
    pub optional: bool,
    /// `reachable` (SNS answered), `configured` (a webhook, not contacted),
    /// `unreachable`, or `unchecked` (a run that publishes nothing does not
    /// ask).
    pub state: &'static str,
    /// Why it cannot be reached.
    pub detail: Option<String>,
}

impl ChannelCheck {
    /// Why the run would not start, when this channel stops it.
    pub(crate) fn problem(&self) -> Option<String> {
        (self.state == "unreachable" && !self.optional).then(|| {
            format!(
                "channel {}: {}{} cannot be reached: {} (a run that would publish refuses to start; `optional = true` in [channels.{0}] lets it start without)",
                one_line(&self.name),
                if self.kind == "sns" { "topic " } else { "" },
                one_line(&self.target),
                one_line(self.detail.as_deref().unwrap_or("?"))
            )
        })
    }
}

/// Every channel of `config`, asked of `cloud` when `ask` (else unchecked).
pub(crate) async fn check(config: &Config, cloud: &dyn Cloud, ask: bool) -> Vec<ChannelCheck> {
    let mut checks = Vec::with_capacity(config.channels.len());
    for (name, channel) in &config.channels {
        let home = channel.topic.as_deref().and_then(topic_home);
        let destination = Destination::of(channel);
        let target = match (&destination, &channel.topic, &channel.webhook_url_env) {
            (Ok(destination), _, _) => destination.shown(),
            (Err(_), Some(topic), _) => topic.clone(),
            (Err(_), None, Some(var)) => format!("webhook (${var})"),
            (Err(_), None, None) => "nothing".to_owned(),
        };
        let (state, detail) = match (ask, destination) {
            (false, _) => ("unchecked", None),
            (true, Err(why)) => ("unreachable", Some(why)),
            (true, Ok(Destination::Webhook(_))) => ("configured", None),
            (true, Ok(Destination::Topic { topic, role })) => {
                match cloud.check_topic(&topic, role.as_ref()).await {
                    Ok(()) => ("reachable", None),
                    Err(err) => ("unreachable", Some(err.to_string())),
                }
            }
        };
        checks.push(ChannelCheck {
            name: name.clone(),
            kind: if channel.webhook_url_env.is_some() {
                "webhook"
            } else {
                "sns"
            },
            target,
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
