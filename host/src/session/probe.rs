//! `probe.*`: an instance, a group's health, and the operator's targets.

use super::{CheckResult, Fatal, PluginError, Session};
use crate::cloud::{Capacity, Instance};
use crate::policy::Grant;

impl Session {
    /// `probe.instance`.
    pub async fn instance(&mut self, id: &str) -> Result<Instance, PluginError> {
        if let Some(stopped) = self.stop_answer() {
            return Err(stopped);
        }
        let not_found =
            || PluginError::NotFound(format!("no instance {id} in this experiment's view"));
        let found = self
            .call(
                "describing an instance",
                self.setup.view.describe_instance(id),
            )
            .await?
            .ok_or_else(not_found)?;
        let group = self.group_of(&found).await?;
        match self
            .setup
            .policy
            .instance_visibility(&found, group.as_deref())
        {
            Ok(()) => Ok(found),
            Err(_) => Err(not_found()),
        }
    }

    /// `probe.group-health`.
    pub(crate) async fn group_health(&mut self, name: &str) -> Result<Capacity, PluginError> {
        if let Some(stopped) = self.stop_answer() {
            return Err(stopped);
        }
        let not_found =
            || PluginError::NotFound(format!("no group {name} in this experiment's view"));
        let group = self.group_named(name).await?.ok_or_else(not_found)?;
        if self.setup.policy.group_visibility(&group).is_err() {
            return Err(not_found());
        }
        let names = [name.to_owned()];
        let capacity = self
            .call("reading group health", self.setup.view.capacity(&names))
            .await?;
        capacity
            .into_iter()
            .next()
            .map(|(_, c)| c)
            .ok_or_else(not_found)
    }

    /// `probe.targets`: like `notify.channels`, empty without the grant,
    /// so a plugin learns no name it could not use.
    pub fn targets(&self) -> Vec<String> {
        if self.setup.policy.require(Grant::ProbeTargets).is_err() {
            return Vec::new();
        }
        self.setup.targets.keys().cloned().collect()
    }

    /// `probe.check`.
    pub async fn check(&mut self, target: &str) -> Result<Result<CheckResult, PluginError>, Fatal> {
        if let Some(stopped) = self.stop_answer() {
            return Ok(Err(stopped));
        }
        if let Err(denial) = self.setup.policy.require(Grant::ProbeTargets) {
            return self.deny("check", target, &denial).map(Err);
        }
        let answer = self.check_target(target).await;
        if let Err(err) = &answer {
            // Only a configured target reaches the backend: its name is the
            // operator's.
            self.note_call_failure(&format!("checking target {target}"), err);
        }
        Ok(answer)
    }

    pub(super) async fn check_target(&self, target: &str) -> Result<CheckResult, PluginError> {
        let spec = self
            .setup
            .targets
            .get(target)
            .ok_or_else(|| PluginError::NotFound(format!("no target named {target}")))?;
        let check = crate::probe::check(
            &self.setup.view,
            spec,
            self.setup.limits.host_call_timeout(),
        )
        .await
        .map_err(|err| match err {
            crate::probe::CheckError::Invalid(why) => PluginError::Invalid(why),
            crate::probe::CheckError::Cloud(err) => PluginError::from(err),
        })?;
        Ok(CheckResult {
            target: target.to_owned(),
            healthy: check.healthy,
            detail: check.detail,
            latency_ms: check.latency_ms,
        })
    }
}
