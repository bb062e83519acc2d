// Chaos Monkey in JavaScript: the reference strategy (plugins/classic-monkey),
// draw for draw and poll for poll.
//
// In each Auto Scaling group matching `groups` (by name order), with
// probability `probability`, terminate one running, in-service, healthy
// instance picked uniformly at random; wait for the groups to recover and
// publish one notification listing the victims.
//
// Built with componentize-js: `cargo xtask build-plugin examples/plugins/js`.
// u64 and s64 values are BigInts; a `result` import that fails throws an
// error whose `payload` is the `cloud-error`; throwing a `run-error` from
// `run` returns it.

import { listGroups, listInstances, terminate } from 'wasmonkey:chaos/cloud@0.1.0';
import { groupHealth, describeInstance } from 'wasmonkey:chaos/probe@0.1.0';
import { channels, publish } from 'wasmonkey:chaos/notify@0.1.0';
import { log, nowMs, sleepMs, randomU64 } from 'wasmonkey:chaos/runtime@0.1.0';

const NAME = 'classic-monkey-js';
const VERSION = '0.1.0';
const DESCRIPTION =
  'Chaos Monkey in JavaScript: terminates one random in-service instance in each matching ' +
  'Auto Scaling group, waits for the groups to recover and reports by notification';

const THROTTLE_RETRIES = 3;
const THROTTLE_BACKOFF_MS = 1000n;
const U64_MAX = (1n << 64n) - 1n;

const info = (message) => log('info', message);

// -- cloud errors ---------------------------------------------------------------

/** The `cloud-error` a failed import threw, or rethrow anything else. */
function cloudError(err) {
  if (err && err.payload && typeof err.payload.tag === 'string') {
    return err.payload;
  }
  throw err;
}

const describe = (err) => `${err.tag}: ${err.val}`;

/** Call `f`, retrying up to 3 times (sleeping 1 s, 2 s, 4 s) while throttled. */
function call(what, f) {
  let backoff = THROTTLE_BACKOFF_MS;
  let retries = 0;
  for (;;) {
    try {
      return f();
    } catch (thrown) {
      const err = cloudError(thrown);
      if (err.tag === 'throttled' && retries < THROTTLE_RETRIES) {
        retries += 1;
        log(
          'debug',
          `${what}: throttled (${err.val}); retry ${retries} of ${THROTTLE_RETRIES} in ${backoff} ms`,
        );
        sleepMs(backoff);
        backoff = backoff * 2n > U64_MAX ? U64_MAX : backoff * 2n;
        continue;
      }
      throw thrown;
    }
  }
}

// -- parameters -----------------------------------------------------------------

class RunError {
  constructor(tag, val) {
    this.tag = tag;
    this.val = val;
  }
}

const invalid = (name, message) => new RunError('invalid-param', `${name}: ${message}`);

/** A number as Rust's `{}` prints an f64: `1`, `0.5`, `1.5`. */
const fmtNumber = (x) => String(x);

class Params {
  constructor(params) {
    this.values = params;
  }

  get(name) {
    const param = this.values.find((p) => p.name === name);
    if (!param) throw invalid(name, 'missing');
    return param.value;
  }

  text(name) {
    const value = this.get(name);
    if (value.tag === 'text') return value.val;
    throw invalid(name, `expected text, got ${value.tag}`);
  }

  integer(name) {
    const value = this.get(name);
    if (value.tag === 'integer') return BigInt(value.val);
    throw invalid(name, `expected integer, got ${value.tag}`);
  }

  number(name) {
    const value = this.get(name);
    if (value.tag === 'number') return value.val;
    if (value.tag === 'integer') return Number(value.val);
    throw invalid(name, `expected number, got ${value.tag}`);
  }

  integerAtLeast(name, least) {
    const value = this.integer(name);
    if (value < least) throw invalid(name, `must be at least ${least}, got ${value}`);
    return value;
  }

  numberWithin(name, low, high) {
    const value = this.number(name);
    if (!(value >= low && value <= high)) {
      throw invalid(
        name,
        `must be between ${fmtNumber(low)} and ${fmtNumber(high)}, got ${fmtNumber(value)}`,
      );
    }
    return value;
  }
}

const spec = (name, description, tag, val) => ({ name, description, default: { tag, val } });

// -- randomness -----------------------------------------------------------------

/** A uniform index in `0..length` by rejection sampling, as the Rust SDK. */
function index(length) {
  if (length === 0) return undefined;
  const n = BigInt(length);
  const limit = U64_MAX - (U64_MAX % n);
  for (;;) {
    const draw = BigInt.asUintN(64, randomU64());
    if (draw < limit) return Number(draw % n);
  }
}

/** A uniform number in [0, 1) from the top 53 bits of one draw. */
const unit = () => Number(BigInt.asUintN(64, randomU64()) >> 11n) / 2 ** 53;

/** True with probability p; always one draw. */
const chance = (p) => unit() < Math.min(Math.max(p, 0), 1);

// -- wording --------------------------------------------------------------------

