/**
 * SPEC.md section 9 on the bus, with a real Redis, bridge, worker and simulator: cancellation
 * (before placement and during generation: answered `cancelled`, the Ollama call aborted, not
 * retried, not dead-lettered) and embedding requests (`input` in, `embeddings` out).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRouterConfig } from '../../src/config/router.js';
import { loadWorkerConfig } from '../../src/config/worker.js';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { silentLogger } from '../../src/lib/logger.js';
import { names } from '../../src/lib/names.js';
import { createBridge } from '../../src/router/bridge.js';
import { startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';
import { createWorker } from '../../src/worker/worker.js';
import { embeddingsFromNode } from '../helpers/embeddings.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

let server: RedisServer;
let redis: Redis;
let sim: SimulatorHandle;
const closers: Array<() => Promise<void>> = [];
const prefix = testPrefix('cancel');
const n = names(prefix);

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1');
  // Speed 2: a long answer takes many seconds, so a cancel lands mid-generation.
  sim = await startSimulator({ profile: 'pi5-8g', loaded: ['gemma3:1b'], speed: 2 });
  const worker = await createWorker(
    loadWorkerConfig({
      flags: { 'node-id': 'pi-8g', 'redis-addr': server.addr, 'stream-prefix': prefix, 'ollama-host': sim.url, 'http-port': '0', concurrency: '1', 'heartbeat-interval': '200ms' },
      env: {},
    }),
    { log: silentLogger },
  );
  closers.push(() => worker.close());
  const bridge = await createBridge(
    loadRouterConfig({ flags: { 'redis-addr': server.addr, 'stream-prefix': prefix, 'http-port': '0', 'consumer-name': 'cancel-bridge' }, env: {} }),
    { log: silentLogger, refreshMs: 200 },
  );
  closers.push(() => bridge.close());
  for (let i = 0; i < 100 && (await redis.get(n.healthKey('pi-8g'))) === null; i++) await new Promise((r) => setTimeout(r, 100));
});

afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  await sim?.close();
  redis?.disconnect();
  await server?.stop();
});

/** Every document on a reply stream, waiting up to `ms` for the final one. */
async function readAll(stream: string, ms = 20_000): Promise<InferenceResponse[]> {
  const docs: InferenceResponse[] = [];
  let last = '0';
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const res = (await redis.xread('COUNT', 100, 'BLOCK', 500, 'STREAMS', stream, last)) as [string, [string, string[]][]][] | null;
    for (const [id, fields] of res?.[0]?.[1] ?? []) {
      last = id;
      const doc = JSON.parse(fields[1] ?? '{}') as InferenceResponse;
      docs.push(doc);
      if (doc.done) return docs;
    }
  }
  throw new Error(`no final answer on ${stream} within ${ms} ms (got ${docs.length} partials)`);
}

describe('cancellation on the bus', () => {
  it('stops a running generation on the node and answers cancelled, without retry or dead letter', async () => {
    const reply = `${n.responses}:c1`;
    const abortedBefore = sim.node.counters().aborted;
    await redis.xadd(n.requests, '*', 'data', JSON.stringify({ request_id: 'c1', model: 'gemma3:1b', prompt: 'Tell a long story.', stream: true, options: { num_predict: 5000 }, reply_to: reply }));
    // Wait for the first partial: the generation is running on the node.
    const first = (await redis.xread('BLOCK', 15_000, 'STREAMS', reply, '0')) as unknown[] | null;
    expect(first).not.toBeNull();
    await redis.set(n.cancelKey('c1'), '1', 'PX', 60_000);
    const docs = await readAll(reply);
    const final = docs[docs.length - 1]!;
    expect(final.error?.code).toBe('cancelled');
    expect(final.attempt).toBe(1);
    expect(final.node_id).toBe('pi-8g');
    for (let i = 0; i < 50 && sim.node.counters().aborted === abortedBefore; i++) await new Promise((r) => setTimeout(r, 100));
    expect(sim.node.counters().aborted).toBe(abortedBefore + 1);
    expect(await redis.xlen(n.deadletter)).toBe(0);
  });

  it('never places a request cancelled before the bridge reads it', async () => {
    const reply = `${n.responses}:c2`;
    const before = sim.node.counters().requests;
    await redis.set(n.cancelKey('c2'), '1', 'PX', 60_000);
    await redis.xadd(n.requests, '*', 'data', JSON.stringify({ request_id: 'c2', model: 'gemma3:1b', prompt: 'hello', reply_to: reply }));
    const [final] = await readAll(reply);
    expect(final).toMatchObject({ request_id: 'c2', done: true, error: { code: 'cancelled' } });
    expect(final!.node_id).toBeUndefined();
    expect(sim.node.counters().requests).toBe(before);
    expect(await redis.xlen(n.deadletter)).toBe(0);
  });
});

describe('embedding requests', () => {
  it('are routed like any request and answered with one vector per input', async () => {
    const reply = `${n.responses}:e1`;
    await redis.xadd(n.requests, '*', 'data', JSON.stringify({ request_id: 'e1', model: 'gemma3:1b', input: ['left knee', 'right knee'], reply_to: reply }));
    const [final] = await readAll(reply);
    expect(final).toMatchObject({ request_id: 'e1', done: true, node_id: 'pi-8g', attempt: 1 });
    expect(final!.error).toBeUndefined();
    expect(final!.embeddings).toEqual(await embeddingsFromNode(sim.url, 'gemma3:1b', ['left knee', 'right knee']));
    expect(final!.response).toBeUndefined();
    expect(final!.prompt_eval_count).toBeGreaterThan(0);
  });
});
