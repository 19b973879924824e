/**
 * Bounded streams: the bridge trims from `{p}:requests` (and `{p}:reroute`) what every consumer
 * group has acknowledged, and nothing that is still pending or not delivered yet.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTER_GROUP } from '../../src/lib/names.js';
import { trimAcked } from '../../src/router/trim.js';
import { testPrefix } from '../helpers/redis.js';
import { harness, until, type Harness } from './bridge.harness.js';

let h: Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h.stop();
});

/** `count` entries added to a new stream; their ids in order. */
async function fill(stream: string, count: number): Promise<string[]> {
  const pipe = h.redis.pipeline();
  for (let i = 0; i < count; i++) pipe.xadd(stream, '*', 'data', `{"n":${i}}`);
  return ((await pipe.exec()) ?? []).map(([, id]) => id as string);
}

/** Read `count` entries as `consumer` of `group` (they become pending there). */
async function deliver(stream: string, group: string, count: number): Promise<void> {
  await h.redis.xreadgroup('GROUP', group, 'c1', 'COUNT', count, 'STREAMS', stream, '>');
}

const exists = async (stream: string, id: string): Promise<boolean> => (await h.redis.xrange(stream, id, id)).length === 1;

describe('trimming acknowledged entries', () => {
  it('removes what the group acknowledged, keeps every pending entry and everything not delivered yet', async () => {
    const stream = `${testPrefix('trim')}:requests`;
    const ids = await fill(stream, 1000);
    await h.redis.xgroup('CREATE', stream, ROUTER_GROUP, '0');
    await deliver(stream, ROUTER_GROUP, 800);
    // Entries 550 and 700 stay pending; the other 798 delivered ones are acknowledged.
    const pending = [ids[550]!, ids[700]!];
    await h.redis.xack(stream, ROUTER_GROUP, ...ids.slice(0, 800).filter((id) => !pending.includes(id)));

    const removed = await trimAcked(h.redis, stream);
    // Whole stream nodes (100 entries) below the oldest pending entry go: 0-499.
    expect(removed).toBe(500);
    expect(await h.redis.xlen(stream)).toBe(500);
    for (const id of pending) expect(await exists(stream, id), id).toBe(true);
    // Still pending, with their payload: a restarted bridge re-reads them whole.
    const again = (await h.redis.xreadgroup('GROUP', ROUTER_GROUP, 'c1', 'STREAMS', stream, '0')) as [string, [string, string[]][]][];
    expect(again[0]![1].map(([id, f]) => [id, f[0]])).toEqual(pending.map((id) => [id, 'data']));
    // Never delivered: all 200 kept.
    for (const id of ids.slice(800)) expect(await exists(stream, id)).toBe(true);

    // The pending ones acknowledged: trimmed up to the last delivered entry, never beyond.
    await h.redis.xack(stream, ROUTER_GROUP, ...pending);
    await trimAcked(h.redis, stream);
    expect(await h.redis.xlen(stream)).toBe(300);
    expect(await exists(stream, ids[800]!)).toBe(true);
  });

  it('keeps what a slower group has not acknowledged, and leaves a stream without groups alone', async () => {
    const stream = `${testPrefix('trim')}:requests`;
    const ids = await fill(stream, 500);
    expect(await trimAcked(h.redis, stream)).toBe(0);
    expect(await trimAcked(h.redis, `${stream}:none`)).toBe(0);
    await h.redis.xgroup('CREATE', stream, ROUTER_GROUP, '0');
    await h.redis.xgroup('CREATE', stream, 'audit', '0');
    await deliver(stream, ROUTER_GROUP, 500);
    await h.redis.xack(stream, ROUTER_GROUP, ...ids);
    await deliver(stream, 'audit', 250);
    await h.redis.xack(stream, 'audit', ...ids.slice(0, 250));
    expect(await trimAcked(h.redis, stream)).toBe(200);
    expect(await exists(stream, ids[249]!)).toBe(true);
  });

  it('runs in the bridge: requests held for lack of a node survive trimming, and go once placed and acknowledged', async () => {
    const s = h.scope('trim');
    const b = await s.start({}, { trimEveryMs: 100 });
    const ids: string[] = [];
    for (let i = 0; i < 250; i++) ids.push(await s.send({ request_id: `t-${i}`, model: 'gemma3:1b', prompt: 'x' }));
    await until(() => b.waiting() === 250, 5000, 'all held');
    // Several trims later (counted by Redis: XTRIM calls), every held entry is still in the stream.
    const trims = async (): Promise<number> => Number(/^cmdstat_xtrim:calls=(\d+)/m.exec(await h.redis.info('commandstats'))?.[1] ?? 0);
    const before = await trims();
    await until(async () => (await trims()) >= before + 3, 10_000, 'three more trim passes');
    expect(await h.redis.xlen(s.n.requests)).toBe(250);
    const [count] = (await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as [number];
    expect(count).toBe(250);

    await s.node('n1');
    await until(() => s.jobs('n1').then((j) => j.length === 250), 10_000, 'all placed');
    await until(async () => ((await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as [number])[0] === 0, 5000, 'all acknowledged');
    // Trimmed down to the last stream node (the entries from the last delivered one on stay).
    await until(async () => (await h.redis.xlen(s.n.requests)) <= 100, 5000, 'acknowledged entries trimmed');
    expect(await exists(s.n.requests, ids[249]!)).toBe(true);
  });
});
