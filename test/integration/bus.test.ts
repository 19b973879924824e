import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  claimRequest,
  deadlinesKey,
  defineBusCommands,
  errorResponse,
  parseClaim,
  publishFinal,
  publishPartial,
  setOwner,
} from '../../src/lib/bus.js';
import { names } from '../../src/lib/names.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1');
  defineBusCommands(redis);
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
});

async function claim(n: ReturnType<typeof names>, id: string, entry: string, replyTo: string) {
  const pipe = redis.pipeline();
  claimRequest(pipe, n, id, entry, replyTo, Date.now() + 60_000);
  const res = await pipe.exec();
  return parseClaim(res![0]![1] as [string]);
}

async function streamDocs(key: string): Promise<Record<string, unknown>[]> {
  const entries = await redis.xrange(key, '-', '+');
  return entries.map(([, f]) => JSON.parse(f[1]!) as Record<string, unknown>);
}

describe('the request record', () => {
  it('knows a new id, a re-read of the same entry, and a duplicate from another entry', async () => {
    const n = names(testPrefix('bus'));
    expect(await claim(n, 'a', '1-0', n.responses)).toEqual({ kind: 'new' });
    expect(await claim(n, 'a', '1-0', n.responses)).toEqual({ kind: 'same' });
    expect(await claim(n, 'a', '2-0', `${n.responses}:other`)).toEqual({ kind: 'waiting' });
    expect(await redis.zscore(deadlinesKey(n), n.requestKey('a'))).not.toBeNull();
    expect(await redis.ttl(n.requestKey('a'))).toBeGreaterThan(23 * 3600);
  });

  it('answers the first reply stream and every waiter once, and a later duplicate gets the stored final', async () => {
    const n = names(testPrefix('bus'));
    await claim(n, 'b', '1-0', n.responses);
    await claim(n, 'b', '2-0', `${n.responses}:late`);
    const final = { request_id: 'b', done: true, response: 'hi', created_at: '2026-01-01T00:00:00Z' };
    expect(await publishFinal(redis, n, n.responses, final)).toBe(true);
    expect(await publishFinal(redis, n, n.responses, final)).toBe(false);
    expect(await streamDocs(n.responses)).toEqual([final]);
    expect(await streamDocs(`${n.responses}:late`)).toEqual([final]);
    expect(await redis.zscore(deadlinesKey(n), n.requestKey('b'))).toBeNull();
    const again = await claim(n, 'b', '3-0', `${n.responses}:third`);
    expect(again.kind).toBe('done');
    expect(again.kind === 'done' && JSON.parse(again.final)).toEqual(final);
  });

  it('suppresses a final and partials from a node that no longer owns the job', async () => {
    const n = names(testPrefix('bus'));
    await claim(n, 'c', '1-0', n.responses);
    await setOwner(redis, n, 'c', 'pi-16g');
    const partial = { request_id: 'c', done: false, response: 'x', created_at: '2026-01-01T00:00:00Z' };
    expect(await publishPartial(redis, n, n.responses, partial, 'pi-8g')).toBe(false);
    expect(await publishFinal(redis, n, n.responses, errorResponse('c', 'timeout', 'late'), 'pi-8g')).toBe(false);
    expect(await publishPartial(redis, n, n.responses, partial, 'pi-16g')).toBe(true);
    expect(await publishFinal(redis, n, n.responses, errorResponse('c', 'timeout', 'late'), 'pi-16g')).toBe(true);
    expect(await publishPartial(redis, n, n.responses, partial, 'pi-16g')).toBe(false);
    const docs = await streamDocs(n.responses);
    expect(docs.map((d) => d['done'])).toEqual([false, true]);
  });
});
