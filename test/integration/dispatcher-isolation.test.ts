import { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceRequest } from '../../src/contracts/types.js';
import { defineBusCommands, type InferenceJobData } from '../../src/lib/bus.js';
import { createLogger } from '../../src/lib/logger.js';
import { jobIdFor, names } from '../../src/lib/names.js';
import { Dispatcher, type Placement } from '../../src/router/dispatcher.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: null });
  defineBusCommands(redis);
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

function placement(nodeId: string, id: string, metadata?: Record<string, unknown>): Placement {
  const request: InferenceRequest = { request_id: id, model: 'gemma3:1b', prompt: 'x' };
  if (metadata) request.metadata = metadata;
  const data: InferenceJobData = { request, entry_id: '1-0', seen_at: 1, deadline: Date.now() + 60_000, attempt: 0, max_attempts: 3, routing: 'sticky', tried: [] };
  return { nodeId, data };
}

describe('a job that cannot be queued fails alone', () => {
  it('adds the rest of its batch and reports it refused, not to be tried again', async () => {
    const n = names(testPrefix('iso'));
    const d = new Dispatcher({ redis, n, log: createLogger({ level: 'silent' }) });
    const good = Array.from({ length: 5 }, (_, i) => placement('pi-a', `good-${i}`));
    // BullMQ serialises job data with JSON.stringify, which refuses a BigInt (TypeError).
    const bad = placement('pi-a', 'bad', { n: 10n as unknown as number });
    const junkNode = placement('evil:node', 'junk-node');
    const res = await d.placeNew([...good.slice(0, 2), bad, ...good.slice(2), junkNode]);
    expect(res.retry).toEqual([]);
    expect(res.refused.map((r) => r.placement.data.request.request_id).sort()).toEqual(['bad', 'junk-node']);
    expect(res.refused.find((r) => r.placement.data.request.request_id === 'bad')!.reason).toMatch(/BigInt/);
    expect(res.refused.find((r) => r.placement.data.request.request_id === 'junk-node')!.reason).toMatch(/not a node id/);
    for (const p of good) expect(await Job.fromId(d.queue('pi-a'), jobIdFor(p.data.request.request_id)), p.data.request.request_id).toBeDefined();
    expect(await Job.fromId(d.queue('pi-a'), jobIdFor('bad'))).toBeUndefined();
    // The owners were recorded for all of them (the refused ones are answered by the caller).
    expect(await redis.hget(n.requestKey('good-0'), 'node')).toBe('pi-a');
    await d.close();
  });

  it.each([
    ['batch adds', true],
    ['job by job', false],
  ])('places a batch spread over many node queues, with its marks, in one go (%s)', async (_how, batchAdds) => {
    const n = names(testPrefix('iso'));
    const d = new Dispatcher({ redis, n, log: createLogger({ level: 'silent' }), batchAdds });
    const list = Array.from({ length: 60 }, (_, i) => placement(`pi-${i % 20}`, `spread-${i}`));
    const bad = placement('pi-7', 'spread-bad', { n: 10n as unknown as number });
    const marks = [{ key: n.requestKey('held-0'), field: 'waiting', value: '1' }];
    const res = await d.placeNew([...list.slice(0, 30), bad, ...list.slice(30)], marks);
    expect(res).toEqual({ retry: [], refused: [expect.objectContaining({ placement: bad })] });
    for (const p of list) {
      const job = await Job.fromId(d.queue(p.nodeId), jobIdFor(p.data.request.request_id));
      expect(job?.data.request.request_id, p.data.request.request_id).toBe(p.data.request.request_id);
      expect(await job!.getState()).toBe('prioritized');
      expect(await redis.hget(n.requestKey(p.data.request.request_id), 'node')).toBe(p.nodeId);
    }
    expect(await redis.hget(n.requestKey('held-0'), 'waiting')).toBe('1');
    // Adding the same placements again is a no-op: each queue still holds one copy of each.
    expect(await d.placeNew(list)).toEqual({ retry: [], refused: [] });
    const counts = await Promise.all(Array.from({ length: 20 }, (_, i) => d.queue(`pi-${i}`).getJobCountByTypes('waiting', 'prioritized')));
    expect(counts).toEqual(Array.from({ length: 20 }, () => 3));
    await d.close();
  });

  it('adds job by job the jobs of a call Redis refuses, so that only the one it refuses fails', async () => {
    const n = names(testPrefix('iso'));
    const d = new Dispatcher({ redis, n, log: createLogger({ level: 'silent' }) });
    // A string where x-1's job hash would be: BullMQ's add script takes x-1 for a duplicate and
    // fails reading it (WRONGTYPE), half-way through the call that adds x-0, x-1 and x-2.
    await redis.set(`${n.nodeQueuePrefix}:pi-x:${jobIdFor('x-1')}`, 'not a job');
    const list = [placement('pi-x', 'x-0'), placement('pi-y', 'y-0'), placement('pi-x', 'x-1'), placement('pi-x', 'x-2')];
    const res = await d.placeNew(list);
    expect(res.retry).toEqual([]);
    expect(res.refused.map((r) => r.placement.data.request.request_id)).toEqual(['x-1']);
    expect(res.refused[0]!.reason).toMatch(/WRONGTYPE/);
    for (const [node, id] of [['pi-x', 'x-0'], ['pi-x', 'x-2'], ['pi-y', 'y-0']] as const) {
      expect(await (await Job.fromId(d.queue(node), jobIdFor(id)))?.getState(), id).toBe('prioritized');
    }
    await d.close();
  });

  it('tries a whole batch again when Redis is away, rather than refusing its jobs', async () => {
    const n = names(testPrefix('iso'));
    const away = await startRedis();
    const other = new Redis(away.port, '127.0.0.1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true, retryStrategy: () => null });
    other.on('error', () => undefined);
    defineBusCommands(other);
    const d = new Dispatcher({ redis: other, n, log: createLogger({ level: 'silent' }), addTimeoutMs: 1000 });
    await away.stop();
    const list = [placement('pi-b', 'away-0'), placement('pi-b', 'away-1')];
    const res = await d.placeNew(list).catch((err: Error) => ({ thrown: err.message }));
    // Either the owners could not be recorded (the batch is tried again whole) or the adds failed: never refused.
    if ('thrown' in res) expect(res.thrown).toBeTruthy();
    else {
      expect(res.refused).toEqual([]);
      expect(res.retry).toHaveLength(2);
    }
    await d.close();
    other.disconnect();
  });
});
