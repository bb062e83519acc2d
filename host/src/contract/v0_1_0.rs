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

/// Give a linker this contract's imports, backed by the store's [`Session`].
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    session: fn(&mut T) -> &mut Session,
) -> wasmtime::Result<()> {
    StrategyPlugin::add_to_linker::<T, HasSelf<Session>>(linker, session)
}

/// Turn a session failure into a trap that ends the run.
fn fatal(err: session::Fatal) -> wasmtime::Error {
    match err {
        session::Fatal::Breach(breach) => wasmtime::Error::new(breach),
        journal @ session::Fatal::Journal(_) => {
            wasmtime::Error::new(session::HostFault(journal.to_string()))
        }
        contract @ session::Fatal::Contract(_) => wasmtime::Error::msg(contract.to_string()),
        session::Fatal::Stopped(why) => wasmtime::Error::new(session::Stopped(why)),
    }
}

fn to_wit_error(err: PluginError) -> CloudError {
    match err {
        PluginError::Denied(m) => CloudError::Denied(m),
        PluginError::NotFound(m) => CloudError::NotFound(m),
        PluginError::BudgetExhausted(m) => CloudError::BudgetExhausted(m),
        PluginError::Throttled(m) => CloudError::Throttled(m),
        PluginError::Invalid(m) => CloudError::Invalid(m),
        PluginError::Backend(m) => CloudError::Backend(m),
    }
}

fn tags_to_wit(tags: BTreeMap<String, String>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(key, value)| Tag { key, value })
        .collect()
}

fn state_to_wit(state: DomainState) -> InstanceState {
    match state {
        DomainState::Pending => InstanceState::Pending,
        DomainState::Running => InstanceState::Running,
        DomainState::ShuttingDown => InstanceState::ShuttingDown,
        DomainState::Terminated => InstanceState::Terminated,
        DomainState::Stopping => InstanceState::Stopping,
        DomainState::Stopped => InstanceState::Stopped,
    }
}

fn state_from_wit(state: InstanceState) -> DomainState {
    match state {
        InstanceState::Pending => DomainState::Pending,
        InstanceState::Running => DomainState::Running,
        InstanceState::ShuttingDown => DomainState::ShuttingDown,
        InstanceState::Terminated => DomainState::Terminated,
        InstanceState::Stopping => DomainState::Stopping,
        InstanceState::Stopped => DomainState::Stopped,
    }
}

fn lifecycle_to_wit(lifecycle: Lifecycle) -> LifecycleState {
    match lifecycle {
        Lifecycle::Pending => LifecycleState::Pending,
        Lifecycle::InService => LifecycleState::InService,
        Lifecycle::Terminating => LifecycleState::Terminating,
        Lifecycle::Terminated => LifecycleState::Terminated,
        Lifecycle::Standby => LifecycleState::Standby,
        Lifecycle::Detached => LifecycleState::Detached,
    }
}

fn instance_to_wit(i: domain::Instance) -> Instance {
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

fn group_to_wit(g: domain::Group) -> Group {
    Group {
        name: g.name,
        zones: g.zones,
        desired: g.desired,
        min: g.min,
        max: g.max,
        tags: tags_to_wit(g.tags),
    }
}

fn strings_len<'a>(parts: impl IntoIterator<Item = &'a str>) -> usize {
    parts.into_iter().map(str::len).sum()
}

impl wasmonkey::chaos::types::Host for Session {}

