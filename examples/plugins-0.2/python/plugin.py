"""Oldest first in Python: the reference strategy of contract 0.2
(plugins/oldest-first), call for call.

Counts the running instances of the groups matching `groups`, reads them
`page-size` at a time, and stops the `count` launched longest ago (ties by
id) for `stop-secs` each; the host starts each again and measures its
group's recovery. The bindings (`wit_world`) are generated from `wit/`
(contract 0.2.0) at build time: `cargo xtask build-plugin examples/plugins-0.2/python`.
"""

from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import strategy
from wit_world.imports import cloud, runtime, types

NAME = "oldest-first-py"
VERSION = "0.1.0"
DESCRIPTION = (
    "Oldest first in Python: stops the oldest running instances of the matching groups "
    "for a while"
)

ERROR_KINDS = [
    (types.CloudError_Denied, "denied"),
    (types.CloudError_NotFound, "not-found"),
    (types.CloudError_BudgetExhausted, "budget-exhausted"),
    (types.CloudError_Throttled, "throttled"),
    (types.CloudError_Invalid, "invalid"),
    (types.CloudError_Backend, "backend"),
]


def kind(err: types.CloudError) -> str:
    for case, name in ERROR_KINDS:
        if isinstance(err, case):
            return name
    return "backend"


def market(value: types.Market) -> str:
    return "spot" if value == types.Market.SPOT else "on-demand"


def text(params: List[strategy.Param], name: str, default: str) -> str:
    for p in params:
        if p.name == name and isinstance(p.value, strategy.ParamValue_Text):
            return p.value.value
    return default


def integer(params: List[strategy.Param], name: str, default: int) -> int:
    for p in params:
        if p.name == name and isinstance(p.value, strategy.ParamValue_Integer):
            return p.value.value
    return default


def experiment(params: List[strategy.Param]) -> strategy.Outcome:
    groups = text(params, "groups", "*")
    count = max(integer(params, "count", 1), 0)
    stop_ms = max(integer(params, "stop-secs", 60), 0) * 1000
    page_size = min(max(integer(params, "page-size", 100), 1), 1000)
    wanted = cloud.InstanceFilter(
        group_pattern=groups, tags=[], zone=None, states=[types.InstanceState.RUNNING]
    )
    total = cloud.count_instances(wanted)
    running: List[types.Instance] = []
    after = None
    while True:
        page = cloud.list_instances_page(wanted, after, page_size)
        running.extend(page.instances)
        if page.next is None:
            break
        after = page.next
    runtime.log(
        runtime.LogLevel.INFO,
        f"{len(running)} running in {groups} ({total} counted), read {page_size} at a time",
    )
    # By launch time, then id (Python compares str by code point, as Rust does
    # for these ASCII ids).
    running.sort(key=lambda i: (i.launched_at_ms, i.id))
    lines = []
    stopped = 0
    for instance in running[:count]:
        reason = (
            f"oldest first: launched at {instance.launched_at_ms} ms, {instance.instance_type}"
        )
        try:
            fault = cloud.stop(instance.id, stop_ms, reason)
        except Err as err:
            runtime.log(runtime.LogLevel.WARN, f"{instance.id}: stop refused ({kind(err.value)})")
            lines.append(f"refused {instance.id}: {kind(err.value)}")
            continue
        stopped += 1
        until = fault.until_ms if fault.until_ms is not None else 0
        lines.append(
            f"stopped {instance.id} ({instance.instance_type}, {market(instance.market)}) "
            f"until {until} ms"
        )
    if stopped > 0:
        runtime.sleep_ms(stop_ms)
    return strategy.Outcome(
        victims=[],
        summary=f"oldest-first: stopped {stopped} of {len(running)} running: {'; '.join(lines)}",
    )


class Strategy(exports.Strategy):
    def metadata(self) -> strategy.PluginMetadata:
        spec = strategy.ParamSpec
        return strategy.PluginMetadata(
            name=NAME,
            version=VERSION,
            description=DESCRIPTION,
            params=[
                spec("groups", "Auto Scaling group name pattern (`*` for any)", strategy.ParamValue_Text("*")),
                spec("count", "how many of the oldest instances to stop", strategy.ParamValue_Integer(1)),
                spec("stop-secs", "how long each stays stopped", strategy.ParamValue_Integer(60)),
                spec("page-size", "instances read per page", strategy.ParamValue_Integer(100)),
            ],
        )

    def run(self, params: List[strategy.Param]) -> strategy.Outcome:
        try:
            return experiment(params)
        except Err as err:
            if isinstance(err.value, tuple(case for case, _ in ERROR_KINDS)):
                raise Err(strategy.RunError_Cloud(err.value)) from None
            raise
