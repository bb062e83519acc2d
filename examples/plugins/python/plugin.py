"""Chaos Monkey in Python: the reference strategy (plugins/classic-monkey),
draw for draw and poll for poll.

In each Auto Scaling group matching `groups` (by name order), with
probability `probability`, terminate one running, in-service, healthy
instance picked uniformly at random; wait for the groups to recover and
publish one notification listing the victims.

Built with componentize-py: `cargo xtask build-plugin examples/plugins/python`.
The bindings (`wit_world`) are generated from wit/ at build time.
"""

from typing import Callable, Dict, List, Optional, TypeVar

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import strategy
from wit_world.imports import cloud, notify, probe, runtime, types

NAME = "classic-monkey-py"
VERSION = "0.1.0"
DESCRIPTION = (
    "Chaos Monkey in Python: terminates one random in-service instance in each matching "
    "Auto Scaling group, waits for the groups to recover and reports by notification"
)

THROTTLE_RETRIES = 3
THROTTLE_BACKOFF_MS = 1_000
U64_MAX = (1 << 64) - 1

T = TypeVar("T")


# -- logging -------------------------------------------------------------------


def log(level: runtime.LogLevel, message: str) -> None:
    runtime.log(level, message)


def info(message: str) -> None:
    log(runtime.LogLevel.INFO, message)


# -- cloud errors ----------------------------------------------------------------

ERROR_KINDS = [
    (types.CloudError_Denied, "denied"),
    (types.CloudError_NotFound, "not-found"),
    (types.CloudError_BudgetExhausted, "budget-exhausted"),
    (types.CloudError_Throttled, "throttled"),
    (types.CloudError_Invalid, "invalid"),
    (types.CloudError_Backend, "backend"),
]


def describe(err: types.CloudError) -> str:
    for case, kind in ERROR_KINDS:
        if isinstance(err, case):
            return f"{kind}: {err.value}"
    return repr(err)


def call(what: str, f: Callable[[], T]) -> T:
    """Call `f`, retrying up to 3 times (sleeping 1 s, 2 s, 4 s) while the host
    answers `throttled`. Other errors are raised as `Err(cloud-error)`."""
    backoff = THROTTLE_BACKOFF_MS
    retries = 0
    while True:
        try:
            return f()
        except Err as err:
            if isinstance(err.value, types.CloudError_Throttled) and retries < THROTTLE_RETRIES:
                retries += 1
                log(
                    runtime.LogLevel.DEBUG,
                    f"{what}: throttled ({err.value.value}); retry {retries} of "
                    f"{THROTTLE_RETRIES} in {backoff} ms",
                )
                runtime.sleep_ms(backoff)
                backoff = min(backoff * 2, U64_MAX)
                continue
            raise


# -- parameters ------------------------------------------------------------------


def invalid(name: str, message: str) -> Err:
    return Err(strategy.RunError_InvalidParam(f"{name}: {message}"))


KINDS = [
    (strategy.ParamValue_Text, "text"),
    (strategy.ParamValue_Integer, "integer"),
    (strategy.ParamValue_Number, "number"),
    (strategy.ParamValue_Flag, "flag"),
]


def kind_of(value: strategy.ParamValue) -> str:
    for case, kind in KINDS:
        if isinstance(value, case):
            return kind
    return "unknown"