impl cloud::Host for Session {
    async fn list_groups(
        &mut self,
        pattern: Option<String>,
    ) -> wasmtime::Result<Result<Vec<Group>, CloudError>> {
        self.enter("cloud.list-groups", pattern.as_deref().map_or(0, str::len))
            .map_err(fatal)?;
        Ok(self
            .list_groups(pattern)
            .await
            .map(|groups| groups.into_iter().map(group_to_wit).collect())
            .map_err(to_wit_error))
    }

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
            .map(|found| found.into_iter().map(instance_to_wit).collect())
            .map_err(to_wit_error))
    }

    async fn terminate(
        &mut self,
        instance_id: String,
        reason: String,
    ) -> wasmtime::Result<Result<cloud::Termination, CloudError>> {
        self.enter("cloud.terminate", instance_id.len() + reason.len())
            .map_err(fatal)?;
        let answer = Session::terminate(self, &instance_id, &reason)
            .await
            .map_err(fatal)?;
        Ok(answer
            .map(|t| cloud::Termination {
                instance_id: t.instance_id,
                group: t.group,
                zone: t.zone,
                dry_run: t.dry_run,
                at_ms: t.at_ms,
            })
            .map_err(to_wit_error))
    }
}

impl probe::Host for Session {
    async fn group_health(
        &mut self,
        group: String,
    ) -> wasmtime::Result<Result<GroupCapacity, CloudError>> {
        self.enter("probe.group-health", group.len())
            .map_err(fatal)?;
        Ok(Session::group_health(self, &group)
            .await
            .map(|c| GroupCapacity {
                group,
                desired: c.desired,
                in_service: c.in_service,
                pending: c.pending,
                terminating: c.terminating,
                unhealthy: c.unhealthy,
            })
            .map_err(to_wit_error))
    }

    async fn describe_instance(
        &mut self,
        instance_id: String,
    ) -> wasmtime::Result<Result<Instance, CloudError>> {
        self.enter("probe.describe-instance", instance_id.len())
            .map_err(fatal)?;
        Ok(Session::instance(self, &instance_id)
            .await
            .map(instance_to_wit)
            .map_err(to_wit_error))
    }

    async fn targets(&mut self) -> wasmtime::Result<Vec<String>> {
        self.enter("probe.targets", 0).map_err(fatal)?;
        Ok(Session::targets(self))
    }

    async fn check(
        &mut self,
        target: String,
    ) -> wasmtime::Result<Result<probe::CheckResult, CloudError>> {
        self.enter("probe.check", target.len()).map_err(fatal)?;
        let answer = Session::check(self, &target).await.map_err(fatal)?;
        Ok(answer
            .map(|c| probe::CheckResult {
                target: c.target,
                healthy: c.healthy,
                detail: c.detail,
                latency_ms: c.latency_ms,
            })
            .map_err(to_wit_error))
    }
}

impl notify::Host for Session {
    async fn channels(&mut self) -> wasmtime::Result<Vec<String>> {
        self.enter("notify.channels", 0).map_err(fatal)?;
        Ok(Session::channels(self))
    }

    async fn publish(
        &mut self,
        channel: String,
        subject: String,
        body: String,
    ) -> wasmtime::Result<Result<(), CloudError>> {
        self.enter(
            "notify.publish",
            strings_len([channel.as_str(), &subject, &body]),
        )
        .map_err(fatal)?;
        let answer = Session::publish(self, &channel, &subject, &body)
            .await
            .map_err(fatal)?;
        Ok(answer.map_err(to_wit_error))
    }
}

impl runtime::Host for Session {
    async fn log(&mut self, level: runtime::LogLevel, message: String) -> wasmtime::Result<()> {
        self.enter("runtime.log", message.len()).map_err(fatal)?;
        let level = match level {
            runtime::LogLevel::Trace => tracing::Level::TRACE,
            runtime::LogLevel::Debug => tracing::Level::DEBUG,
            runtime::LogLevel::Info => tracing::Level::INFO,
            runtime::LogLevel::Warn => tracing::Level::WARN,
            runtime::LogLevel::Error => tracing::Level::ERROR,
        };
        Session::log(self, level, &message).map_err(fatal)
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.enter("runtime.now-ms", 0).map_err(fatal)?;
        Ok(Session::now_ms(self))
    }

    async fn sleep_ms(&mut self, ms: u64) -> wasmtime::Result<()> {
        self.enter("runtime.sleep-ms", 0).map_err(fatal)?;
        Session::sleep_ms(self, ms).await.map_err(fatal)
    }