/** Milliseconds as seconds with one decimal, rounded as Rust's `{:.1}`. */
function seconds(ms) {
  const ms64 = BigInt(ms);
  // An exact tie (x.x5 exactly) happens only for x.250 and x.750 seconds;
  // Rust rounds those to even, toFixed away from zero.
  const rem = ms64 % 1000n;
  if (rem === 250n || rem === 750n) {
    const tenths = (ms64 / 100n) + ((ms64 / 100n) % 2n === 0n ? 0n : 1n);
    return `${tenths / 10n}.${tenths % 10n} s`;
  }
  return `${(Number(ms64) / 1000).toFixed(1)} s`;
}

const plural = (count, noun) => (count === 1 ? `1 ${noun}` : `${count} ${noun}s`);

function victimLine(victim) {
  const group = victim.group ?? 'no group';
  let fate;
  if (victim.verdict === 'recovered') {
    fate =
      victim.recoveredAtMs != null
        ? `recovered in ${seconds(
            victim.recoveredAtMs > victim.terminatedAtMs
              ? victim.recoveredAtMs - victim.terminatedAtMs
              : 0n,
          )}`
        : 'recovered';
  } else if (victim.verdict === 'not-recovered') {
    fate = 'did not recover in time';
  } else if (victim.dryRun) {
    fate = 'dry run, not terminated';
  } else {
    fate = 'recovery not checked';
  }
  return `${victim.instanceId} (${group}, ${victim.zone}): ${fate}`;
}

function terminated(victims) {
  const dry = victims.filter((v) => v.dryRun).length;
  const all = plural(victims.length, 'instance');
  if (dry === 0) return `Terminated ${all}`;
  if (dry === victims.length) return `Would have terminated ${all} (dry run)`;
  return `Terminated ${all} (${dry} only in dry run)`;
}

function verdicts(victims) {
  const count = (verdict) => victims.filter((v) => !v.dryRun && v.verdict === verdict).length;
  return [
    [count('recovered'), 'recovered'],
    [count('not-recovered'), 'did not recover in time'],
    [count('unchecked'), 'not checked'],
  ]
    .filter(([n]) => n > 0)
    .map(([n, what]) => `${n} ${what}`)
    .join(', ');
}

function summary(victims, context) {
  let text = terminated(victims);
  if (context) text += ` ${context}`;
  const fates = verdicts(victims);
  if (fates) text += `; ${fates}`;
  return `${text}.`;
}

// -- the fleet ------------------------------------------------------------------

/** Sort by a string key in code unit order (the Rust SDK sorts by bytes). */
const byKey = (key) => (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);

function selectGroups(glob) {
  const pattern = glob === '' || glob === '*' ? undefined : glob;
  return call('listing groups', () => listGroups(pattern)).sort(byKey((g) => g.name));
}

function runningGroupInstances(glob) {
  const filter = {
    groupPattern: glob === '' ? '*' : glob,
    tags: [],
    zone: undefined,
    states: ['running'],
  };
  return call('listing instances', () => listInstances(filter))
    .filter((i) => i.group !== undefined && i.group !== null && i.state === 'running')
    .sort(byKey((i) => i.id));
}

const inServiceHealthy = (instance) => instance.lifecycle === 'in-service' && instance.healthy;

// -- recovery -------------------------------------------------------------------

const isRecovered = (h) =>
  h.inService === h.desired && h.pending === 0 && h.terminating === 0 && h.unhealthy === 0;

function outOfService(instanceId) {
  let instance;
  try {
    instance = describeInstance(instanceId);
  } catch (thrown) {
    const err = cloudError(thrown);
    // Throttled or failing: look again at the next check; gone or not ours: out.
    return !(err.tag === 'throttled' || err.tag === 'backend');
  }
  const running = instance.state === 'pending' || instance.state === 'running';
  const serving = instance.lifecycle === 'pending' || instance.lifecycle === 'in-service';
  return !(running && serving);
}

function wait(pending, timeoutMs, pollMs) {
  const started = nowMs();
  const deadline = started + timeoutMs > U64_MAX ? U64_MAX : started + timeoutMs;
  const result = new Map([...pending.keys()].map((g) => [g, undefined]));
  const names = () => [...pending.keys()].sort().join(', ');
  info(`waiting up to ${seconds(timeoutMs)} for ${names()} to recover`);
  for (;;) {
    for (const group of [...pending.keys()].sort()) {
      const victims = pending.get(group).filter((id) => !outOfService(id));
      pending.set(group, victims);
      let health;
      try {
        health = groupHealth(group);
      } catch (thrown) {
        const err = cloudError(thrown);
        if (err.tag === 'throttled' || err.tag === 'backend') {
          log('debug', `checking ${group}: ${describe(err)}; will retry`);
        } else {
          log('warn', `cannot check ${group}: ${describe(err)}; giving up on it`);
          pending.delete(group);
        }
        continue;
      }
      if (victims.length === 0 && isRecovered(health)) {
        const at = nowMs();
        info(`${group} recovered after ${seconds(at > started ? at - started : 0n)}`);
        result.set(group, at);
        pending.delete(group);
      }
    }
    if (pending.size === 0) break;
    const now = nowMs();
    if (now >= deadline) {
      log('warn', `${names()} did not recover within ${seconds(timeoutMs)}`);
      break;
    }
    const poll = pollMs > 1n ? pollMs : 1n;
    sleepMs(poll < deadline - now ? poll : deadline - now);
  }
  return result;
}

