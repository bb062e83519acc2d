// Oldest first in JavaScript: the reference strategy of contract 0.2
// (plugins/oldest-first), call for call.
//
// Counts the running instances of the groups matching `groups`, reads them
// `page-size` at a time, and stops the `count` launched longest ago (ties by
// id) for `stop-secs` each; the host starts each again and measures its
// group's recovery. Built with componentize-js against `wit/` (contract
// 0.2.0): `cargo xtask build-plugin examples/plugins-0.2/js`. u64 and s64
// values are BigInts; a failed import throws an error whose `payload` is the
// `cloud-error`.

import { countInstances, listInstancesPage, stop } from 'wasmonkey:chaos/cloud@0.2.0';
import { log, sleepMs } from 'wasmonkey:chaos/runtime@0.2.0';

const NAME = 'oldest-first-js';
const VERSION = '0.1.0';
const DESCRIPTION =
  'Oldest first in JavaScript: stops the oldest running instances of the matching groups ' +
  'for a while';

/** The `cloud-error` a failed import threw, or rethrow anything else. */
function cloudError(err) {
  if (err && err.payload && typeof err.payload.tag === 'string') {
    return err.payload;
  }
  throw err;
}

function param(params, name, tag, fallback) {
  const found = params.find((p) => p.name === name && p.value.tag === tag);
  return found ? found.value.val : fallback;
}

const spec = (name, description, tag, val) => ({ name, description, default: { tag, val } });

const clamp = (value, least, most) => (value < least ? least : value > most ? most : value);

function experiment(params) {
  const groups = param(params, 'groups', 'text', '*');
  const count = Number(clamp(BigInt(param(params, 'count', 'integer', 1n)), 0n, 1000000n));
  const stopSecs = BigInt(param(params, 'stop-secs', 'integer', 60n));
  const stopMs = (stopSecs < 0n ? 0n : stopSecs) * 1000n;
  const pageSize = Number(clamp(BigInt(param(params, 'page-size', 'integer', 100n)), 1n, 1000n));
  const filter = { groupPattern: groups, tags: [], zone: undefined, states: ['running'] };
  const total = countInstances(filter);
  const running = [];
  let after;
  for (;;) {
    const page = listInstancesPage(filter, after, pageSize);
    running.push(...page.instances);
    if (page.next === undefined || page.next === null) break;
    after = page.next;
  }
  log('info', `${running.length} running in ${groups} (${total} counted), read ${pageSize} at a time`);
  // By launch time, then id (code unit order, as Rust's for these ASCII ids).
  running.sort((a, b) =>
    a.launchedAtMs < b.launchedAtMs ? -1 : a.launchedAtMs > b.launchedAtMs ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
  );
  const lines = [];
  let stopped = 0;
  for (const instance of running.slice(0, count)) {
    const reason = `oldest first: launched at ${instance.launchedAtMs} ms, ${instance.instanceType}`;
    let fault;
    try {
      fault = stop(instance.id, stopMs, reason);
    } catch (thrown) {
      const err = cloudError(thrown);
      log('warn', `${instance.id}: stop refused (${err.tag})`);
      lines.push(`refused ${instance.id}: ${err.tag}`);
      continue;
    }
    stopped += 1;
    const until = fault.untilMs === undefined || fault.untilMs === null ? 0n : fault.untilMs;
    lines.push(`stopped ${instance.id} (${instance.instanceType}, ${instance.market}) until ${until} ms`);
  }
  if (stopped > 0) sleepMs(stopMs);
  return {
    victims: [],
    summary: `oldest-first: stopped ${stopped} of ${running.length} running: ${lines.join('; ')}`,
  };
}

export const strategy = {
  metadata() {
    return {
      name: NAME,
      version: VERSION,
      description: DESCRIPTION,
      params: [
        spec('groups', 'Auto Scaling group name pattern (`*` for any)', 'text', '*'),
        spec('count', 'how many of the oldest instances to stop', 'integer', 1n),
        spec('stop-secs', 'how long each stays stopped', 'integer', 60n),
        spec('page-size', 'instances read per page', 'integer', 100n),
      ],
    };
  },

  run(params) {
    try {
      return experiment(params);
    } catch (thrown) {
      // A cloud error that ends the run becomes run-error.cloud.
      throw { tag: 'cloud', val: cloudError(thrown) };
    }
  },
};
