// {{name}}: a wasmonkey chaos strategy. Terminates one random running,
// in-service, healthy instance in the groups matching `groups`.
//
// Imports are the contract's interfaces; u64 values are BigInts; a failed
// `result` import throws an error whose `payload` is the `cloud-error`, and
// throwing a `run-error` from `run` returns it.

import { listInstances, terminate } from 'wasmonkey:chaos/cloud@{{contract}}';
import { log, randomU64 } from 'wasmonkey:chaos/runtime@{{contract}}';

export const strategy = {
  metadata() {
    return {
      name: '{{name}}',
      version: '0.1.0',
      description: '{{description}}',
      params: [
        {
          name: 'groups',
          description: 'Glob over the names of the Auto Scaling groups to act on',
          default: { tag: 'text', val: '*' },
        },
      ],
    };
  },

  run(params) {
    // The host hands over every declared parameter, of its declared kind.
    const groups = params.find((p) => p.name === 'groups');
    if (!groups || groups.value.tag !== 'text') {
      throw { tag: 'invalid-param', val: 'groups: expected text' };
    }
    const glob = groups.value.val;
    let instances;
    try {
      // Only instances inside the operator's scope are ever listed.
      instances = listInstances({ groupPattern: glob, tags: [], zone: undefined, states: ['running'] });
    } catch (err) {
      throw { tag: 'cloud', val: err.payload };
    }
    const candidates = instances.filter((i) => i.lifecycle === 'in-service' && i.healthy);
    if (candidates.length === 0) {
      return { victims: [], summary: `No healthy instance in groups matching "${glob}".` };
    }
    // The run's seeded random stream: the same --seed picks the same victim.
    const pick = candidates[Number(randomU64() % BigInt(candidates.length))];
    let done;
    try {
      done = terminate(pick.id, '{{name}}: random victim');
    } catch (err) {
      // A refusal (scope, blast radius, grants) is a typed error, not a crash.
      const why = err.payload ? `${err.payload.tag}: ${err.payload.val}` : String(err);
      log('warn', `not terminating ${pick.id}: ${why}`);
      return { victims: [], summary: `Did not terminate ${pick.id}: ${why}.` };
    }
    log('info', `terminated ${done.instanceId}`);
    return {
      victims: [
        {
          instanceId: done.instanceId,
          group: done.group,
          zone: done.zone,
          terminatedAtMs: done.atMs,
          dryRun: done.dryRun,
          // The host measures recovery itself; this plugin does not wait.
          verdict: 'unchecked',
          recoveredAtMs: undefined,
        },
      ],
      summary: `${done.dryRun ? 'Would have terminated' : 'Terminated'} ${done.instanceId}.`,
    };
  },
};