class Params:
    def __init__(self, params: List[strategy.Param]) -> None:
        self.values = params

    def get(self, name: str) -> strategy.ParamValue:
        for param in self.values:
            if param.name == name:
                return param.value
        raise invalid(name, "missing")

    def text(self, name: str) -> str:
        value = self.get(name)
        if isinstance(value, strategy.ParamValue_Text):
            return value.value
        raise invalid(name, f"expected text, got {kind_of(value)}")

    def integer(self, name: str) -> int:
        value = self.get(name)
        if isinstance(value, strategy.ParamValue_Integer):
            return value.value
        raise invalid(name, f"expected integer, got {kind_of(value)}")

    def number(self, name: str) -> float:
        value = self.get(name)
        if isinstance(value, strategy.ParamValue_Number):
            return value.value
        if isinstance(value, strategy.ParamValue_Integer):
            return float(value.value)
        raise invalid(name, f"expected number, got {kind_of(value)}")

    def integer_at_least(self, name: str, least: int) -> int:
        value = self.integer(name)
        if value < least:
            raise invalid(name, f"must be at least {least}, got {value}")
        return value

    def number_within(self, name: str, low: float, high: float) -> float:
        value = self.number(name)
        if not low <= value <= high:
            raise invalid(name, f"must be between {fmt_g(low)} and {fmt_g(high)}, got {fmt_g(value)}")
        return value


def fmt_g(x: float) -> str:
    """A number as Rust's `{}` prints an f64: `1`, `0.5`, `1.5`."""
    return str(int(x)) if x == int(x) else repr(x)


def spec(name: str, description: str, default: strategy.ParamValue) -> strategy.ParamSpec:
    return strategy.ParamSpec(name=name, description=description, default=default)


# -- randomness ------------------------------------------------------------------


def index(length: int) -> Optional[int]:
    """A uniform index in `0..length` by rejection sampling, as the Rust SDK."""
    if length == 0:
        return None
    limit = U64_MAX - (U64_MAX % length)
    while True:
        draw = runtime.random_u64()
        if draw < limit:
            return draw % length


def unit() -> float:
    """A uniform number in [0, 1) from the top 53 bits of one draw."""
    return (runtime.random_u64() >> 11) / float(1 << 53)


def chance(p: float) -> bool:
    """True with probability p; always one draw."""
    return unit() < min(max(p, 0.0), 1.0)


# -- wording ---------------------------------------------------------------------


def seconds(ms: int) -> str:
    return f"{ms / 1000:.1f} s"


def plural(count: int, noun: str) -> str:
    return f"1 {noun}" if count == 1 else f"{count} {noun}s"


def victim_line(victim: strategy.Victim) -> str:
    group = victim.group if victim.group is not None else "no group"
    if victim.verdict == strategy.Verdict.RECOVERED:
        if victim.recovered_at_ms is not None:
            fate = f"recovered in {seconds(max(victim.recovered_at_ms - victim.terminated_at_ms, 0))}"
        else:
            fate = "recovered"
    elif victim.verdict == strategy.Verdict.NOT_RECOVERED:
        fate = "did not recover in time"
    elif victim.dry_run:
        fate = "dry run, not terminated"
    else:
        fate = "recovery not checked"
    return f"{victim.instance_id} ({group}, {victim.zone}): {fate}"


def terminated(victims: List[strategy.Victim]) -> str:
    dry = sum(1 for v in victims if v.dry_run)
    everything = plural(len(victims), "instance")
    if dry == 0:
        return f"Terminated {everything}"
    if dry == len(victims):
        return f"Would have terminated {everything} (dry run)"
    return f"Terminated {everything} ({dry} only in dry run)"


def verdicts(victims: List[strategy.Victim]) -> str:
    def count(verdict: strategy.Verdict) -> int:
        return sum(1 for v in victims if not v.dry_run and v.verdict == verdict)

    parts = [
        (count(strategy.Verdict.RECOVERED), "recovered"),
        (count(strategy.Verdict.NOT_RECOVERED), "did not recover in time"),
        (count(strategy.Verdict.UNCHECKED), "not checked"),
    ]
    return ", ".join(f"{n} {what}" for n, what in parts if n > 0)


def summary(victims: List[strategy.Victim], context: str) -> str:
    text = terminated(victims)
    if context:
        text += " " + context
    fates = verdicts(victims)
    if fates:
        text += "; " + fates
    return text + "."


# -- the fleet -------------------------------------------------------------------


def select_groups(glob: str) -> List[types.Group]:
    pattern = None if glob in ("", "*") else glob
    groups = call("listing groups", lambda: cloud.list_groups(pattern))
    return sorted(groups, key=lambda g: g.name)


