//! A strategy of contract 0.2 for the tests: it reads the fleet page by
//! page (two instances a page), picks the oldest running instances (or the
//! `target` it is given), applies the `fault` its parameters name to
//! `count` of them for `duration-ms` (a blackhole cuts off the zone
//! `target`), then sleeps `then-sleep-ms` (`naps`
//! times, so a brake that wakes it does not end its sleeping) or, with
//! `spin`, computes forever without calling the host. It reports every
//! fault it got in its summary, and every refusal in its log.

wit_bindgen::generate!({
    world: "strategy-plugin",
    path: "../../../wit/v0.2.0",
});

use exports::wasmonkey::chaos::strategy::{
    Guest, Outcome, Param, ParamSpec, ParamValue, PluginMetadata, RunError,
};
use wasmonkey::chaos::cloud::{self, InstanceFilter};
use wasmonkey::chaos::runtime::{self, LogLevel};
use wasmonkey::chaos::types::{Fault, Instance, InstanceState, ScalingProcess};

struct Faulty;

fn text(params: &[Param], name: &str) -> String {
    params
        .iter()
        .find_map(|p| match (&p.name, &p.value) {
            (n, ParamValue::Text(t)) if n == name => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn integer(params: &[Param], name: &str) -> i64 {
    params
        .iter()
        .find_map(|p| match (&p.name, &p.value) {
            (n, ParamValue::Integer(i)) if n == name => Some(*i),
            _ => None,
        })
        .unwrap_or_default()
}

fn flag(params: &[Param], name: &str) -> bool {
    params
        .iter()
        .any(|p| p.name == name && matches!(p.value, ParamValue::Flag(true)))
}

fn spec(name: &str, description: &str, default: ParamValue) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        description: description.into(),
        default,
    }
}

/// Every running instance in scope, read page by page.
fn running() -> Result<Vec<Instance>, RunError> {
    let filter = InstanceFilter {
        group_pattern: None,
        tags: Vec::new(),
        zone: None,
        states: vec![InstanceState::Running],
    };
    let count = cloud::count_instances(&filter).map_err(RunError::Cloud)?;
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page =
            cloud::list_instances_page(&filter, after.as_deref(), 2).map_err(RunError::Cloud)?;
        all.extend(page.instances);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if all.len() as u32 != count {
        return Err(RunError::Aborted(format!(
            "the pages hold {} instances, the count says {count}",
            all.len()
        )));
    }
    Ok(all)
}

fn describe(fault: &Fault) -> String {
    format!(
        "{} {:?} {} until {:?}{}",
        fault.id,
        fault.kind,
        fault.target,
        fault.until_ms,
        if fault.dry_run { " (dry run)" } else { "" }
    )
}

impl Guest for Faulty {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "faulty".into(),
            version: "0.1.0".into(),
            description: "Test-only plugin of contract 0.2: applies stop, reboot or suspend-processes faults as its parameters say, to test the faults and the undo the host owns".into(),
            params: vec![
                spec("fault", "stop, reboot, suspend or blackhole", ParamValue::Text("stop".into())),
                spec("target", "an instance id or group to fault instead of the oldest", ParamValue::Text(String::new())),
                spec("count", "how many instances", ParamValue::Integer(1)),
                spec("duration-ms", "how long each fault lasts", ParamValue::Integer(60_000)),
                spec("then-sleep-ms", "how long to sleep afterwards", ParamValue::Integer(0)),
                spec("naps", "how many times to sleep then-sleep-ms (a brake wakes each)", ParamValue::Integer(1)),
                spec("spin", "compute forever afterwards, calling nothing", ParamValue::Flag(false)),
            ],
        }
    }

    fn run(params: Vec<Param>) -> Result<Outcome, RunError> {
        let fault = text(&params, "fault");
        let target = text(&params, "target");
        let duration = integer(&params, "duration-ms").max(0) as u64;
        let count = integer(&params, "count").max(0) as usize;
        let mut applied = Vec::new();
        if fault == "blackhole" {
            match cloud::blackhole_zone(&target, duration, "test: the zone goes dark") {
                Ok(f) => applied.push(describe(&f)),
                Err(err) => runtime::log(LogLevel::Warn, &format!("refused: {err:?}")),
            }
        } else if fault == "suspend" {
            let group = if target.is_empty() {
                "web".to_owned()
            } else {
                target
            };
            let processes = [ScalingProcess::Launch, ScalingProcess::ReplaceUnhealthy];
            match cloud::suspend_processes(&group, &processes, duration, "test: no launches") {
                Ok(f) => applied.push(describe(&f)),
                Err(err) => runtime::log(LogLevel::Warn, &format!("refused: {err:?}")),
            }
        } else {
            let targets: Vec<String> = if target.is_empty() {
                let mut instances = running()?;
                instances.sort_by_key(|i| (i.launched_at_ms, i.id.clone()));
                instances.into_iter().take(count).map(|i| i.id).collect()
            } else {
                vec![target]
            };
            for id in targets {
                let answer = match fault.as_str() {
                    "reboot" => cloud::reboot(&id, "test: the oldest reboots"),
                    _ => cloud::stop(&id, duration, "test: the oldest stops"),
                };
                match answer {
                    Ok(f) => applied.push(describe(&f)),
                    Err(err) => runtime::log(LogLevel::Warn, &format!("refused: {err:?}")),
                }
            }
        }
        let sleep = integer(&params, "then-sleep-ms").max(0) as u64;
        for _ in 0..integer(&params, "naps").max(0) {
            if sleep > 0 {
                runtime::sleep_ms(sleep);
            }
        }
        if flag(&params, "spin") {
            let mut x: u64 = 1;
            loop {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                if x == 0 {
                    break;
                }
            }
        }
        Ok(Outcome {
            victims: Vec::new(),
            summary: format!("faults: {}", applied.join("; ")),
        })
    }
}

export!(Faulty);
