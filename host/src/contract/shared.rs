//! What every contract version's module shares, as a macro: the WIT types
//! of each version are distinct Rust types with the same names, so the
//! translations and the imports that did not change between versions are
//! written once and expanded in each version's module, over its own types.

/// The translations and host imports every version has in common.
/// Expanded inside a version module, after its `use` of its WIT types
/// (`CloudError`, `Group`, `GroupCapacity`, `Instance`, `InstanceState`,
/// `LifecycleState`, `Tag`, the interfaces, `Outcome`, `Param`,
/// `ParamValue`, `RunError`, `Verdict`, `StrategyPlugin`). The module
/// writes its own `instance_to_wit` and `cloud::Host`.
macro_rules! translations {
    () => {
        /// Turn a session failure into a trap that ends the run.
        fn fatal(err: session::Fatal) -> wasmtime::Error {
            match err {
                session::Fatal::Breach(breach) => wasmtime::Error::new(breach),
                journal @ session::Fatal::Journal(_) => {
                    wasmtime::Error::new(session::HostFault(journal.to_string()))
                }
                contract @ session::Fatal::Contract(_) => {
                    wasmtime::Error::msg(contract.to_string())
                }
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
                    .map(|i| instance_to_wit(self.clock_origin_ms(), i))
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
            async fn log(
                &mut self,
                level: runtime::LogLevel,
                message: String,
            ) -> wasmtime::Result<()> {
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
    };
}
pub(crate) use translations;

/// The `cloud` imports every version has in common (`list-groups`,
/// `terminate`), expanded inside its `impl cloud::Host for Session`.
macro_rules! cloud_common {
    () => {
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
    };
}
pub(crate) use cloud_common;
