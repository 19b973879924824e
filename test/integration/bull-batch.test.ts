/**
 * The batch adds (src/lib/bull-batch.ts) leave in Redis what BullMQ's own `Queue.add` leaves:
 * the same job hashes, lists, sets, counters and events. Should a BullMQ upgrade change its
 * add scripts' keys or arguments, this is where it shows.
 */
import { Job, Queue, Worker, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOB_RETENTION } from '../../src/lib/bull.js';
import { BatchAdds, type JobKey } from '../../src/lib/bull-batch.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

let server: RedisServer;
let redis: Redis;
let batch: BatchAdds;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: null });
  const loaded = BatchAdds.load();
  if (!loaded) throw new Error("BullMQ's add scripts are not where bull-batch.ts reads them");
  batch = loaded;
  batch.define(redis);
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

const optionsOf = (job: JobKey): JobsOptions => ({ jobId: job.id, priority: job.priority, ...JOB_RETENTION });

/** The jobs of one test: ids, priorities (0 = none) and data of every kind BullMQ keeps apart. */
const JOBS: { id: string; priority: number; data: unknown }[] = [
  { id: 'req_a', priority: 5, data: { request: { request_id: 'a', prompt: 'héllo "x"\n' }, tried: [] } },
  { id: 'req_b', priority: 0, data: { request: { request_id: 'b' }, n: 1.5 } },
  { id: 'req_c', priority: 9, data: { request: { request_id: 'c' }, nested: { deep: [1, { x: null }] } } },
  { id: 'req_d', priority: 5, data: {} },
  { id: 'req_e', priority: 0, data: { request: { request_id: 'e' } } },
];

/** Everything a queue holds in Redis, with what differs by the clock alone taken out. */
async function stateOf(prefix: string, name: string): Promise<Record<string, unknown>> {
  const base = `${prefix}:${name}:`;
  const keys = (await redis.keys(`${base}*`)).sort();
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const short = key.slice(base.length);
    const type = await redis.type(key);
    if (type === 'hash') {
      const h = await redis.hgetall(key);
      delete h['timestamp'];
      for (const f of ['data', 'opts']) if (h[f] !== undefined) h[f] = JSON.parse(h[f]);
      out[short] = h;
    } else if (type === 'zset') out[short] = await redis.zrange(key, 0, -1, 'WITHSCORES');
    else if (type === 'list') out[short] = await redis.lrange(key, 0, -1);
    else if (type === 'string') out[short] = await redis.get(key);
    else if (type === 'stream') out[short] = (await redis.xrange(key, '-', '+')).map(([, fields]) => fields);
    else out[short] = type;
  }
  return out;
}

/** Add each queue's jobs with one pipeline of batch adds: the answer to each job id (ids differ across queues), in the order added. */
async function addWithBatch(lists: { queue: Queue; jobs: typeof JOBS }[], maxPerCall?: number, sizes: number[] = []): Promise<Map<string, unknown>> {
  const pipe = redis.pipeline();
  const jobs = lists.flatMap(({ queue, jobs: list }) => list.map((j) => ({ queue, id: j.id, priority: j.priority, data: JSON.stringify(j.data) })));
  const calls = batch.add(pipe, jobs, 'inference', optionsOf, 0, maxPerCall);
  sizes.push(...calls.map((c) => c.jobs.length));
  const res = (await pipe.exec()) ?? [];
  const answers = new Map<string, unknown>();
  for (const c of calls) {
    const [err, reply] = res[c.at]!;
    if (err) throw err;
    c.jobs.forEach((j, i) => answers.set(j.id, (reply as unknown[])[i]));
  }
  return answers;
}

/** Jobs for a second queue in the same call: other ids, other priorities. */
const OTHERS: typeof JOBS = [
  { id: 'req_y', priority: 0, data: { request: { request_id: 'y' } } },
  { id: 'req_z', priority: 2, data: { request: { request_id: 'z' } } },
];

