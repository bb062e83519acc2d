//! A webhook channel: one POST of JSON (the message's fields, or a Slack
//! incoming-webhook message) to a URL the operator keeps in an environment
//! variable, optionally signed. The URL and the secret are secrets: every
//! message, error and `Debug` shows the host only. Redirects are refused (see
//! [`crate::http`]), the answer's body is never read, and each POST is
//! bounded by the call timeout.

use std::time::Duration;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::cloud::CloudError;
use crate::config::WebhookFormat;

/// The header with the signed request's Unix time, in seconds.
pub(crate) const TIMESTAMP_HEADER: &str = "x-wasmonkey-timestamp";
/// The header with `v1=` and the hex HMAC-SHA256 of `TIMESTAMP.BODY`.
pub(crate) const SIGNATURE_HEADER: &str = "x-wasmonkey-signature";

/// A webhook, its secrets read from the environment.
pub(crate) struct Webhook {
    url: reqwest::Url,
    host: String,
    format: WebhookFormat,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL (its path is often the credential) nor the secret.
        f.debug_struct("Webhook")
            .field("host", &self.host)
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl Webhook {
    /// The webhook whose URL is in `$url_var`, signed with the secret in
    /// `$secret_var` when there is one. Errors name the variables, never
    /// their values.
    pub(crate) fn from_env(
        url_var: &str,
        format: WebhookFormat,
        secret_var: Option<&str>,
    ) -> Result<Webhook, String> {
        let secret = secret_var.map(|var| (var, std::env::var(var).ok()));
        Webhook::from_values(url_var, std::env::var(url_var).ok(), format, secret)
    }

    /// [`Webhook::from_env`], the variables' values given.
    fn from_values(
        url_var: &str,
        raw: Option<String>,
        format: WebhookFormat,
        secret: Option<(&str, Option<String>)>,
    ) -> Result<Webhook, String> {
        let raw = raw.ok_or_else(|| {
            format!("the environment variable {url_var} (the webhook's URL) is not set")
        })?;
        let url = reqwest::Url::parse(raw.trim())
            .map_err(|_| format!("${url_var} does not hold a URL"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("${url_var} holds a URL without a host"))?
            .to_owned();
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(format!(
                    "${url_var}: the webhook to {host} must be https (http only on loopback)"
                ))
            }
        }
        let secret = match secret {
            None => None,
            Some((var, value)) => match value {
                Some(secret) if !secret.is_empty() => Some(secret.into_bytes()),
                _ => {
                    return Err(format!(
                        "the environment variable {var} (the webhook's signing secret) is not set"
                    ))
                }
            },
        };
        Ok(Webhook {
            url,
            host,
            format,
            secret,
        })
    }

    /// Where it posts, for the operator: the host alone.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// POST one message, within `timeout`.
    pub(crate) async fn post(
        &self,
        channel: &str,
        subject: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<(), CloudError> {
        let payload = match self.format {
            WebhookFormat::Json => serde_json::json!({
                "source": "wasmonkey",
                "channel": channel,
                "subject": subject,
                "body": body,
            }),
            WebhookFormat::Slack => serde_json::json!({
                "text": format!("*{}*\n{}", slack_escaped(subject), slack_escaped(body)),
            }),
        }
        .to_string();
        let mut request = crate::http::client()
            .map_err(|err| CloudError::Backend(format!("webhook to {}: {err}", self.host)))?
            .post(self.url.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            request = request
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature(secret, timestamp, &payload));
        }
        let answer = request
            .body(payload)
            .send()
            .await
            .map_err(|err| self.failure(&err, timeout))?;
        let status = answer.status();
        // The answer's body is never read: a receiver that answers 10 MB
        // costs what one that answers nothing does.
        drop(answer);
        let said = |what: &str| format!("webhook to {}: answered {status}{what}", self.host);
        match status.as_u16() {
            200..=299 => Ok(()),
            300..=399 => Err(CloudError::Refused(said(
                ", a redirect, which is not followed",
            ))),
            429 => Err(CloudError::Throttled(said(""))),
            400..=499 => Err(CloudError::Refused(said(""))),
            _ => Err(CloudError::Backend(said(""))),
        }
    }

    /// A failed POST in words that carry the host, never the URL.
    fn failure(&self, err: &reqwest::Error, timeout: Duration) -> CloudError {
        if err.is_timeout() {
            return CloudError::Backend(format!(
                "webhook to {}: no answer within {} s",
                self.host,
                timeout.as_secs()
            ));
        }
        let mut words = Vec::new();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            words.push(cause.to_string());
            source = cause.source();
        }
        let kind = if err.is_connect() {
            "cannot connect"
        } else {
            "the request failed"
        };
        CloudError::Backend(format!(
            "webhook to {}: {kind}{}",
            self.host,
            words.last().map_or(String::new(), |cause| format!(
                " ({})",
                crate::text::one_line(cause)
            ))
        ))
    }
}

/// `v1=` and the hex HMAC-SHA256, keyed with `secret`, of `TIMESTAMP.BODY`:
/// what a receiver recomputes to know the message is ours and recent.
pub(crate) fn signature(secret: &[u8], timestamp: u64, body: &str) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1={:x}", mac.finalize().into_bytes())
}

/// Slack's three control characters escaped, so that text a plugin wrote
/// cannot mention `<!channel>` or forge a link.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_text_cannot_mention_the_channel_on_slack() {
        assert_eq!(
            slack_escaped("<!channel> & <https://x|y>"),
            "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
        );
    }

    #[test]
    fn the_signature_covers_the_timestamp_the_body_and_the_key() {
        let signed = signature(b"secret", 1_700_000_000, "{}");
        assert!(signed.starts_with("v1="), "{signed}");
        assert_eq!(signed.len(), 3 + 64);
        assert_ne!(signed, signature(b"secret", 1_700_000_001, "{}"));
        assert_ne!(signed, signature(b"secret", 1_700_000_000, "{ }"));
        assert_ne!(signed, signature(b"secrets", 1_700_000_000, "{}"));
    }

    #[test]
    fn a_webhook_is_https_or_loopback_and_shows_only_its_host() {
        let at = |url: &str| {
            Webhook::from_values("HOOK", Some(url.to_owned()), WebhookFormat::Json, None)
        };
        let plain = at("http://example.com/T0/B0/secret-path")
            .err()
            .unwrap_or_default();
        assert!(plain.contains("must be https"), "{plain}");
        assert!(!plain.contains("secret-path"), "{plain}");
        for local in [
            "http://127.0.0.1:9/secret-path",
            "http://[::1]:9/secret-path",
            "http://localhost/secret-path",
        ] {
            let shown = format!("{:?}", at(local));
            assert!(
                shown.contains("Ok(Webhook") && !shown.contains("secret-path"),
                "{shown}"
            );
        }
        assert!(at("https://hooks.example.com/secret-path").is_ok());
        let unset = Webhook::from_values("HOOK", None, WebhookFormat::Json, None)
            .err()
            .unwrap_or_default();
        assert!(
            unset.contains("HOOK") && unset.contains("not set"),
            "{unset}"
        );
        let no_secret = Webhook::from_values(
            "HOOK",
            Some("https://h.example/x".into()),
            WebhookFormat::Json,
            Some(("HOOK_SECRET", None)),
        )
        .err()
        .unwrap_or_default();
        assert!(no_secret.contains("HOOK_SECRET"), "{no_secret}");
    }
}
