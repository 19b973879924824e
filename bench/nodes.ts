/**
 * The bench's nodes without workers: health documents written as a worker writes them (the
 * same script, `publishHealth`), once or heartbeating, for the drains of P1-P3.
 */
import type { Redis } from 'ioredis';
import type { NodeHealth } from '../src/contracts/types.js';
import { publishHealth } from '../src/lib/health-registry.js';
import type { Names } from '../src/lib/names.js';
import { BENCH_MODELS } from './baselines.js';

export const nodeId = (i: number): string => `node-${String(i).padStart(4, '0')}`;

/** Health of node `i` of `count`: every model installed, one loaded, RAM use varied. */
export function benchHealth(i: number, count: number, now = Date.now()): NodeHealth {
  return {
    node_id: nodeId(i),
    cpu_percent: 5 + (i % 50),
    ram_percent: 20 + ((i * 37) % 60) + i / (count * 10),
    temp_celsius: 45 + (i % 20),
    models: [BENCH_MODELS[i % BENCH_MODELS.length]!],
    available: true,
    last_seen: new Date(now).toISOString(),
    installed_models: [...BENCH_MODELS],
    ram_total_mb: 8000,
    ram_available_mb: 4000,
    concurrency: 1,
    active: 0,
    waiting: 0,
    worker_version: 'bench',
    ollama_version: '0.12.6',
  };
}

const TTL_MS = 15_000;

/** Write the health of the nodes `which` (indices among `count`), pipelined. */
export async function writeSome(redis: Redis, n: Names, count: number, which: readonly number[]): Promise<void> {
  const now = Date.now();
  await Promise.all(which.map((i) => publishHealth(redis, n, nodeId(i), JSON.stringify(benchHealth(i, count, now)), TTL_MS)));
}

/** Write `count` fresh health documents (as the workers would), 500 at a time. */
export async function writeNodes(redis: Redis, n: Names, count: number): Promise<void> {
  for (let start = 0; start < count; start += 500) {
    await writeSome(redis, n, count, Array.from({ length: Math.min(500, count - start) }, (_, j) => start + j));
  }
}

/**
 * Every node reports once per `everyMs`, the nodes spread evenly over the period (as workers
 * started at different times do): every `tickMs` the next slice of nodes writes. Stops when
 * `signal` aborts; resolves with the number of documents written (`progress.written` counts
 * them as they go).
 */
export async function heartbeat(redis: Redis, n: Names, count: number, everyMs: number, signal: AbortSignal, progress = { written: 0 }, tickMs = 50): Promise<number> {
  let next = 0;
  let owed = 0;
  const t0 = Date.now();
  for (let tick = 1; !signal.aborted; tick++) {
    owed += (count * tickMs) / everyMs;
    const batch: number[] = [];
    for (; owed >= 1; owed -= 1) {
      batch.push(next);
      next = (next + 1) % count;
    }
    await writeSome(redis, n, count, batch);
    progress.written += batch.length;
    const wait = t0 + tick * tickMs - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  return progress.written;
}
