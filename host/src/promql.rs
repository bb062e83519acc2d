//! PromQL instant queries against the operator's Prometheus, for
//! `prometheus` stop conditions and steady-state checks.
//!
//! The answer is read as what it is: every series the query returns is held
//! to the bounds, and anything the host cannot read as numbers (no series, a
//! NaN, an error, a body too large, a timeout) is unknown, never fine.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{PromQuery, PrometheusConfig};

/// The most bytes of an answer the host reads.
const MAX_BODY: usize = 1 << 20;

/// The most series a reading names when it says what it saw.
const SHOWN: usize = 5;

/// What a query answered, held to its bounds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    /// The first series out of bounds, as `{labels} = value`, if one is.
    pub breach: Option<String>,
    /// What was seen, for the journal and the report: the values, bounded.
    pub saw: String,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Series>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

/// Ask `server` for `query` now, within `timeout`.
pub(crate) async fn read(
    server: &PrometheusConfig,
    query: &PromQuery,
    timeout: Duration,
) -> Result<Reading, String> {
    let client = crate::http::client()?;
    let url = format!("{}/api/v1/query", server.url.trim_end_matches('/'));
    let mut request = client
        .post(&url)
        .timeout(timeout)
        .form(&[("query", query.query.as_str())]);
    if let Some(var) = &server.bearer_token_env {
        let token = std::env::var(var).map_err(|_| {
            format!("the environment variable {var} (prometheus.bearer_token_env) is not set")
        })?;
        request = request.bearer_auth(token);
    }
    // Named by its origin only: a URL may carry credentials.
    let origin = reqwest::Url::parse(&url)
        .map_or_else(|_| "?".to_owned(), |u| u.origin().ascii_serialization());
    let mut response = request.send().await.map_err(|err| {
        format!(
            "asking Prometheus at {origin} failed: {}",
            without_url(&err)
        )
    })?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| format!("reading Prometheus's answer failed: {}", without_url(&err)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!(
                "Prometheus's answer is over {} KiB: narrow the query",
                MAX_BODY / 1024
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "Prometheus answered HTTP {status} with something that is not its API's JSON: {}",
            crate::text::shown(&String::from_utf8_lossy(&body), 200)
        )
    })?;
    if answer.status != "success" {
        return Err(format!(
            "Prometheus refused the query: {}",
            crate::text::shown(answer.error.as_deref().unwrap_or("no reason given"), 500)
        ));
    }
    let series: Vec<(String, f64)> = match answer.data {
        Some(Data::Vector(series)) => series
            .into_iter()
            .map(|s| Ok((labels(&s.metric), number(&s.value.1)?)))
            .collect::<Result<_, String>>()?,
        Some(Data::Scalar((_, value))) => vec![(String::new(), number(&value)?)],
        Some(Data::Matrix(_) | Data::String(_)) | None => {
            return Err("the query must give an instant vector or a scalar".into())
        }
    };
    judge(query, &series)
}

/// Hold every series to the bounds.
fn judge(query: &PromQuery, series: &[(String, f64)]) -> Result<Reading, String> {
    if series.is_empty() {
        return Err(format!(
            "`{}` returned no series: no data is not a healthy reading (add `or vector(0)` if none means zero)",
            crate::text::shown(&query.query, 200)
        ));
    }
    if let Some((labels, _)) = series.iter().find(|(_, v)| v.is_nan()) {
        return Err(format!("{labels} is NaN"));
    }
    let out_of_bounds = |v: f64| {
        query.above.is_some_and(|above| v > above) || query.below.is_some_and(|below| v < below)
    };
    let shown = |(labels, value): &(String, f64)| {
        if labels.is_empty() {
            format!("{value}")
        } else {
            format!("{labels} = {value}")
        }
    };
    let breach = series.iter().find(|(_, v)| out_of_bounds(*v)).map(shown);
    let mut saw: Vec<String> = series.iter().take(SHOWN).map(shown).collect();
    if series.len() > SHOWN {
        saw.push(format!("and {} more series", series.len() - SHOWN));
    }
    Ok(Reading {
        breach,
        saw: saw.join(", "),
    })
}

fn number(text: &str) -> Result<f64, String> {
    // Prometheus writes +Inf, -Inf and NaN as such; Rust reads them.
    text.parse::<f64>()
        .map_err(|_| format!("{:?} is not a number", crate::text::shown(text, 40)))
}

/// `{a="b", c="d"}`, bounded; empty for no labels.
fn labels(metric: &std::collections::BTreeMap<String, String>) -> String {
    if metric.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    crate::text::shown(&format!("{{{}}}", pairs.join(", ")), 300)
}

/// A reqwest error without its URL (which may carry credentials).
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(above: Option<f64>, below: Option<f64>) -> PromQuery {
        PromQuery {
            query: "q".into(),
            above,
            below,
        }
    }

    /// An unreachable server is an error naming its origin, never the
    /// credentials its URL may carry.
    #[tokio::test]
    async fn a_url_with_credentials_is_named_by_its_origin_only() {
        let server = PrometheusConfig {
            url: "http://ops:hunter2@127.0.0.1:9/prometheus".into(),
            bearer_token_env: None,
        };
        let err = read(&server, &query(Some(0.0), None), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(err.contains("http://127.0.0.1:9"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("ops:"), "{err}");
    }

    #[test]
    fn every_series_is_held_to_the_bounds_and_no_data_is_unknown() {
        let errors = |v: f64| {
            vec![
                ("{job=\"a\"}".to_owned(), 0.0),
                ("{job=\"b\"}".to_owned(), v),
            ]
        };
        let above = query(Some(0.5), None);
        assert_eq!(judge(&above, &errors(0.5)).unwrap().breach, None);
        assert_eq!(
            judge(&above, &errors(0.6)).unwrap().breach.as_deref(),
            Some("{job=\"b\"} = 0.6")
        );
        let below = query(None, Some(1.0));
        assert!(
            judge(&below, &errors(2.0)).unwrap().breach.is_some(),
            "a is 0 < 1"
        );
        let band = query(Some(10.0), Some(-1.0));
        assert_eq!(judge(&band, &errors(3.0)).unwrap().breach, None);
        assert!(judge(&band, &errors(f64::INFINITY))
            .unwrap()
            .breach
            .is_some());
        assert!(judge(&above, &[]).unwrap_err().contains("no series"));
        assert!(judge(&above, &errors(f64::NAN))
            .unwrap_err()
            .contains("NaN"));
        let many: Vec<(String, f64)> = (0..9).map(|i| (format!("{{i=\"{i}\"}}"), 0.0)).collect();
        assert!(judge(&above, &many)
            .unwrap()
            .saw
            .ends_with("and 4 more series"));
    }
}