function settle(victims, timeoutMs, pollMs) {
  const watch = new Map();
  for (const victim of victims) {
    victim.verdict = 'unchecked';
    victim.recoveredAtMs = undefined;
    if (victim.group != null && !victim.dryRun) {
      if (!watch.has(victim.group)) watch.set(victim.group, []);
      watch.get(victim.group).push(victim.instanceId);
    }
  }
  if (watch.size === 0) return;
  const recovered = wait(watch, timeoutMs, pollMs);
  for (const victim of victims) {
    if (victim.dryRun || victim.group == null) continue;
    const at = recovered.get(victim.group);
    if (at !== undefined) {
      victim.verdict = 'recovered';
      victim.recoveredAtMs = at;
    } else {
      victim.verdict = 'not-recovered';
    }
  }
}

// -- the strategy ---------------------------------------------------------------

/** Publish the victims' fates; a failure is logged, never fatal. */
function announce(channel, victims) {
  if (victims.length === 0) {
    info('no victim: no notification');
    return;
  }
  if (channel === '') {
    const granted = channels();
    if (granted.length === 0) {
      info('no notification channel granted: not notifying');
      return;
    }
    channel = granted[0];
  }
  const subject = `${NAME}: ${terminated(victims)}`;
  const body = victims.map(victimLine).join('\n');
  try {
    publish(channel, subject, body);
  } catch (thrown) {
    log('warn', `publishing to ${channel} failed: ${describe(cloudError(thrown))}`);
  }
}

function experiment(params) {
  const glob = params.text('groups');
  const probability = params.numberWithin('probability', 0, 1);
  const timeoutMs = params.integerAtLeast('recovery-timeout-secs', 0n) * 1000n;
  const pollMs = params.integerAtLeast('poll-secs', 1n) * 1000n;
  const channel = params.text('channel');

  const groups = selectGroups(glob);
  const instances = runningGroupInstances(glob);
  const victims = [];
  let eligible = 0;
  for (const group of groups) {
    const pool = instances.filter((i) => i.group === group.name && inServiceHealthy(i));
    if (pool.length === 0) {
      info(`${group.name}: no running, in-service, healthy instance`);
      continue;
    }
    eligible += 1;
    if (!chance(probability)) {
      info(`${group.name}: spared this time`);
      continue;
    }
    const picked = index(pool.length);
    if (picked === undefined) continue;
    const target = pool[picked];
    const reason = `${NAME}: random victim in ${group.name}`;
    let done;
    try {
      done = call(`terminating ${target.id}`, () => terminate(target.id, reason));
    } catch (thrown) {
      const err = cloudError(thrown);
      if (err.tag === 'budget-exhausted') {
        info(`not terminating ${target.id}: ${describe(err)}; stopping`);
        break;
      }
      log(
        err.tag === 'backend' ? 'error' : 'warn',
        `not terminating ${target.id}: ${describe(err)}; skipping it`,
      );
      continue;
    }
    info(`${group.name}: terminated ${target.id}${done.dryRun ? ' (dry run)' : ''}`);
    victims.push({
      instanceId: done.instanceId,
      group: done.group,
      zone: done.zone,
      terminatedAtMs: done.atMs,
      dryRun: done.dryRun,
      verdict: 'unchecked',
      recoveredAtMs: undefined,
    });
  }

  settle(victims, timeoutMs, pollMs);
  announce(channel, victims);
  const context = `across ${eligible} eligible of ${plural(groups.length, 'group')} matching "${glob}"`;
  return { victims, summary: summary(victims, context) };
}

export const strategy = {
  metadata() {
    return {
      name: NAME,
      version: VERSION,
      description: DESCRIPTION,
      params: [
        spec(
          'groups',
          'Glob over the names of the Auto Scaling groups to act on (`*`, `?`, `[ab]`)',
          'text',
          '*',
        ),
        spec(
          'probability',
          'Chance, from 0 to 1, that each eligible group loses an instance',
          'number',
          1.0,
        ),
        spec(
          'recovery-timeout-secs',
          'How long to wait for the affected groups to recover, in seconds',
          'integer',
          900n,
        ),
        spec(
          'poll-secs',
          'How often to check whether the affected groups recovered, in seconds',
          'integer',
          5n,
        ),
        spec(
          'channel',
          'Notification channel alias; empty means the first granted channel, if any',
          'text',
          '',
        ),
      ],
    };
  },

  run(params) {
    try {
      return experiment(new Params(params));
    } catch (thrown) {
      if (thrown instanceof RunError) throw { tag: thrown.tag, val: thrown.val };
      // A cloud error that ends the run becomes run-error.cloud.
      throw { tag: 'cloud', val: cloudError(thrown) };
    }
  },
};
