/**
 * P6: resident memory of idle processes. The built worker (healthy: its backend answers at
 * once, so it runs its queue and publishes health) and the built bridge (with that node in its
 * registry) against a bare BullMQ Worker process (`bare-worker.js`) on the same Redis. All three
 * start together, settle for a few seconds, and VmRSS is read from /proc/<pid>/status.
 */
import { Redis } from 'ioredis';
import { fmtNum, median, type RowResult } from './lib.js';
import { PI_8G_ROOT, benchScript, startBackend, startBridgeProcess, startNode, startWorkerProcess, type Child } from './proc.js';

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
  try {
    for (let r = 0; r < o.runs; r++) {
      const m = await memoryOnce(o, backend.url, r);
      o.log(`  run ${r + 1}: bare BullMQ worker ${mb(m.bare)}, worker ${mb(m.worker)}, bridge ${mb(m.bridge)}`);
      runs.push(m);
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
  ];
}
