/**
 * P6: resident memory of idle processes. The built worker (healthy: its backend answers at
 * once, so it runs its queue and publishes health) and the built bridge (with that node in its
 * registry) against a bare BullMQ Worker process (`bare-worker.js`) on the same Redis. All three
 * start together, settle for a few seconds, and VmRSS is read from /proc/<pid>/status.
 *
 * Then the same again with the Node options the worker is deployed with (`node_args` of the
 * worker in ecosystem.config.cjs, which pm2 passes to node): the worker as pm2 starts it, and,
 * like for like, a bare worker started with the same options.
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
  /** A bare worker with no options, and one with the deployed options. */
  bare: number;
  bareSame: number;
  worker: number;
}

/** The Node options the worker is deployed with: `node_args` of its entry in ecosystem.config.cjs. */
export function deployedNodeArgs(): string[] {
  const apps = (createRequire(import.meta.url)(join(DIST, '..', 'ecosystem.config.cjs')) as { apps: { name: string; node_args?: string | string[] }[] }).apps;
  const args = apps.find((a) => a.name === 'orion-inference-worker')?.node_args ?? [];
  return typeof args === 'string' ? args.split(/\s+/).filter(Boolean) : args;
}

async function deployedOnce(o: MemoryOptions, backendUrl: string, r: number, nodeArgs: string[]): Promise<DeployedRun> {
  const redis = new Redis(o.port, '127.0.0.1');
  const prefix = `bench:p6d:${r}`;
  const addr = `127.0.0.1:${o.port}`;
  const children: Child[] = [];
  try {
    const bare = startNode(benchScript('bare-worker'), [String(o.port), `${prefix}:requests`, 'bare']);
    const bareSame = startNode(benchScript('bare-worker'), [String(o.port), `${prefix}:requests`, 'bare-same'], { nodeArgs });
    children.push(bare, bareSame);
    const [, , worker] = await Promise.all([
      bare.waitForLine((l) => l.includes('"ready"'), 20_000, 'ready line'),
      bareSame.waitForLine((l) => l.includes('"ready"'), 20_000, 'ready line'),
      startWorkerProcess({ 'node-id': 'bench-node', 'redis-addr': addr, 'stream-prefix': prefix, 'ollama-host': backendUrl, 'proc-root': PI_8G_ROOT, 'sys-root': PI_8G_ROOT }, nodeArgs).then((w) => {
        children.push(w.child);
        return w;
      }),
    ]);
    await new Promise((res) => setTimeout(res, o.settleMs));
    return { bare: bare.rss(), bareSame: bareSame.rss(), worker: worker.child.rss() };
  } finally {
    await Promise.all(children.map((c) => c.stop('SIGTERM')));
    await redis.flushall().catch(() => undefined);
    redis.disconnect();
  }
}

async function memoryOnce(o: MemoryOptions, backendUrl: string, r: number): Promise<MemoryRun> {
  const redis = new Redis(o.port, '127.0.0.1');
  const prefix = `bench:p6:${r}`;
  const addr = `127.0.0.1:${o.port}`;
  const children: Child[] = [];
  try {
    const bare = startNode(benchScript('bare-worker'), [String(o.port), `${prefix}:requests`, 'bare']);
    children.push(bare);
    const [, worker] = await Promise.all([
      bare.waitForLine((l) => l.includes('"ready"'), 20_000, 'ready line'),
      startWorkerProcess({ 'node-id': 'bench-node', 'redis-addr': addr, 'stream-prefix': prefix, 'ollama-host': backendUrl, 'proc-root': PI_8G_ROOT, 'sys-root': PI_8G_ROOT }).then((w) => {
        children.push(w.child);
        return w;
      }),
    ]);
    const bridge = await startBridgeProcess({ 'redis-addr': addr, 'stream-prefix': prefix, 'consumer-name': 'bench' });
    children.push(bridge.child);
    await new Promise((res) => setTimeout(res, o.settleMs));
    return { bare: bare.rss(), worker: worker.child.rss(), bridge: bridge.child.rss() };
  } finally {
    await Promise.all(children.map((c) => c.stop('SIGTERM')));
    await redis.flushall().catch(() => undefined);
    redis.disconnect();
  }
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
        o.log(`  run ${r + 1}: with ${nodeArgs.join(' ')}: worker ${mb(d.worker)}, bare BullMQ worker ${mb(d.bareSame)} (without: ${mb(d.bare)})`);
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
  const asDeployed = median(runs.map((x) => x.worker / x.bare));
  const likeForLike = median(runs.map((x) => x.worker / x.bareSame));
  const worker = mb(median(runs.map((x) => x.worker)));
  return [
    {
      row: 'P6',
      measure: `idle RSS: worker as deployed (${nodeArgs.join(' ')}) / bare BullMQ Worker process`,
      detail: `${worker} vs ${mb(median(runs.map((x) => x.bare)))}`,
      value: asDeployed,
      goal: '<= 1.15x',
      met: asDeployed <= 1.15,
    },
    {
      row: 'P6',
      measure: 'the same, bare worker started with the same options',
      detail: `${worker} vs ${mb(median(runs.map((x) => x.bareSame)))}`,
      value: likeForLike,
      goal: '<= 1.15x',
      met: likeForLike <= 1.15,
    },
  ];
}
