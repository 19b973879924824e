/**
 * P6: resident memory of idle processes. The built worker (healthy: its backend answers at
 * once, so it runs its queue and publishes health) and the built bridge (with that node in its
 * registry) against a bare BullMQ Worker process (`bare-worker.js`) on the same Redis. All three
 * start together, settle for a few seconds, and VmRSS is read from /proc/<pid>/status.
 *
 * Then the same again with the Node options the worker is deployed with (`node_args` of the
 * worker in ecosystem.config.cjs, which pm2 passes to node): the worker as pm2 starts it against
 * a bare worker started with the same options. Only like is compared with like: a process with
 * those options is never set against one without.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { fmtNum, median, type RowResult } from './lib.js';
import { DIST, PI_8G_ROOT, benchScript, startBackend, startBridgeProcess, startNode, startWorkerProcess, type Child } from './proc.js';

export interface MemoryOptions {
  port: number;
  runs: number;
  settleMs: number;
  log(line: string): void;
}

interface MemoryRun {
  bare: number;
  worker: number;
  bridge: number;
}

interface DeployedRun {
  /** A bare worker and the worker, both with the deployed options. */
  bareSame: number;
  worker: number;
}

/** The Node options the worker is deployed with: `node_args` of its entry in ecosystem.config.cjs. */
export function deployedNodeArgs(): string[] {
  const apps = (createRequire(import.meta.url)(join(DIST, '..', 'ecosystem.config.cjs')) as { apps: { name: string; node_args?: string | string[] }[] }).apps;
  const args = apps.find((a) => a.name === 'orion-inference-worker')?.node_args ?? [];
  return typeof args === 'string' ? args.split(/\s+/).filter(Boolean) : args;
}

/** A bare BullMQ worker, ready. */
async function bareWorker(o: MemoryOptions, prefix: string, name: string, nodeArgs: string[] = []): Promise<Child> {
  const child = startNode(benchScript('bare-worker'), [String(o.port), `${prefix}:requests`, name], { nodeArgs });
  await child.waitForLine((l) => l.includes('"ready"'), 20_000, 'ready line');
  return child;
}

/** The built worker on the bench's 8 GB Pi files, started. */
async function orionWorker(o: MemoryOptions, prefix: string, backendUrl: string, nodeArgs: string[] = []): Promise<Child> {
  const flags = { 'node-id': 'bench-node', 'redis-addr': `127.0.0.1:${o.port}`, 'stream-prefix': prefix, 'ollama-host': backendUrl, 'proc-root': PI_8G_ROOT, 'sys-root': PI_8G_ROOT };
  return (await startWorkerProcess(flags, nodeArgs)).child;
}

/**
 * Start processes (`start` hands each to `keep`, which stops them all at the end), let them
 * idle for `settleMs`, and read the resident memory of each.
 */
async function idleRss<K extends string>(o: MemoryOptions, start: (keep: (c: Promise<Child>) => Promise<Child>) => Promise<Record<K, Child>>): Promise<Record<K, number>> {
  const children: Promise<Child>[] = [];
  const keep = (c: Promise<Child>): Promise<Child> => {
    children.push(c);
    return c;
  };
  try {
    const procs = await start(keep);
    await new Promise((res) => setTimeout(res, o.settleMs));
    return Object.fromEntries(Object.entries<Child>(procs).map(([k, c]) => [k, c.rss()])) as Record<K, number>;
  } finally {
    const started = await Promise.allSettled(children);
    await Promise.all(started.map((c) => (c.status === 'fulfilled' ? c.value.stop('SIGTERM') : undefined)));
    const redis = new Redis(o.port, '127.0.0.1');
    await redis.flushall().catch(() => undefined);
    redis.disconnect();
  }
}

function deployedOnce(o: MemoryOptions, backendUrl: string, r: number, nodeArgs: string[]): Promise<DeployedRun> {
  const prefix = `bench:p6d:${r}`;
  return idleRss(o, async (keep) => {
    const [bareSame, worker] = await Promise.all([keep(bareWorker(o, prefix, 'bare-same', nodeArgs)), keep(orionWorker(o, prefix, backendUrl, nodeArgs))]);
    return { bareSame, worker };
  });
}

function memoryOnce(o: MemoryOptions, backendUrl: string, r: number): Promise<MemoryRun> {
  const prefix = `bench:p6:${r}`;
  return idleRss(o, async (keep) => {
    const [bare, worker] = await Promise.all([keep(bareWorker(o, prefix, 'bare')), keep(orionWorker(o, prefix, backendUrl))]);
    const bridge = await keep(startBridgeProcess({ 'redis-addr': `127.0.0.1:${o.port}`, 'stream-prefix': prefix, 'consumer-name': 'bench' }).then((b) => b.child));
    return { bare, worker, bridge };
  });
}

const mb = (b: number): string => `${fmtNum(b / 1e6, 1)} MB`;

export async function runMemoryRows(o: MemoryOptions): Promise<RowResult[]> {
  const backend = await startBackend();
  const runs: MemoryRun[] = [];
  const deployed: DeployedRun[] = [];
  const nodeArgs = deployedNodeArgs();
  try {
    for (let r = 0; r < o.runs; r++) {
      const m = await memoryOnce(o, backend.url, r);
      o.log(`  run ${r + 1}: bare BullMQ worker ${mb(m.bare)}, worker ${mb(m.worker)}, bridge ${mb(m.bridge)}`);
      runs.push(m);
      if (nodeArgs.length > 0) {
        const d = await deployedOnce(o, backend.url, r, nodeArgs);
        o.log(`  run ${r + 1}: both with ${nodeArgs.join(' ')}: worker ${mb(d.worker)}, bare BullMQ worker ${mb(d.bareSame)}`);
        deployed.push(d);
      }
    }
  } finally {
    await backend.child.stop();
  }
  const bare = median(runs.map((x) => x.bare));
  const worker = median(runs.map((x) => x.worker / x.bare));
  const bridge = median(runs.map((x) => x.bridge / x.bare));
  return [
    {
      row: 'P6',
      measure: 'idle RSS: worker / bare BullMQ Worker process',
      detail: `${mb(median(runs.map((x) => x.worker)))} vs ${mb(bare)}`,
      value: worker,
      goal: '<= 1.15x',
      met: worker <= 1.15,
    },
    {
      row: 'P6',
      measure: 'idle RSS: bridge / bare BullMQ Worker process',
      detail: `${mb(median(runs.map((x) => x.bridge)))} vs ${mb(bare)}`,
      value: bridge,
      goal: '<= 1.5x',
      met: bridge <= 1.5,
    },
    ...deployedRows(deployed, nodeArgs),
  ];
}

function deployedRows(runs: DeployedRun[], nodeArgs: string[]): RowResult[] {
  if (runs.length === 0) return [];
  const likeForLike = median(runs.map((x) => x.worker / x.bareSame));
  const worker = mb(median(runs.map((x) => x.worker)));
  return [
    {
      row: 'P6',
      measure: `idle RSS, both with ${nodeArgs.join(' ')} (as deployed): worker / bare BullMQ Worker process`,
      detail: `${worker} vs ${mb(median(runs.map((x) => x.bareSame)))} (runs: ${runs.map((x) => fmtNum(x.worker / x.bareSame, 2)).join(', ')})`,
      value: likeForLike,
      goal: '<= 1.15x',
      met: likeForLike <= 1.15,
    },
  ];
}
