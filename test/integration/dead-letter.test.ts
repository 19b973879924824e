/**
 * Writing a dead letter never fails for one bad document, on a real Redis: a request too deep
 * to serialise keeps a note instead, and the text of a refused deep request is kept as it came.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_REQUEST_DEPTH, parseRequestEntry } from '../../src/contracts/index.js';
import { deadLetter } from '../../src/lib/bus.js';
import { names } from '../../src/lib/names.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

const n = names(testPrefix('dl'));
const nested = (depth: number): string => '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);

let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1');
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

/** The newest dead letter, parsed. */
async function lastDeadLetter(): Promise<Record<string, unknown>> {
  const [entry] = await redis.xrevrange(n.deadletter, '+', '-', 'COUNT', 1);
  const fields = entry?.[1] ?? [];
  return JSON.parse(fields[fields.indexOf('data') + 1] ?? 'null') as Record<string, unknown>;
}

describe('a dead letter is always written', () => {
  it('keeps a note instead of a request too deep to serialise', async () => {
    const deep = JSON.parse(nested(10_000)) as unknown;
    await deadLetter(redis, n, { reason: 'r', request_id: 'x', request: deep });
    const doc = await lastDeadLetter();
    expect(doc).toMatchObject({ reason: 'r', request_id: 'x' });
    expect(doc['request']).toMatch(/not serialisable/);
  });

  it('keeps the text of a request refused for nesting over 64 levels', async () => {
    const text = `{"request_id":"deep","model":"m","prompt":"p","metadata":${nested(10_000 - 1)}}`;
    const p = parseRequestEntry(['data', text], n);
    expect(p.ok).toBe(false);
    if (p.ok) return;
    expect(p.reason).toMatch(new RegExp(`more than ${MAX_REQUEST_DEPTH} levels`));
    await deadLetter(redis, n, { reason: p.reason, request: p.original });
    const doc = await lastDeadLetter();
    expect(doc['reason']).toBe(p.reason);
    expect(doc['request']).toBe(p.original);
  });
});