    async fn random_u64(&mut self) -> wasmtime::Result<u64> {
        self.enter("runtime.random-u64", 0).map_err(fatal)?;
        Ok(Session::random_u64(self))
    }
}

/// Call `metadata()`.
pub async fn metadata(
    plugin: &StrategyPlugin,
    store: impl AsContextMut<Data: Send>,
) -> wasmtime::Result<contract::PluginMetadata> {
    let metadata = plugin
        .wasmonkey_chaos_strategy()
        .call_metadata(store)
        .await?;
    Ok(contract::PluginMetadata {
        name: metadata.name,
        version: metadata.version,
        description: metadata.description,
        params: metadata
            .params
            .into_iter()
            .map(|spec| contract::ParamSpec {
                name: spec.name,
                description: spec.description,
                default: value_from_wit(spec.default),
            })
            .collect(),
    })
}

/// Call `run(params)`.
pub async fn run(
    plugin: &StrategyPlugin,
    store: impl AsContextMut<Data: Send>,
    params: &[contract::Param],
) -> wasmtime::Result<Result<contract::Outcome, contract::RunError>> {
    let params: Vec<Param> = params
        .iter()
        .map(|param| Param {
            name: param.name.clone(),
            value: value_to_wit(&param.value),
        })
        .collect();
    let answer = plugin
        .wasmonkey_chaos_strategy()
        .call_run(store, &params)
        .await?;
    Ok(answer.map(outcome_from_wit).map_err(|err| match err {
        RunError::InvalidParam(m) => contract::RunError::InvalidParam(m),
        RunError::Aborted(m) => contract::RunError::Aborted(m),
        RunError::Cloud(e) => contract::RunError::Cloud(format!("{e:?}")),
    }))
}

fn value_from_wit(value: ParamValue) -> contract::ParamValue {
    match value {
        ParamValue::Text(text) => contract::ParamValue::Text(text),
        ParamValue::Integer(n) => contract::ParamValue::Integer(n),
        ParamValue::Number(x) => contract::ParamValue::Number(x),
        ParamValue::Flag(b) => contract::ParamValue::Flag(b),
    }
}

fn value_to_wit(value: &contract::ParamValue) -> ParamValue {
    match value {
        contract::ParamValue::Text(text) => ParamValue::Text(text.clone()),
        contract::ParamValue::Integer(n) => ParamValue::Integer(*n),
        contract::ParamValue::Number(x) => ParamValue::Number(*x),
        contract::ParamValue::Flag(b) => ParamValue::Flag(*b),
    }
}

fn outcome_from_wit(outcome: Outcome) -> contract::Outcome {
    contract::Outcome {
        summary: outcome.summary,
        victims: outcome
            .victims
            .into_iter()
            .map(|v| contract::Victim {
                instance_id: v.instance_id,
                group: v.group,
                zone: v.zone,
                terminated_at_ms: v.terminated_at_ms,
                dry_run: v.dry_run,
                verdict: match v.verdict {
                    Verdict::Recovered => contract::Verdict::Recovered,
                    Verdict::NotRecovered => contract::Verdict::NotRecovered,
                    Verdict::Unchecked => contract::Verdict::Unchecked,
                },
                recovered_at_ms: v.recovered_at_ms,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    /// The released contract's files, as their digest (each file's name,
    /// a NUL, its bytes, a NUL, in name order). A change to a released
    /// version is a new version in a new directory, never an edit.
    const FROZEN: &str = "f9a0d7be5ca622c525566142a95491992f8242cdd376ae96df95a5d3d94141cc";

    #[test]
    fn the_released_contract_is_frozen() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/v0.1.0");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        let mut digest = Sha256::new();
        for name in &names {
            digest.update(name.as_encoded_bytes());
            digest.update([0]);
            digest.update(std::fs::read(dir.join(name)).unwrap());
            digest.update([0]);
        }
        assert_eq!(
            crate::sandbox::hex(&digest.finalize()),
            FROZEN,
            "wit/v0.1.0/ changed: a released contract is never edited; add wit/v0.2.0/ and contract/v0_2_0.rs instead"
        );
    }
}
