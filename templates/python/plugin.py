"""{{name}}: a wasmonkey chaos strategy. Terminates one random running,
in-service, healthy instance in the groups matching `groups`.

componentize-py generates the `wit_world` bindings from wit/ when it builds;
`componentize-py -d wit -w strategy-plugin bindings .` writes them out for an
editor.
"""

from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import strategy
from wit_world.imports import cloud, runtime, types


class Strategy(exports.Strategy):
    def metadata(self) -> strategy.PluginMetadata:
        return strategy.PluginMetadata(
            name="{{name}}",
            version="0.1.0",
            description="{{description}}",
            params=[
                strategy.ParamSpec(
                    name="groups",
                    description="Glob over the names of the Auto Scaling groups to act on",
                    default=strategy.ParamValue_Text("*"),
                )
            ],
        )

    def run(self, params: List[strategy.Param]) -> strategy.Outcome:
        # The host hands over every declared parameter, of its declared kind.
        values = {p.name: p.value for p in params}
        groups = values.get("groups")
        if not isinstance(groups, strategy.ParamValue_Text):
            raise Err(strategy.RunError_InvalidParam("groups: expected text"))
        glob = groups.value
        query = cloud.InstanceFilter(
            group_pattern=glob, tags=[], zone=None, states=[types.InstanceState.RUNNING]
        )
        try:
            # Only instances inside the operator's scope are ever listed.
            instances = cloud.list_instances(query)
        except Err as err:
            raise Err(strategy.RunError_Cloud(err.value))
        candidates = [
            i for i in instances if i.lifecycle == types.LifecycleState.IN_SERVICE and i.healthy
        ]
        if not candidates:
            return strategy.Outcome(victims=[], summary=f'No healthy instance in groups matching "{glob}".')
        # The run's seeded random stream: the same --seed picks the same victim.
        pick = candidates[runtime.random_u64() % len(candidates)]
        try:
            done = cloud.terminate(pick.id, "{{name}}: random victim")
        except Err as err:
            # A refusal (scope, blast radius, grants) is a typed error, not a crash.
            runtime.log(runtime.LogLevel.WARN, f"not terminating {pick.id}: {err.value}")
            return strategy.Outcome(victims=[], summary=f"Did not terminate {pick.id}: {err.value}.")
        runtime.log(runtime.LogLevel.INFO, f"terminated {done.instance_id}")
        verb = "Would have terminated" if done.dry_run else "Terminated"
        return strategy.Outcome(
            victims=[
                strategy.Victim(
                    instance_id=done.instance_id,
                    group=done.group,
                    zone=done.zone,
                    terminated_at_ms=done.at_ms,
                    dry_run=done.dry_run,
                    # The host measures recovery itself; this plugin does not wait.
                    verdict=strategy.Verdict.UNCHECKED,
                    recovered_at_ms=None,
                )
            ],
            summary=f"{verb} {done.instance_id}.",
        )
