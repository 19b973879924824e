/**
 * The baselines every ratio is measured against, each run in the same process and on the same
 * throwaway Redis as the thing it is compared with.
 */
import { spawn } from 'node:child_process';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { JOB_RETENTION } from '../src/lib/bull.js';
import { BatchAdds } from '../src/lib/bull-batch.js';
import { nowMs, percentile } from './lib.js';

/** A realistic Brain request document (about 300 bytes). */
export function requestDoc(i: number, model = 'gemma3:1b'): Record<string, unknown> {
  return {
    request_id: `bench-${i}`,
    model,
    prompt: 'Summarise the joint temperatures of the left arm and say whether any is above its limit.',
    options: { temperature: 0, num_predict: 64 },
    priority: 5,
    source: 'brain',
    metadata: { turn: i },
  };
}

/** The models of the benchmark requests: one loaded on each of three nodes. */
export const BENCH_MODELS = ['gemma3:1b', 'llama3.2:3b', 'qwen2.5:0.5b'] as const;

/** Request `i` of a backlog: the models take turns, so every batch goes to three node queues. */
export function backlogDoc(i: number): Record<string, unknown> {
  return requestDoc(i, BENCH_MODELS[i % BENCH_MODELS.length]);
}

/** A backlog document as a job: its id and data, as the bench adds it both ways. */
const jobOf = (d: Record<string, unknown>): { id: string; data: { request: Record<string, unknown> } } => ({ id: `req_${String(d['request_id'])}`, data: { request: d } });

/**
 * Jobs per second of adding `docs` in batches of 100, each batch to the next of `queues` in
 * turn, one batch after another; `addBatch` adds one (on a connection of its own).
 */
async function batchRate(
  port: number,
  prefix: string,
  docs: Record<string, unknown>[],
  queueNames: string[],
  addBatch: (connection: Redis, queue: Queue, docs: Record<string, unknown>[]) => Promise<unknown>,
): Promise<number> {
  const connection = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: null });
  const queues = queueNames.map((q) => new Queue(q, { connection, prefix }));
  await Promise.all(queues.map((q) => q.waitUntilReady()));
  const t0 = nowMs();
  for (let i = 0, b = 0; i < docs.length; i += 100, b++) await addBatch(connection, queues[b % queues.length]!, docs.slice(i, i + 100));
  const rate = docs.length / ((nowMs() - t0) / 1000);
  await Promise.all(queues.map((q) => q.close()));
  connection.disconnect();
  return rate;
}

/** Jobs per second of bare BullMQ addBulk of `docs`, batches of 100, rotating over `queues`. */
export function bareAddBulkRate(port: number, prefix: string, docs: Record<string, unknown>[], queueNames: string[]): Promise<number> {
  return batchRate(port, prefix, docs, queueNames, (_, queue, batch) =>
    queue.addBulk(batch.map(jobOf).map((j) => ({ name: 'inference', data: j.data, opts: { jobId: j.id, priority: 5 } }))),
  );
}

/**
 * Jobs per second of the bridge's batch adds (src/lib/bull-batch.ts) of `docs`: the same jobs,
 * batches and queues as `bareAddBulkRate`, each batch one call of BullMQ's add script run per job.
 */
export function batchAddsRate(port: number, prefix: string, docs: Record<string, unknown>[], queueNames: string[]): Promise<number> {
  const adds = BatchAdds.load();
  if (!adds) throw new Error("the installed BullMQ's add scripts are not as bull-batch.ts expects");
  return batchRate(port, prefix, docs, queueNames, async (connection, queue, batch) => {
    adds.define(connection); // idempotent: defines the commands on the first batch
    const jobs = batch.map(jobOf).map((j) => ({ queue, id: j.id, priority: 5, data: JSON.stringify(j.data) }));
    const pipe = connection.pipeline();
    const [call] = adds.add(pipe, jobs, 'inference', (j) => ({ jobId: j.id, priority: j.priority }), 0);
    const [err] = ((await pipe.exec()) ?? [])[call!.at] ?? [new Error('no reply')];
    if (err) throw err;
  });
}

