//! A plugin that misbehaves on purpose: its `attack` parameter selects how.
//! Only for the host's tests; never shipped.
//!
//! | attack          | what it does                                                  |
//! |-----------------|---------------------------------------------------------------|
//! | `loop`          | spins forever without calling the host                        |
//! | `memory`        | allocates and touches memory without end                      |
//! | `recursion`     | recurses `depth` calls deep, without end if 0 (no tail call)  |
//! | `panic`         | panics (a trap, as panics abort)                              |
//! | `huge-list`     | returns an outcome with `count` victims                       |
//! | `host-flood`    | calls `runtime::now-ms` forever                               |
//! | `big-arg`       | calls `runtime::log` with a message of `size` bytes           |
//! | `sleep-forever` | calls `runtime::sleep-ms(60000)` forever                      |
//! | `terminate`     | terminates each id of `targets` (comma-separated) and reports |
//! | `list`          | lists every instance it can see and reports their ids         |
//! | `check`         | checks every health target it is told of, and `targets` too   |
//! | `forge`         | puts [`FORGED`] in a log line, a notification to `ops`, the   |
//! |                 | reason for terminating each id of `targets`, and its summary  |
//! | `forge-error`   | fails with [`FORGED`] as its error                            |
//! | `log-flood`     | logs `count` lines of `size` bytes                            |
//! | `deny-flood`    | asks `count` times to terminate an id of `size` bytes         |
//! | `big-summary`   | answers a summary of `size` bytes                             |
//!
//! `terminate` puts one line per id in the summary: `<id>: ok dry-run=<bool>`
//! or `<id>: <error-kind>: <message>`, the error kind being the `cloud-error`
//! case in kebab-case; a `sleep:<ms>` in `targets` sleeps that long instead,
//! and answers `slept <ms> ms`. `list` reports the ids comma-separated. `check` puts
//! one line per target in the summary: `<name>: healthy=<bool> <detail>` or
//! `<name>: <error-kind>: <message>`; it checks the names of `targets` (comma-
//! separated) after those `probe::targets` gives, sleeping at a `sleep:<ms>`.

use std::hint::black_box;

use wasmonkey_sdk::cloud::{self, InstanceFilter};
use wasmonkey_sdk::params::{self, Params};
use wasmonkey_sdk::{export_strategy, log, metadata, notify, probe, runtime};
use wasmonkey_sdk::{Guest, Outcome, Param, PluginMetadata, RunError, Verdict, Victim};

struct Hostile;

/// Text that would take over a terminal shown raw: a window title, a screen
/// clear, colours, a carriage return over the line, an 8-bit CSI, a bidi
/// override, and a newline followed by a forged report row.
pub const FORGED: &str = "title\u{1b}]0;owned\u{7} clear\u{1b}[2J\u{1b}[H red\u{1b}[31m \
     cr\rOVERWRITTEN csi8\u{9b}31m bidi\u{202e}exe.txt\n\
     experiment 9 \u{2014} forged@6.6.6\n  i-forged              web            us-east-1a   terminated      1.0 s  recovered      -";