def running_group_instances(glob: str) -> List[types.Instance]:
    query = cloud.InstanceFilter(
        group_pattern=glob if glob else "*",
        tags=[],
        zone=None,
        states=[types.InstanceState.RUNNING],
    )
    instances = call("listing instances", lambda: cloud.list_instances(query))
    kept = [i for i in instances if i.group is not None and i.state == types.InstanceState.RUNNING]
    return sorted(kept, key=lambda i: i.id)


def in_service_healthy(instance: types.Instance) -> bool:
    return instance.lifecycle == types.LifecycleState.IN_SERVICE and instance.healthy


# -- recovery --------------------------------------------------------------------


def is_recovered(health: types.GroupCapacity) -> bool:
    return (
        health.in_service == health.desired
        and health.pending == 0
        and health.terminating == 0
        and health.unhealthy == 0
    )


def out_of_service(instance_id: str) -> bool:
    try:
        instance = probe.describe_instance(instance_id)
    except Err as err:
        # Throttled or failing: look again at the next check; gone or not ours: out.
        return not isinstance(err.value, (types.CloudError_Throttled, types.CloudError_Backend))
    running = instance.state in (types.InstanceState.PENDING, types.InstanceState.RUNNING)
    serving = instance.lifecycle in (types.LifecycleState.PENDING, types.LifecycleState.IN_SERVICE)
    return not (running and serving)


def wait(pending: Dict[str, List[str]], timeout_ms: int, poll_ms: int) -> Dict[str, Optional[int]]:
    started = runtime.now_ms()
    deadline = min(started + timeout_ms, U64_MAX)
    result: Dict[str, Optional[int]] = {group: None for group in pending}
    info(f"waiting up to {seconds(timeout_ms)} for {', '.join(sorted(pending))} to recover")
    while True:
        for group in sorted(pending):
            victims = [v for v in pending[group] if not out_of_service(v)]
            pending[group] = victims
            try:
                health = probe.group_health(group)
            except Err as err:
                if isinstance(err.value, (types.CloudError_Throttled, types.CloudError_Backend)):
                    log(runtime.LogLevel.DEBUG, f"checking {group}: {describe(err.value)}; will retry")
                else:
                    log(runtime.LogLevel.WARN, f"cannot check {group}: {describe(err.value)}; giving up on it")
                    del pending[group]
                continue
            if not victims and is_recovered(health):
                at = runtime.now_ms()
                info(f"{group} recovered after {seconds(max(at - started, 0))}")
                result[group] = at
                del pending[group]
        if not pending:
            break
        now = runtime.now_ms()
        if now >= deadline:
            log(
                runtime.LogLevel.WARN,
                f"{', '.join(sorted(pending))} did not recover within {seconds(timeout_ms)}",
            )
            break
        runtime.sleep_ms(min(max(poll_ms, 1), deadline - now))
    return result


def settle(victims: List[strategy.Victim], timeout_ms: int, poll_ms: int) -> None:
    watch: Dict[str, List[str]] = {}
    for victim in victims:
        victim.verdict = strategy.Verdict.UNCHECKED
        victim.recovered_at_ms = None
        if victim.group is not None and not victim.dry_run:
            watch.setdefault(victim.group, []).append(victim.instance_id)
    if not watch:
        return
    recovered = wait(watch, timeout_ms, poll_ms)
    for victim in victims:
        if victim.dry_run or victim.group is None:
            continue
        at = recovered.get(victim.group)
        if at is not None:
            victim.verdict = strategy.Verdict.RECOVERED
            victim.recovered_at_ms = at
        else:
            victim.verdict = strategy.Verdict.NOT_RECOVERED


# -- the strategy ----------------------------------------------------------------