describe('batch adds', () => {
  it("leave the same keys, job hashes, counters and events as BullMQ's Queue.add, over several queues in one call", async () => {
    const prefix = testPrefix('batch');
    const [bullX, bullY, batchX, batchY] = ['bull-x', 'bull-y', 'batch-x', 'batch-y'].map((name) => new Queue(name, { connection: redis, prefix }));
    await Promise.all([bullX, bullY, batchX, batchY].map((q) => q!.waitUntilReady()));
    const answers = await addWithBatch([
      { queue: batchX!, jobs: JOBS },
      { queue: batchY!, jobs: OTHERS },
    ]);
    const order = [...answers.keys()];
    expect([...answers.values()]).toEqual(order);
    // One call for the jobs with a priority, then one for those without; in each, queue by
    // queue, and in a queue priority by priority, as each first appears. BullMQ's adds go in the
    // same order here, so that counters and events line up.
    expect(order).toEqual(['req_a', 'req_d', 'req_c', 'req_z', 'req_b', 'req_e', 'req_y']);
    for (const id of order) {
      const j = JOBS.find((x) => x.id === id);
      const [queue, job] = j ? [bullX!, j] : [bullY!, OTHERS.find((x) => x.id === id)!];
      await queue.add('inference', job.data, optionsOf({ id, priority: job.priority }));
    }
    expect(await stateOf(prefix, 'batch-x')).toEqual(await stateOf(prefix, 'bull-x'));
    expect(await stateOf(prefix, 'batch-y')).toEqual(await stateOf(prefix, 'bull-y'));
    // The kinds really differ: priority 0 goes to the wait list, the others to the prioritized set.
    expect(await batchX!.getJobCounts('wait', 'prioritized')).toEqual({ wait: 2, prioritized: 3 });
    // Adding the same ids again is what BullMQ makes of it: a no-op answered with the id.
    expect([...(await addWithBatch([{ queue: batchX!, jobs: JOBS.slice(0, 2) }])).values()]).toEqual(['req_a', 'req_b']);
    await bullX!.add('inference', JOBS[0]!.data, optionsOf({ id: 'req_a', priority: 5 }));
    await bullX!.add('inference', JOBS[1]!.data, optionsOf({ id: 'req_b', priority: 0 }));
    expect(await stateOf(prefix, 'batch-x')).toEqual(await stateOf(prefix, 'bull-x'));
    await Promise.all([bullX, bullY, batchX, batchY].map((q) => q!.close()));
  });

  it('split into calls of at most so many jobs add the same jobs in the same order', async () => {
    const prefix = testPrefix('batch-split');
    const [whole, split] = ['whole', 'split'].map((name) => new Queue(name, { connection: redis, prefix }));
    const [wholeY, splitY] = ['whole-y', 'split-y'].map((name) => new Queue(name, { connection: redis, prefix }));
    await Promise.all([whole, split, wholeY, splitY].map((q) => q!.waitUntilReady()));
    const sizes: number[] = [];
    const one = await addWithBatch([{ queue: whole!, jobs: JOBS }, { queue: wholeY!, jobs: OTHERS }], undefined, sizes);
    expect(sizes).toEqual([4, 3]);
    sizes.length = 0;
    const many = await addWithBatch([{ queue: split!, jobs: JOBS }, { queue: splitY!, jobs: OTHERS }], 2, sizes);
    // 4 with a priority in calls of 2 and 2, then 3 without in calls of 2 and 1, in one order.
    expect(sizes).toEqual([2, 2, 2, 1]);
    expect([...many.keys()]).toEqual([...one.keys()]);
    expect([...many.values()]).toEqual([...one.values()]);
    expect(await stateOf(prefix, 'split')).toEqual(await stateOf(prefix, 'whole'));
    expect(await stateOf(prefix, 'split-y')).toEqual(await stateOf(prefix, 'whole-y'));
    await Promise.all([whole, split, wholeY, splitY].map((q) => q!.close()));
  });

  it('are jobs a BullMQ Worker runs, highest priority first, with their data', async () => {
    const prefix = testPrefix('batch-run');
    const q = new Queue('pi-run', { connection: redis, prefix });
    await q.waitUntilReady();
    expect([...(await addWithBatch([{ queue: q, jobs: JOBS }])).values()].sort()).toEqual(JOBS.map((j) => j.id).sort());
    const seen: { id: string; data: unknown }[] = [];
    const worker = new Worker(
      'pi-run',
      async (job: Job) => {
        seen.push({ id: job.id!, data: job.data });
        return 'ok';
      },
      { connection: new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: null }), prefix, concurrency: 1 },
    );
    await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(JOBS.length);
    await worker.close();
    // Standard jobs before prioritized ones, then by BullMQ priority (lower number first).
    expect(seen.map((s) => s.id)).toEqual(['req_b', 'req_e', 'req_a', 'req_d', 'req_c']);
    for (const j of JOBS) expect(seen.find((s) => s.id === j.id)!.data).toEqual(j.data);
    const done = await Job.fromId(q, 'req_c');
    expect(done?.returnvalue).toBe('ok');
    expect(done?.opts).toEqual(expect.objectContaining({ jobId: 'req_c', priority: 9, attempts: 0, ...JOB_RETENTION }));
    await q.close();
  });
});
