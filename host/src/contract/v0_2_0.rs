//! Contract `wasmonkey:chaos@0.2.0`: bindings and the translation between
//! its WIT types and the host's domain types. 0.1.0 and: faults beyond
//! termination (stop, reboot, suspended processes) whose undo the host
//! owns, instance records with type, launch time and market, and a paged
//! listing.

use std::collections::BTreeMap;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::AsContextMut;

use crate::cloud::{self as domain, InstanceState as DomainState, Lifecycle};
use crate::contract;
use crate::session::{self, PluginError, Session};

/// What wasmtime generates from `wit/v0.2.0/` (frozen); the WIT's comments document it.
#[allow(missing_docs, reason = "generated from wit/, which documents it")]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "strategy-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}
pub use bindings::*;

use self::wasmonkey::chaos::types::{
    CloudError, Fault, FaultKind, Group, GroupCapacity, Instance, InstanceState, LifecycleState,
    Market, ScalingProcess, Tag,
};
use self::wasmonkey::chaos::{cloud, notify, probe, runtime};
use exports::wasmonkey::chaos::strategy::{Outcome, Param, ParamValue, RunError, Verdict};

/// The package this module speaks, as components name it in their imports.
pub(crate) const PACKAGE: &str = "wasmonkey:chaos@0.2.0";

/// The contract's WIT files, as `(name, text)`: what `wasmonkey new` copies
/// into a project.
pub(crate) const WIT: &[(&str, &str)] = &[
    ("host.wit", include_str!("../../../wit/v0.2.0/host.wit")),
    (
        "strategy.wit",
        include_str!("../../../wit/v0.2.0/strategy.wit"),
    ),
    ("types.wit", include_str!("../../../wit/v0.2.0/types.wit")),
];

/// The most instances one page holds.
const MAX_PAGE: u32 = 1000;

/// Give a linker this contract's imports, backed by the store's [`Session`].
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    session: fn(&mut T) -> &mut Session,
) -> wasmtime::Result<()> {
    StrategyPlugin::add_to_linker::<T, HasSelf<Session>>(linker, session)
}

crate::contract::shared::translations!();

/// An instance as 0.2 shows it, its launch time on the plugin's clock
/// (which starts at `origin_ms` on the backend's).
fn instance_to_wit(origin_ms: u64, i: domain::Instance) -> Instance {
    let origin = i64::try_from(origin_ms).unwrap_or(i64::MAX);
    Instance {
        id: i.id,
        group: i.group,
        zone: i.zone,
        state: state_to_wit(i.state),
        lifecycle: i.lifecycle.map(lifecycle_to_wit),
        healthy: i.healthy,
        tags: tags_to_wit(i.tags),
        instance_type: i.instance_type,
        launched_at_ms: if i.launched_ms == i64::MIN {
            i64::MIN
        } else {
            i.launched_ms.saturating_sub(origin)
        },
        market: match i.market {
            domain::Market::OnDemand => Market::OnDemand,
            domain::Market::Spot => Market::Spot,
        },
    }
}

fn process_from_wit(process: ScalingProcess) -> domain::ScalingProcess {
    match process {
        ScalingProcess::Launch => domain::ScalingProcess::Launch,
        ScalingProcess::Terminate => domain::ScalingProcess::Terminate,
        ScalingProcess::HealthCheck => domain::ScalingProcess::HealthCheck,
        ScalingProcess::ReplaceUnhealthy => domain::ScalingProcess::ReplaceUnhealthy,
        ScalingProcess::AzRebalance => domain::ScalingProcess::AzRebalance,
        ScalingProcess::AlarmNotification => domain::ScalingProcess::AlarmNotification,
        ScalingProcess::ScheduledActions => domain::ScalingProcess::ScheduledActions,
        ScalingProcess::AddToLoadBalancer => domain::ScalingProcess::AddToLoadBalancer,
        ScalingProcess::InstanceRefresh => domain::ScalingProcess::InstanceRefresh,
    }
}

fn fault_to_wit(fault: session::Fault) -> Fault {
    Fault {
        id: fault.id,
        kind: match fault.kind {
            crate::faults::FaultKind::Stop => FaultKind::Stop,
            crate::faults::FaultKind::Reboot => FaultKind::Reboot,
            crate::faults::FaultKind::SuspendProcesses => FaultKind::SuspendProcesses,
            crate::faults::FaultKind::Blackhole => FaultKind::Blackhole,
        },
        target: fault.target,
        dry_run: fault.dry_run,
        at_ms: fault.at_ms,
        until_ms: fault.until_ms,
    }
}

