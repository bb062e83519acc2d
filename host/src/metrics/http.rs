//! The daemon's `/metrics` and `/healthz`, on a bare HTTP/1 server.
//!
//! Read-only and small: GET (or HEAD) of two paths, nothing else. Slow
//! clients are cut off at a header deadline and connections are capped,
//! so a scraper gone wrong cannot hold the daemon's resources.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::Metrics;
use crate::kill_switch::Switches;

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;
/// A request's headers must arrive within this.
const HEADER_DEADLINE: Duration = Duration::from_secs(5);

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the endpoints read.
#[derive(Clone)]
pub struct Served {
    /// The metrics every run and slot adds to.
    pub metrics: Arc<Metrics>,
    /// Every kill switch in force for the daemon, read at every scrape, so
    /// `wasmonkey_paused` is never stale: 1 when any one is set (or cannot
    /// be read).
    pub switches: Switches,
    /// The daemon's history (its slots and kill ledger), asked at every
    /// `/healthz`: a daemon that cannot reach it kills nothing (its ledger
    /// denies), and says so there.
    pub history: Option<crate::history::SharedHistory>,
}

/// How long `/healthz` waits for the history to answer.
const HISTORY_DEADLINE: Duration = Duration::from_secs(5);

/// Whether the history answers now: `Err` with why when it does not.
async fn history_answers(history: &crate::history::SharedHistory) -> Result<(), String> {
    let history = Arc::clone(history);
    let asked = tokio::task::spawn_blocking(move || {
        history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .daemon_seen()
            .map(drop)
            .map_err(|err| format!("{err:#}"))
    });
    match tokio::time::timeout(HISTORY_DEADLINE, asked).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(err)) => Err(format!("asking it failed: {err}")),
        Err(_) => Err(format!("no answer within {} s", HISTORY_DEADLINE.as_secs())),
    }
}

/// Bind `address`, naming the config key when that fails.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|err| anyhow::anyhow!("daemon.listen: cannot listen on {address}: {err}"))
}

/// Serve until `stop` turns true.
pub async fn serve(listener: TcpListener, served: Served, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!("metrics endpoint: accepting a connection failed: {err}");
                continue;
            }
        };
        let served = served.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let served = served.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&served, &request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!("metrics endpoint: {err}");
            }
            drop(permit);
        });
    }
}

async fn answer(served: &Served, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match request.uri().path() {
        "/metrics" => {
            // Files are read without blocking; a remote switch is bounded
            // by the switches' timeout, and one that does not answer is set.
            let paused = served.switches.paused(true).await.is_some();
            served.metrics.set_paused(paused);
            let openmetrics = request
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("application/openmetrics-text"));
            let (body, kind) = if openmetrics {
                (served.metrics.encode_openmetrics(), OPENMETRICS)
            } else {
                (served.metrics.encode_text(), TEXT_FORMAT)
            };
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
            response
        }
        "/healthz" => match &served.history {
            Some(history) => match history_answers(history).await {
                Ok(()) => plain(StatusCode::OK, "ok\n"),
                Err(why) => {
                    let mut response = Response::new(Full::new(Bytes::from(format!(
                        "the state cannot be reached, so no kill is allowed: {}\n",
                        crate::text::one_line(&why)
                    ))));
                    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    response
                }
            },
            None => plain(StatusCode::OK, "ok\n"),
        },
        _ => plain(StatusCode::NOT_FOUND, "not found: /metrics or /healthz\n"),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
