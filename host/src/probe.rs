//! Health checks the host performs for plugins and for its own stop
//! conditions and recovery: a name stands for a target, the host knows
//! where it lives and checks it, with a timeout.

use std::time::{Duration, Instant};

use crate::cloud::view::FleetView;
use crate::cloud::CloudError;
use crate::config::{TargetCheck, TargetConfig};

/// Why a target could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CheckError {
    /// The target or its answer cannot be checked (bad URL, bad config).
    #[error("{0}")]
    Invalid(String),
    /// The backend failed while the target was looked up.
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Check a target now: a group's healthy in-service count through the
/// run's fleet view, or an HTTP GET bounded by `timeout`.
pub(crate) async fn check(
    view: &FleetView,
    spec: &TargetConfig,
    timeout: Duration,
) -> Result<HttpCheck, CheckError> {
    match spec.check().map_err(CheckError::Invalid)? {
        TargetCheck::Group { group, min_healthy } => {
            let names = [group.to_owned()];
            let capacity = tokio::time::timeout(timeout, view.capacity(&names))
                .await
                .map_err(|_| {
                    CloudError::Backend(format!(
                        "reading group {group} timed out after {} s",
                        timeout.as_secs()
                    ))
                })??
                .into_iter()
                .next()
                .map(|(_, c)| c)
                .unwrap_or_default();
            let healthy = capacity.healthy_in_service();
            Ok(HttpCheck {
                healthy: healthy >= min_healthy,
                detail: format!("{healthy} healthy in service in {group} (needs {min_healthy})"),
                latency_ms: 0,
            })
        }
        TargetCheck::Http {
            url,
            expect_status,
            timeout_ms,
        } => Ok(http(
            url,
            expect_status,
            Duration::from_millis(timeout_ms).min(timeout),
        )
        .await),
    }
}

/// Result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpCheck {
    /// Whether the answer was what the target expects.
    pub healthy: bool,
    /// What was seen, in a line: status and latency, or the failure.
    pub detail: String,
    /// How long the answer took.
    pub latency_ms: u32,
}

/// GET `url`; healthy when it answers `expect_status` within `timeout`.
pub(crate) async fn http(url: &str, expect_status: u16, timeout: Duration) -> HttpCheck {
    let started = Instant::now();
    let outcome = match crate::http::client() {
        Err(err) => Err(err),
        Ok(client) => client
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|err| {
                // The detail goes to the plugin, which must not learn where
                // the target lives: no URL, no address.
                if err.is_timeout() {
                    format!("no answer within {} ms", timeout.as_millis())
                } else if err.is_connect() {
                    "cannot connect".to_owned()
                } else {
                    format!("request failed: {}", err.without_url())
                }
            }),
    };
    let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
    match outcome {
        Ok(response) => {
            let status = response.status().as_u16();
            HttpCheck {
                healthy: status == expect_status,
                detail: format!("HTTP {status} (expects {expect_status})"),
                latency_ms,
            }
        }
        Err(detail) => HttpCheck {
            healthy: false,
            detail,
            latency_ms,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering `status`.
    async fn serve(status: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            socket.write_all(reply.as_bytes()).await.unwrap();
        });
        format!("http://{addr}/health")
    }

    #[tokio::test]
    async fn status_decides_health() {
        let ok = http(&serve("200 OK").await, 200, Duration::from_secs(2)).await;
        assert!(ok.healthy, "{ok:?}");
        let down = http(
            &serve("503 Service Unavailable").await,
            200,
            Duration::from_secs(2),
        )
        .await;
        assert!(!down.healthy);
        assert!(down.detail.contains("503"), "{down:?}");
    }

    #[tokio::test]
    async fn silence_is_a_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let check = http(&url, 200, Duration::from_millis(200)).await;
        assert!(!check.healthy);
        assert!(check.detail.contains("200 ms"), "{check:?}");
        drop(listener);
    }

    #[tokio::test]
    async fn a_refused_connection_says_so_without_the_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let check = http(
            &format!("http://127.0.0.1:{port}/health"),
            200,
            Duration::from_secs(2),
        )
        .await;
        assert!(!check.healthy);
        assert_eq!(check.detail, "cannot connect");
    }
}
