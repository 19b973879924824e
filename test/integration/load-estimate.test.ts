/**
 * Estimating a cold load of a model a node never loaded (SPEC.md section 6), end to end with a
 * real Redis, worker, bridge and the Ollama simulator over HTTP: the worker publishes the model
 * sizes `/api/tags` gives (`installed_sizes_mb`), the bridge learns the node's load rate from a
 * real cold load, and estimates another model there at its size over that rate.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRouterConfig } from '../../src/config/router.js';
import { loadWorkerConfig } from '../../src/config/worker.js';
import { validateHealth } from '../../src/contracts/index.js';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { silentLogger } from '../../src/lib/logger.js';
import { names } from '../../src/lib/names.js';
import { createBridge, type BridgeHandle } from '../../src/router/bridge.js';
import { startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';
import { createWorker } from '../../src/worker/worker.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';
import { finalOn, until } from '../helpers/worker-harness.js';

let server: RedisServer;
let redis: Redis;
let sim: SimulatorHandle;
let bridge: BridgeHandle;
const closers: Array<() => Promise<void>> = [];
const prefix = testPrefix('sizes');
const n = names(prefix);
/** Far from any size / rate this node can give, so the two cannot be confused. */
const DEFAULT_LOAD_MS = 600_000;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1');
  // A Pi 5 loading from a 200 MB/s disk, nothing loaded, at 10x speed (durations are reported
  // in simulated time, as a real Pi would report them).
  sim = await startSimulator({ profile: 'pi5-8g', installed: ['gemma3:1b', 'llama3.2:3b'], loaded: [], storage: 200_000_000, speed: 10 });
  const worker = await createWorker(
    loadWorkerConfig({
      flags: { 'node-id': 'pi-8g', 'redis-addr': server.addr, 'stream-prefix': prefix, 'ollama-host': sim.url, 'http-port': '0', 'http-addr': '127.0.0.1', concurrency: '1', 'heartbeat-interval': '200ms' },
      env: {},
    }),
    { log: silentLogger },
  );
  closers.push(() => worker.close());
  bridge = await createBridge(
    loadRouterConfig({
      flags: {
        'redis-addr': server.addr,
        'stream-prefix': prefix,
        'http-port': '0',
        'http-addr': '127.0.0.1',
        'consumer-name': 'sizes-bridge',
        routing: 'balanced',
        'default-load-time': `${DEFAULT_LOAD_MS}ms`,
      },
      env: {},
    }),
    { log: silentLogger, refreshMs: 100 },
  );
  closers.push(() => bridge.close());
}, 60_000);

afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  await sim?.close();
  redis?.disconnect();
  await server?.stop();
});

describe('load time of a model a node never loaded', () => {
  it('is the size the worker publishes over the load rate the bridge learned on that node', async () => {
    // What Ollama (the simulator, over HTTP) says the models weigh.
    const tags = (await (await fetch(`${sim.url}/api/tags`)).json()) as { models: { name: string; size: number }[] };
    const want = Object.fromEntries(tags.models.map((m) => [m.name, Math.round(m.size / 1e6)]));
    expect(Object.keys(want).sort()).toEqual(['gemma3:1b', 'llama3.2:3b']);
    expect(want['gemma3:1b']).toBeGreaterThan(0);
    expect(want['llama3.2:3b']).toBeGreaterThan(want['gemma3:1b']!);

    // The worker publishes them in its health document, which the schema accepts.
    const doc = await until(async () => {
      const raw = await redis.hget(n.health, 'pi-8g');
      const d = raw === null ? undefined : (JSON.parse(raw) as Record<string, unknown>);
      return d?.['installed_sizes_mb'] !== undefined ? d : undefined;
    }, 30_000, 'a health document with installed_sizes_mb');
    expect(doc['installed_sizes_mb']).toEqual(want);
    expect(validateHealth(doc).ok).toBe(true);
    // ... and /nodes shows them as published.
    const nodes = await until(async () => {
      const body = (await (await fetch(`http://127.0.0.1:${bridge.httpPort}/nodes`)).json()) as unknown;
      const list = Array.isArray(body) ? body : ((body as { nodes?: unknown[] }).nodes ?? []);
      return (list as Record<string, unknown>[]).find((x) => x['node_id'] === 'pi-8g' && x['installed_sizes_mb'] !== undefined);
    }, 30_000, 'pi-8g in /nodes with its sizes');
    expect(nodes['installed_sizes_mb']).toEqual(want);

    // Before any load, nothing is known about the node: the flag's default.
    await bridge.refresh();
    expect(bridge.costs().loadMs('pi-8g', 'llama3.2:3b')).toBe(DEFAULT_LOAD_MS);
    expect(bridge.costs().loadRateMbps('pi-8g')).toBeUndefined();

    // One request for gemma3:1b: a real cold load on the node, reported as load_duration.
    await redis.xadd(n.requests, '*', 'data', JSON.stringify({ request_id: 'cold-1', model: 'gemma3:1b', prompt: 'Say hi.', options: { num_predict: 4 } }));
    const final = (await finalOn(redis, n.responses, 'cold-1', 60_000)) as unknown as InferenceResponse;
    expect(final.error).toBeUndefined();
    const loadMs = final.load_duration_ms;
    expect(typeof loadMs).toBe('number');
    // 815 MB at 200 MB/s: about 4 s of simulated time, a cold load beyond doubt.
    expect(loadMs!).toBeGreaterThan(1000);

    // The bridge learns the node's rate from it, with the size the worker published (the
    // response itself carries no size).
    const rate = await until(async () => {
      await bridge.refresh();
      return bridge.costs().loadRateMbps('pi-8g');
    }, 30_000, "the bridge to learn pi-8g's load rate");
    expect(rate).toBeCloseTo(want['gemma3:1b']! / (loadMs! / 1000), 6);

    // llama3.2:3b was never loaded anywhere: its size over pi-8g's rate, not the default.
    const estimate = bridge.costs().loadMs('pi-8g', 'llama3.2:3b');
    expect(estimate).toBeCloseTo((want['llama3.2:3b']! / rate) * 1000, 6);
    expect(estimate).toBeCloseTo((loadMs! * want['llama3.2:3b']!) / want['gemma3:1b']!, 6);
    expect(estimate).toBeLessThan(DEFAULT_LOAD_MS / 10);
    // A node with no learned rate still falls back to the flag's default.
    expect(bridge.costs().loadMs('pi-other', 'llama3.2:3b')).toBe(DEFAULT_LOAD_MS);
  }, 120_000);
});
