//! A fault-injecting HTTP proxy on loopback, in front of moto: it answers
//! some requests with 503s or throttling errors, delays or drops others, and
//! forwards the rest. Requests are matched on their text: the EC2, Auto
//! Scaling and SNS query protocols carry the action in the body
//! (`Action=…`), CloudWatch's RPC v2 protocol in the path
//! (`/operation/…`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to do to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 503 Service Unavailable.
    Unavailable,
    /// Answer the API's throttling error (400).
    Throttle,
    /// Wait this long before forwarding.
    Delay(Duration),
    /// Close the connection without an answer.
    Drop,
    /// Forward the request, then close the connection without its answer:
    /// the call took effect and the caller cannot know.
    LoseAnswer,
    /// Answer EC2's `UnauthorizedOperation` (403): a missing IAM permission.
    Unauthorized,
}

/// One rule: requests whose body contains `needle` get `fault`, `times`
/// times (then pass).
#[derive(Debug, Clone)]
pub struct Rule {
    pub needle: &'static str,
    pub fault: Fault,
    pub times: usize,
}

/// What the proxy did, for assertions.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub forwarded: usize,
    /// Requests per API action, faulted or not.
    pub actions: std::collections::BTreeMap<String, usize>,
    /// Time spent waiting for the upstream's answers, per API action.
    pub upstream: std::collections::BTreeMap<String, Duration>,
    pub injected: Vec<(String, Fault)>,
}

/// A running proxy; its task ends with the test's runtime.
pub struct FaultProxy {
    pub endpoint: String,
    pub tally: Arc<Mutex<Tally>>,
    plan: Arc<Plan>,
}

struct Plan {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    /// Rules that apply once `after` requests holding `trigger` were
    /// forwarded (see [`FaultProxy::then`]).
    later: Mutex<Vec<Later>>,
    tally: Arc<Mutex<Tally>>,
}

struct Later {
    trigger: &'static str,
    after: usize,
    rules: Vec<Rule>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream`
    /// (`127.0.0.1:PORT`), applying `rules` in order.
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let plan = Arc::new(Plan {
            upstream: upstream.trim_start_matches("http://").to_owned(),
            rules: Mutex::new(rules),
            later: Mutex::new(Vec::new()),
            tally: Arc::clone(&tally),
        });
        let serving = Arc::clone(&plan);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, Arc::clone(&serving)));
            }
        });
        FaultProxy {
            endpoint,
            tally,
            plan,
        }
    }

    /// Apply `rules` too once `after` requests holding `trigger` have been
    /// forwarded upstream (e.g. throttle every read after the second
    /// terminate went through).
    pub fn then(&self, trigger: &'static str, after: usize, rules: Vec<Rule>) {
        self.plan.later.lock().expect("later").push(Later {
            trigger,
            after,
            rules,
        });
    }

    /// Requests seen for one API action.
    pub fn requests(&self, action: &str) -> usize {
        self.tally
            .lock()
            .expect("tally")
            .actions
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> Vec<(String, Fault)> {
        self.tally.lock().expect("tally").injected.clone()
    }
}

/// Read one HTTP/1.1 request (head + Content-Length body).
async fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

fn throttle_body(request: &str) -> String {
    if request.contains("Version=2016-11-15") {
        // EC2's error shape.
        "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>".into()
    } else {
        // The query protocol's (Auto Scaling, SNS).
        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>".into()
    }
}

/// The API action of a request: `Action=` in a query-protocol body, the
/// `X-Amz-Target: SERVICE.NAME` header of the JSON protocol (EventBridge's,
/// SSM's), or the `/operation/NAME` path of the RPC v2 CBOR protocol.
fn action_of(request: &str) -> String {
    let query = request.split('&').find_map(|p| p.split("Action=").nth(1));
    let target = || {
        request.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-amz-target")
                .then(|| value.trim().rsplit('.').next())
                .flatten()
        })
    };
    let rpc = || {
        let path = request.lines().next()?.split_whitespace().nth(1)?;
        path.rsplit_once("/operation/").map(|(_, name)| name)
    };
    query.or_else(target).or_else(rpc).unwrap_or("?").to_owned()
}

async fn serve(mut client: TcpStream, plan: Arc<Plan>) {
    while let Some(request) = read_request(&mut client).await {
        let text = String::from_utf8_lossy(&request).to_string();
        let action = action_of(&text);
        *plan
            .tally
            .lock()
            .expect("tally")
            .actions
            .entry(action.clone())
            .or_default() += 1;
        let fault = {
            let mut rules = plan.rules.lock().expect("rules");
            rules
                .iter_mut()
                .find(|r| r.times > 0 && text.contains(r.needle))
                .map(|r| {
                    r.times -= 1;
                    r.fault
                })
        };
        if let Some(fault) = fault {
            plan.tally
                .lock()
                .expect("tally")
                .injected
                .push((action.clone(), fault));
        }
        let reply = match fault {
            Some(Fault::Drop) => return,
            Some(Fault::LoseAnswer) => {
                let _ = forward(&plan.upstream, &request).await;
                arm(&plan, &text);
                return;
            }
            Some(Fault::Unavailable) => {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec()
            }
            Some(Fault::Throttle) => {
                let body = throttle_body(&text);
                format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            Some(Fault::Unauthorized) => {
                let body = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>";
                format!(
                    "HTTP/1.1 403 Forbidden\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                match forward(&plan.upstream, &request).await {
                    Some(reply) => reply,
                    None => return,
                }
            }
            None => {
                let asked = std::time::Instant::now();
                let reply = forward(&plan.upstream, &request).await;
                *plan
                    .tally
                    .lock()
                    .expect("tally")
                    .upstream
                    .entry(action.clone())
                    .or_default() += asked.elapsed();
                match reply {
                    Some(reply) => reply,
                    None => return,
                }
            }
        };
        if fault.is_none() {
            plan.tally.lock().expect("tally").forwarded += 1;
            arm(&plan, &text);
        }
        if client.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// A request went upstream: count it against the later rules' triggers,
/// and apply those whose count is reached.
fn arm(plan: &Plan, request: &str) {
    let mut later = plan.later.lock().expect("later");
    for waiting in later.iter_mut() {
        if request.contains(waiting.trigger) {
            waiting.after = waiting.after.saturating_sub(1);
        }
    }
    let (due, waiting): (Vec<Later>, Vec<Later>) = std::mem::take(&mut *later)
        .into_iter()
        .partition(|l| l.after == 0);
    *later = waiting;
    let mut rules = plan.rules.lock().expect("rules");
    for later in due {
        rules.extend(later.rules);
    }
}

/// Send one request upstream on a fresh connection that closes after the
/// answer, and return the whole answer.
async fn forward(upstream: &str, request: &[u8]) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await.ok()?;
    let text = String::from_utf8_lossy(request);
    let head_end = text.find("\r\n\r\n")? + 4;
    let mut head: Vec<&str> = text[..head_end - 4]
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    head.push("connection: close");
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&request[head_end..]);
    server.write_all(&out).await.ok()?;
    let mut reply = Vec::new();
    server.read_to_end(&mut reply).await.ok()?;
    // The client keeps its connection: strip our `connection: close`.
    let text = String::from_utf8_lossy(&reply);
    let end = text.find("\r\n\r\n")?;
    let head: Vec<&str> = text[..end]
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let mut fixed = head.join("\r\n").into_bytes();
    fixed.extend_from_slice(&reply[end..]);
    Some(fixed)
}