/** XADDs per second from `redis-benchmark` (50 clients, no pipelining) of the same document. */
export async function redisBenchmarkXaddRate(port: number, doc: string, requests = 100_000): Promise<number> {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-c', '50', '-n', String(requests), '-q', 'XADD', 'bench:xadd', '*', 'data', doc];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('redis-benchmark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => (text += d.toString()));
    child.stderr.on('data', (d: Buffer) => (text += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`redis-benchmark exited ${code}: ${text}`))));
  });
  const m = /([\d.]+) requests per second/.exec(out.replace(/\r/g, '\n'));
  if (!m) throw new Error(`cannot read redis-benchmark output: ${out.slice(-300)}`);
  const r = new Redis(port, '127.0.0.1');
  await r.del('bench:xadd');
  r.disconnect();
  return Number(m[1]);
}

/**
 * A bare stream hop, one request at a time: XADD -> XREADGROUP -> XADD reply -> XREAD.
 * Returns latencies in ms.
 */
export async function bareStreamHop(port: number, count: number): Promise<number[]> {
  const client = new Redis(port, '127.0.0.1');
  const server = new Redis(port, '127.0.0.1');
  const reader = new Redis(port, '127.0.0.1');
  await client.del('hop:req', 'hop:rep');
  await client.xgroup('CREATE', 'hop:req', 'g', '0', 'MKSTREAM');
  let stop = false;
  const serve = (async () => {
    while (!stop) {
      const res = (await server.xreadgroup('GROUP', 'g', 'c', 'COUNT', 10, 'BLOCK', 200, 'STREAMS', 'hop:req', '>')) as [string, [string, string[]][]][] | null;
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          await server.xadd('hop:rep', '*', 'data', fields[1]!);
          await server.xack('hop:req', 'g', id);
        }
      }
    }
  })();
  const lat: number[] = [];
  let cursor = '$';
  for (let i = 0; i < count; i++) {
    const t0 = nowMs();
    const wait = reader.xread('BLOCK', 5000, 'STREAMS', 'hop:rep', cursor) as Promise<[string, [string, string[]][]][] | null>;
    await client.xadd('hop:req', '*', 'data', JSON.stringify({ i }));
    const res = await wait;
    const entries = res?.[0]?.[1] ?? [];
    cursor = entries[entries.length - 1]?.[0] ?? cursor;
    lat.push(nowMs() - t0);
  }
  stop = true;
  await serve;
  await client.del('hop:req', 'hop:rep');
  client.disconnect();
  server.disconnect();
  reader.disconnect();
  return lat.slice(Math.min(50, Math.floor(count / 10)));
}

/**
 * BullMQ alone, one job at a time: Queue.add -> a bare Worker in a process of its own (`worker`,
 * started as `bare-worker.js ... <reply>`) takes the job and XADDs to `reply` -> XREAD.
 * The least a design that puts each request on a BullMQ queue can add. Returns latencies in ms.
 */
export async function bareBullmqRound(port: number, count: number, prefix: string, queue: string, reply: string): Promise<number[]> {
  const q = new Queue(queue, { prefix, connection: { host: '127.0.0.1', port } });
  const reader = new Redis(port, '127.0.0.1');
  const lat: number[] = [];
  try {
    let cursor = (await reader.xadd(reply, '*', 'i', '-1'))!;
    for (let i = 0; i < count; i++) {
      const t0 = nowMs();
      await q.add('j', { i }, JOB_RETENTION);
      for (;;) {
        const res = (await reader.xread('BLOCK', 5000, 'STREAMS', reply, cursor)) as [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1];
        if (!entries || entries.length === 0) throw new Error(`bare BullMQ worker did not answer job ${i} within 5 s`);
        cursor = entries[entries.length - 1]![0];
        if (entries.some(([, f]) => f[1] === String(i))) break;
      }
      lat.push(nowMs() - t0);
    }
  } finally {
    await q.close();
    reader.disconnect();
  }
  return lat.slice(Math.min(50, Math.floor(count / 10)));
}

export function summary(lat: number[]): { p50: number; p99: number } {
  return { p50: percentile(lat, 50), p99: percentile(lat, 99) };
}