def announce(channel: str, victims: List[strategy.Victim]) -> None:
    """Publish the victims' fates; a failure is logged, never fatal."""
    if not victims:
        info("no victim: no notification")
        return
    if not channel:
        granted = notify.channels()
        if not granted:
            info("no notification channel granted: not notifying")
            return
        channel = granted[0]
    subject = f"{NAME}: {terminated(victims)}"
    body = "\n".join(victim_line(v) for v in victims)
    try:
        notify.publish(channel, subject, body)
    except Err as err:
        log(runtime.LogLevel.WARN, f"publishing to {channel} failed: {describe(err.value)}")


def experiment(params: Params) -> strategy.Outcome:
    glob = params.text("groups")
    probability = params.number_within("probability", 0.0, 1.0)
    timeout_ms = params.integer_at_least("recovery-timeout-secs", 0) * 1000
    poll_ms = params.integer_at_least("poll-secs", 1) * 1000
    channel = params.text("channel")

    groups = select_groups(glob)
    instances = running_group_instances(glob)
    victims: List[strategy.Victim] = []
    eligible = 0
    for group in groups:
        pool = [i for i in instances if i.group == group.name and in_service_healthy(i)]
        if not pool:
            info(f"{group.name}: no running, in-service, healthy instance")
            continue
        eligible += 1
        if not chance(probability):
            info(f"{group.name}: spared this time")
            continue
        picked = index(len(pool))
        if picked is None:
            continue
        target = pool[picked]
        reason = f"{NAME}: random victim in {group.name}"
        try:
            done = call(f"terminating {target.id}", lambda: cloud.terminate(target.id, reason))
        except Err as err:
            if isinstance(err.value, types.CloudError_BudgetExhausted):
                info(f"not terminating {target.id}: {describe(err.value)}; stopping")
                break
            level = runtime.LogLevel.ERROR if isinstance(err.value, types.CloudError_Backend) else runtime.LogLevel.WARN
            log(level, f"not terminating {target.id}: {describe(err.value)}; skipping it")
            continue
        info(f"{group.name}: terminated {target.id}{' (dry run)' if done.dry_run else ''}")
        victims.append(
            strategy.Victim(
                instance_id=done.instance_id,
                group=done.group,
                zone=done.zone,
                terminated_at_ms=done.at_ms,
                dry_run=done.dry_run,
                verdict=strategy.Verdict.UNCHECKED,
                recovered_at_ms=None,
            )
        )

    settle(victims, timeout_ms, poll_ms)
    announce(channel, victims)
    context = f'across {eligible} eligible of {plural(len(groups), "group")} matching "{glob}"'
    return strategy.Outcome(victims=victims, summary=summary(victims, context))


class Strategy(exports.Strategy):
    def metadata(self) -> strategy.PluginMetadata:
        return strategy.PluginMetadata(
            name=NAME,
            version=VERSION,
            description=DESCRIPTION,
            params=[
                spec(
                    "groups",
                    "Glob over the names of the Auto Scaling groups to act on (`*`, `?`, `[ab]`)",
                    strategy.ParamValue_Text("*"),
                ),
                spec(
                    "probability",
                    "Chance, from 0 to 1, that each eligible group loses an instance",
                    strategy.ParamValue_Number(1.0),
                ),
                spec(
                    "recovery-timeout-secs",
                    "How long to wait for the affected groups to recover, in seconds",
                    strategy.ParamValue_Integer(900),
                ),
                spec(
                    "poll-secs",
                    "How often to check whether the affected groups recovered, in seconds",
                    strategy.ParamValue_Integer(5),
                ),
                spec(
                    "channel",
                    "Notification channel alias; empty means the first granted channel, if any",
                    strategy.ParamValue_Text(""),
                ),
            ],
        )

    def run(self, params: List[strategy.Param]) -> strategy.Outcome:
        try:
            return experiment(Params(params))
        except Err as err:
            # A cloud error that ends the run becomes run-error.cloud; an
            # invalid parameter is already a run-error.
            if isinstance(err.value, tuple(case for case, _ in ERROR_KINDS)):
                raise Err(strategy.RunError_Cloud(err.value)) from None
            raise