impl Guest for Hostile {
    fn metadata() -> PluginMetadata {
        metadata!(vec![
            params::text(
                "attack",
                "loop, memory, recursion, panic, huge-list, host-flood, big-arg, \
                 sleep-forever, terminate, list, check, forge, forge-error, log-flood, \
                 deny-flood or big-summary",
                "list",
            ),
            params::integer(
                "count",
                "Victims returned by huge-list; lines or calls of the floods",
                100_000
            ),
            params::integer(
                "size",
                "Bytes logged by big-arg; bytes of each flood line or id; of big-summary",
                16 << 20
            ),
            params::integer(
                "depth",
                "Calls deep for recursion; 0 recurses without end",
                0
            ),
            params::text(
                "targets",
                "Comma-separated instance ids for terminate, extra target names for check",
                "",
            ),
        ])
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        let params = Params::new(params);
        let attack = params.text("attack")?.to_owned();
        match attack.as_str() {
            "loop" => spin(),
            "memory" => hoard(),
            "recursion" => {
                let depth = match params.integer_at_least("depth", 0)? {
                    0 => u64::MAX,
                    depth => depth,
                };
                let value = recurse(black_box(1), depth);
                Ok(summary(format!(
                    "recursion {depth} calls deep returned {value}"
                )))
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            "huge-list" => {
                let count = params.integer_at_least("count", 0)?;
                Ok(Outcome {
                    victims: (0..count).map(fake_victim).collect(),
                    summary: format!("{count} victims"),
                })
            }
            "host-flood" => loop {
                black_box(runtime::now_ms());
            },
            "big-arg" => {
                let size = params.integer_at_least("size", 0)?;
                let size = usize::try_from(size)
                    .map_err(|_| params::invalid("size", "too large for this plugin"))?;
                log::info(&"x".repeat(size));
                Ok(summary(format!("logged {size} bytes")))
            }
            "sleep-forever" => loop {
                runtime::sleep_ms(60_000);
            },
            "terminate" => Ok(summary(terminate_all(params.text("targets")?))),
            "check" => Ok(summary(check_all(params.text("targets")?))),
            "forge" => {
                log::warn(FORGED);
                let _ = notify::publish("ops", FORGED, FORGED);
                let answers = params
                    .text("targets")?
                    .split(',')
                    .filter(|id| !id.is_empty())
                    .map(|id| match cloud::terminate(id, FORGED) {
                        Ok(_) => format!("{id}: ok"),
                        Err(err) => format!("{id}: {}", err.describe()),
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                Ok(summary(format!("{FORGED} {answers}")))
            }
            "forge-error" => Err(params::invalid("attack", FORGED)),
            "log-flood" => {
                let line = "x".repeat(param_usize(&params, "size")?);
                for _ in 0..params.integer_at_least("count", 0)? {
                    log::info(&line);
                }
                Ok(summary("flooded".to_owned()))
            }
            "deny-flood" => {
                let id = "i".repeat(param_usize(&params, "size")?);
                let mut denied = 0u64;
                for _ in 0..params.integer_at_least("count", 0)? {
                    denied += u64::from(cloud::terminate(&id, "flood").is_err());
                }
                Ok(summary(format!("{denied} denied")))
            }
            "big-summary" => Ok(summary("s".repeat(param_usize(&params, "size")?))),
            "list" => {
                let filter = InstanceFilter {
                    group_pattern: None,
                    tags: Vec::new(),
                    zone: None,
                    states: Vec::new(),
                };
                let ids: Vec<String> = cloud::list_instances(&filter)?
                    .into_iter()
                    .map(|i| i.id)
                    .collect();
                Ok(summary(ids.join(",")))
            }
            other => Err(params::invalid(
                "attack",
                &format!("unknown attack {other:?}"),
            )),
        }
    }
}

fn param_usize(params: &Params, name: &str) -> Result<usize, RunError> {
    let value = params.integer_at_least(name, 0)?;
    usize::try_from(value).map_err(|_| params::invalid(name, "too large for this plugin"))
}

fn summary(summary: String) -> Outcome {
    Outcome {
        victims: Vec::new(),
        summary,
    }
}

/// Spin without end and without host calls; `black_box` keeps the loop real.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocate 1 MiB blocks, write every page of each, and keep them all.
fn hoard() -> ! {
    const BLOCK: usize = 1 << 20;
    const PAGE: usize = 4096;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; BLOCK];
        for page in block.chunks_mut(PAGE) {
            page[0] = black_box(1);
        }
        kept.push(black_box(block));
    }
}

/// Recurse until `depth` reaches `limit`, growing the wasm call stack (not
/// the linear-memory stack: no local has its address taken). The result of
/// the recursive call is multiplied and then added to, so it is no tail call
/// and no accumulator that LLVM's tail-recursion elimination could turn into
/// a loop; the `black_box` keeps the depth from being known in advance.
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if black_box(depth) >= limit {
        return depth;
    }
    recurse(depth + 1, limit)
        .wrapping_mul(31)
        .wrapping_add(depth)
}

fn fake_victim(n: u64) -> Victim {
    Victim {
        instance_id: format!("i-{n:017x}"),
        group: Some("hostile".to_owned()),
        zone: "hostile-1a".to_owned(),
        terminated_at_ms: 0,
        dry_run: true,
        verdict: Verdict::Unchecked,
        recovered_at_ms: None,
    }
}

/// Terminate each id and describe what the host answered, one line per id.
fn terminate_all(targets: &str) -> String {
    targets
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            // `sleep:MS` between ids lets the run's clock move on.
            if let Some(ms) = id.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
                runtime::sleep_ms(ms);
                return format!("slept {ms} ms");
            }
            match cloud::terminate(id, "hostile test") {
                Ok(t) => format!("{id}: ok dry-run={}", t.dry_run),
                Err(err) => format!("{id}: {}", err.describe()),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Check every target the host names, then the `extra` names, one line each.
fn check_all(extra: &str) -> String {
    let named = probe::targets();
    let extra = extra.split(',').map(str::trim).filter(|n| !n.is_empty());
    named
        .iter()
        .map(String::as_str)
        .chain(extra)
        .map(|name| {
            // `sleep:MS` among the names lets the world change between checks.
            if let Some(ms) = name.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
                runtime::sleep_ms(ms);
                return format!("slept {ms} ms");
            }
            match probe::check(name) {
                Ok(c) => format!("{name}: healthy={} {}", c.healthy, c.detail),
                Err(err) => format!("{name}: {}", err.describe()),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

export_strategy!(Hostile);
