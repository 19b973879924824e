/** `orion nodes` and `orion stats`: how the bridge sees the cluster. */
import type { NodeHealth } from '../contracts/types.js';
import { getJson, type Command } from './context.js';
import { num, table } from './format.js';

type NodeRow = NodeHealth & { eligible: boolean; excluded_reason?: string; warning?: string };

export const nodes: Command = {
  name: 'nodes',
  summary: 'every node in the registry as the bridge sees it: eligible or why not, load, models',
  usage: '[--json]',
  help: `Every node in the health registry, eligible ones first in routing order, as the bridge
sees it (GET /nodes on --router). STATE is "eligible" or the reason the node gets nothing:
stale, drained, temperature, ram or unavailable. RUN/WAIT is the jobs the node reported running and waiting.

  --json    the bridge's answer as it is (an array of health documents)

Example: orion nodes --router http://bridge.local:8080`,
  options: {},
  async run(ctx, values) {
    const rows = (await getJson(ctx, '/nodes')) as NodeRow[];
    if (values['json']) {
      ctx.out(JSON.stringify(rows, null, 2));
      return 0;
    }
    if (rows.length === 0) {
      ctx.out('(no node in the registry: is a worker running with the same --stream-prefix?)');
      return 0;
    }
    const lines = table(rows, [
      { title: 'NODE', value: (x) => x.node_id },
      { title: 'STATE', value: (x) => (x.eligible ? 'eligible' : (x.excluded_reason ?? 'excluded')) },
      { title: 'TEMP', value: (x) => (x.temp_celsius === null ? 'n/a' : `${num(x.temp_celsius, 1)}C`), right: true },
      { title: 'RAM%', value: (x) => num(x.ram_percent, 1), right: true },
      { title: 'CPU%', value: (x) => num(x.cpu_percent, 0), right: true },
      { title: 'RUN/WAIT', value: (x) => `${x.active ?? '-'}/${x.waiting ?? '-'}`, right: true },
      { title: 'LOADED', value: (x) => x.models.join(',') || '-' },
      { title: 'INSTALLED', value: (x) => (x.installed_models ?? []).filter((m) => !x.models.includes(m)).join(',') || '-' },
    ]);
    lines.forEach((l) => ctx.out(l));
    // Warnings the bridge attaches (two workers under one node id), under the table.
    for (const x of rows) if (typeof x.warning === 'string') ctx.err(`warning: ${x.node_id}: ${x.warning}`);
    return 0;
  },
};

export const stats: Command = {
  name: 'stats',
  summary: "the bridge's routing counters, this bridge's and the cluster's",
  usage: '[--json]',
  help: `The routing counters (GET /stats on --router): this bridge since it started, and the
totals of every bridge (cluster) kept in Redis.

  --json    the bridge's answer as it is`,
  options: {},
  async run(ctx, values) {
    const s = (await getJson(ctx, '/stats')) as Record<string, unknown> & { cluster?: Record<string, number> | null };
    if (values['json']) {
      ctx.out(JSON.stringify(s, null, 2));
      return 0;
    }
    const keys = ['total_routed', 'sticky_hits', 'fallbacks', 'errors', 'timeouts', 'rerouted', 'duplicates', 'anticipated'];
    const rows = keys.filter((k) => k in s).map((k) => ({ k, mine: String(s[k]), all: s.cluster ? String(s.cluster[k] ?? '-') : '-' }));
    table(rows, [
      { title: 'COUNTER', value: (r) => r.k },
      { title: `THIS BRIDGE (${String(s['consumer'] ?? '?')})`, value: (r) => r.mine, right: true },
      { title: 'CLUSTER', value: (r) => r.all, right: true },
    ]).forEach((l) => ctx.out(l));
    const routed = Number(s.cluster?.['total_routed'] ?? s['total_routed'] ?? 0);
    const sticky = Number(s.cluster?.['sticky_hits'] ?? s['sticky_hits'] ?? 0);
    if (routed > 0) ctx.out(`sticky share ${((100 * sticky) / routed).toFixed(1)} %`);
    for (const k of ['waiting', 'reroutes_pending', 'failed_jobs']) if (k in s) ctx.out(`${k.replace('_', ' ')}: ${String(s[k] ?? '-')}`);
    return 0;
  },
};
