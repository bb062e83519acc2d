//! The host's one HTTP client (health checks, webhooks): it never follows a
//! redirect. A health endpoint answers directly, so a redirect is a finding,
//! not a hop; a webhook is only ever the operator's URL, and a redirect
//! would carry the message (and its signature) somewhere else. Each request
//! sets its own timeout.

use std::sync::OnceLock;

/// The client, built at its first use.
pub(crate) fn client() -> Result<&'static reqwest::Client, String> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|err| format!("cannot build the HTTP client: {err}"))?;
    Ok(CLIENT.get_or_init(|| client))
}