/// The session's filter, and the bytes it brought in.
fn filter_from_wit(filter: cloud::InstanceFilter) -> (session::InstanceFilter, usize) {
    let bytes = strings_len(
        filter
            .tags
            .iter()
            .flat_map(|t| [t.key.as_str(), t.value.as_str()])
            .chain(filter.group_pattern.as_deref())
            .chain(filter.zone.as_deref()),
    );
    let filter = session::InstanceFilter {
        group_pattern: filter.group_pattern,
        tags: filter.tags.into_iter().map(|t| (t.key, t.value)).collect(),
        zone: filter.zone,
        states: filter.states.into_iter().map(state_from_wit).collect(),
    };
    (filter, bytes)
}

impl wasmonkey::chaos::types::Host for Session {}

impl cloud::Host for Session {
    crate::contract::shared::cloud_common!();

    async fn list_instances(
        &mut self,
        filter: cloud::InstanceFilter,
    ) -> wasmtime::Result<Result<Vec<Instance>, CloudError>> {
        let (filter, bytes) = filter_from_wit(filter);
        self.enter("cloud.list-instances", bytes).map_err(fatal)?;
        let origin = self.clock_origin_ms();
        Ok(self
            .list_instances(filter)
            .await
            .map(|found| {
                found
                    .into_iter()
                    .map(|i| instance_to_wit(origin, i))
                    .collect()
            })
            .map_err(to_wit_error))
    }

    async fn list_instances_page(
        &mut self,
        filter: cloud::InstanceFilter,
        start_after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<cloud::InstancePage, CloudError>> {
        let (filter, bytes) = filter_from_wit(filter);
        let bytes = bytes + start_after.as_deref().map_or(0, str::len);
        self.enter("cloud.list-instances-page", bytes)
            .map_err(fatal)?;
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        let origin = self.clock_origin_ms();
        Ok(self
            .list_instances_page(filter, start_after.as_deref(), limit)
            .await
            .map(|(page, next)| cloud::InstancePage {
                instances: page
                    .into_iter()
                    .map(|i| instance_to_wit(origin, i))
                    .collect(),
                next,
            })
            .map_err(to_wit_error))
    }

    async fn count_instances(
        &mut self,
        filter: cloud::InstanceFilter,
    ) -> wasmtime::Result<Result<u32, CloudError>> {
        let (filter, bytes) = filter_from_wit(filter);
        self.enter("cloud.count-instances", bytes).map_err(fatal)?;
        Ok(self
            .list_instances(filter)
            .await
            .map(|found| u32::try_from(found.len()).unwrap_or(u32::MAX))
            .map_err(to_wit_error))
    }

    async fn stop(
        &mut self,
        instance_id: String,
        duration_ms: u64,
        reason: String,
    ) -> wasmtime::Result<Result<Fault, CloudError>> {
        self.enter("cloud.stop", instance_id.len() + reason.len())
            .map_err(fatal)?;
        let answer = Session::stop(self, &instance_id, duration_ms, &reason)
            .await
            .map_err(fatal)?;
        Ok(answer.map(fault_to_wit).map_err(to_wit_error))
    }

    async fn reboot(
        &mut self,
        instance_id: String,
        reason: String,
    ) -> wasmtime::Result<Result<Fault, CloudError>> {
        self.enter("cloud.reboot", instance_id.len() + reason.len())
            .map_err(fatal)?;
        let answer = Session::reboot(self, &instance_id, &reason)
            .await
            .map_err(fatal)?;
        Ok(answer.map(fault_to_wit).map_err(to_wit_error))
    }

    async fn suspend_processes(
        &mut self,
        group: String,
        processes: Vec<ScalingProcess>,
        duration_ms: u64,
        reason: String,
    ) -> wasmtime::Result<Result<Fault, CloudError>> {
        self.enter(
            "cloud.suspend-processes",
            group.len() + reason.len() + processes.len(),
        )
        .map_err(fatal)?;
        let processes: Vec<domain::ScalingProcess> =
            processes.into_iter().map(process_from_wit).collect();
        let answer = Session::suspend_processes(self, &group, &processes, duration_ms, &reason)
            .await
            .map_err(fatal)?;
        Ok(answer.map(fault_to_wit).map_err(to_wit_error))
    }

    async fn blackhole_zone(
        &mut self,
        zone: String,
        duration_ms: u64,
        reason: String,
    ) -> wasmtime::Result<Result<Fault, CloudError>> {
        self.enter("cloud.blackhole-zone", zone.len() + reason.len())
            .map_err(fatal)?;
        let answer = Session::blackhole_zone(self, &zone, duration_ms, &reason)
            .await
            .map_err(fatal)?;
        Ok(answer.map(fault_to_wit).map_err(to_wit_error))
    }
}
