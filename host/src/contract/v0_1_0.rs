//! Contract `wasmonkey:chaos@0.1.0`: bindings and the translation between
//! its WIT types and the host's domain types.

use std::collections::BTreeMap;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::AsContextMut;

use crate::cloud::{self as domain, InstanceState as DomainState, Lifecycle};
use crate::contract;
use crate::session::{self, PluginError, Session};

/// What wasmtime generates from `wit/v0.1.0/` (frozen); the WIT's comments document it.
#[allow(missing_docs, reason = "generated from wit/, which documents it")]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1.0",
        world: "strategy-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}
pub use bindings::*;

use self::wasmonkey::chaos::types::{
    CloudError, Group, GroupCapacity, Instance, InstanceState, LifecycleState, Tag,
};
use self::wasmonkey::chaos::{cloud, notify, probe, runtime};
use exports::wasmonkey::chaos::strategy::{Outcome, Param, ParamValue, RunError, Verdict};

/// The package this module speaks, as components name it in their imports.
pub(crate) const PACKAGE: &str = "wasmonkey:chaos@0.1.0";

/// The contract's WIT files, as `(name, text)`: what `wasmonkey new` copies
/// into a project.
pub(crate) const WIT: &[(&str, &str)] = &[
    ("host.wit", include_str!("../../../wit/v0.1.0/host.wit")),
    (
        "strategy.wit",
        include_str!("../../../wit/v0.1.0/strategy.wit"),
    ),
    ("types.wit", include_str!("../../../wit/v0.1.0/types.wit")),
];

/// Give a linker this contract's imports, backed by the store's [`Session`].
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    session: fn(&mut T) -> &mut Session,
) -> wasmtime::Result<()> {
    StrategyPlugin::add_to_linker::<T, HasSelf<Session>>(linker, session)
}

crate::contract::shared::translations!();

/// An instance as 0.1 shows it (no launch time: `_origin_ms` is unused).
fn instance_to_wit(_origin_ms: u64, i: domain::Instance) -> Instance {
    Instance {
        id: i.id,
        group: i.group,
        zone: i.zone,
        state: state_to_wit(i.state),
        lifecycle: i.lifecycle.map(lifecycle_to_wit),
        healthy: i.healthy,
        tags: tags_to_wit(i.tags),
    }
}

impl wasmonkey::chaos::types::Host for Session {}

impl cloud::Host for Session {
    crate::contract::shared::cloud_common!();

    async fn list_instances(
        &mut self,
        filter: cloud::InstanceFilter,
    ) -> wasmtime::Result<Result<Vec<Instance>, CloudError>> {
        let bytes = strings_len(
            filter
                .tags
                .iter()
                .flat_map(|t| [t.key.as_str(), t.value.as_str()])
                .chain(filter.group_pattern.as_deref())
                .chain(filter.zone.as_deref()),
        );
        self.enter("cloud.list-instances", bytes).map_err(fatal)?;
        let filter = session::InstanceFilter {
            group_pattern: filter.group_pattern,
            tags: filter.tags.into_iter().map(|t| (t.key, t.value)).collect(),
            zone: filter.zone,
            states: filter.states.into_iter().map(state_from_wit).collect(),
        };
        Ok(self
            .list_instances(filter)
            .await
            .map(|found| found.into_iter().map(|i| instance_to_wit(0, i)).collect())
            .map_err(to_wit_error))
    }
}
