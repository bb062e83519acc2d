//! Each notification channel checked before a run that would publish: its
//! topic exists where its ARN says and these credentials may reach it. A
//! page that cannot arrive is found before the chaos, not after it.

use serde::Serialize;

use crate::cloud::{topic_home, Cloud};
use crate::config::Config;
use crate::text::one_line;

/// A channel, as the run would publish to it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChannelCheck {
    /// The alias plugins and `[report] channel` name.
    pub name: String,
    /// Its topic.
    pub topic: String,
    /// The topic's region, from its ARN.
    pub region: Option<String>,
    /// The topic's account, from its ARN.
    pub account: Option<String>,
    /// Whether a run starts without it (`[channels.NAME] optional`).
    pub optional: bool,
    /// `reachable`, `unreachable`, or `unchecked` (a run that publishes
    /// nothing does not ask).
    pub state: &'static str,
    /// Why it cannot be reached.
    pub detail: Option<String>,
}

impl ChannelCheck {
    /// Why the run would not start, when this channel stops it.
    pub(crate) fn problem(&self) -> Option<String> {
        (self.state == "unreachable" && !self.optional).then(|| {
            format!(
                "channel {}: topic {} cannot be reached: {} (a run that would publish refuses to start; `optional = true` in [channels.{0}] lets it start without)",
                one_line(&self.name),
                one_line(&self.topic),
                one_line(self.detail.as_deref().unwrap_or("?"))
            )
        })
    }
}

/// Every channel of `config`, asked of `cloud` when `ask` (else unchecked).
pub(crate) async fn check(config: &Config, cloud: &dyn Cloud, ask: bool) -> Vec<ChannelCheck> {
    let mut checks = Vec::with_capacity(config.channels.len());
    for (name, channel) in &config.channels {
        let home = topic_home(&channel.topic);
        let (state, detail) = if !ask {
            ("unchecked", None)
        } else {
            match cloud.check_topic(&channel.topic).await {
                Ok(()) => ("reachable", None),
                Err(err) => ("unreachable", Some(err.to_string())),
            }
        };
        checks.push(ChannelCheck {
            name: name.clone(),
            topic: channel.topic.clone(),
            region: home.map(|(region, _)| region.to_owned()),
            account: home.map(|(_, account)| account.to_owned()),
            optional: channel.optional,
            state,
            detail,
        });
    }
    checks
}
