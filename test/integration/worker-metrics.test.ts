/**
 * The worker's Prometheus metrics that say what happened on the node: cold loads counted one by
 * one, timeouts it answers where the dashboard's timeouts panel finds them, and no temperature
 * at all from a node without a sensor. Against the Ollama simulator
 * (a Pi 5 8 GB at speed 100, gemma3:1b not loaded) over real HTTP and a real Redis.
 */
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { names } from '../../src/lib/names.js';
import { startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';
import { createWorker, type WorkerHandle } from '../../src/worker/worker.js';
import { createWorkerMetrics } from '../../src/worker/metrics.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';
import { enqueue, finalOn, fixtureNode, nodeQueue, workerConfig } from '../helpers/worker-harness.js';

let server: RedisServer;
let redis: Redis;
let sim: SimulatorHandle;
let worker: WorkerHandle;
const prefix = testPrefix('metrics');
const n = names(prefix);

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1');
  sim = await startSimulator({ profile: 'pi5-8g', speed: 100, responseTokens: [4, 4] });
  const root = fixtureNode('no-sensor');
  worker = await createWorker(workerConfig({ redisAddr: server.addr, ollamaUrl: sim.url, prefix, flags: { 'proc-root': root, 'sys-root': root, concurrency: '1' } }));
});
afterAll(async () => {
  await worker?.close();
  await sim?.close();
  redis?.disconnect();
  await server?.stop();
});

const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${worker.httpPort}/metrics`)).text();

describe('worker metrics', () => {
  it('count a cold load once, and not the warm answer after it', async () => {
    const queue = nodeQueue(server.addr, n, 'pi-8g');
    try {
      await enqueue(redis, queue, n, { request_id: 'cold', model: 'gemma3:1b', prompt: 'p' });
      const cold = await finalOn(redis, n.responses, 'cold', 15_000);
      expect(cold['load_duration_ms']).toBeGreaterThan(1000); // 815 MB at 85 MB/s: about 9.6 s of Pi time
      await enqueue(redis, queue, n, { request_id: 'warm', model: 'gemma3:1b', prompt: 'p' });
      const warm = await finalOn(redis, n.responses, 'warm', 15_000);
      expect(warm['load_duration_ms']).toBeLessThan(1000);
    } finally {
      await queue.close();
    }
    const text = await metrics();
    expect(text).toMatch(/^orion_worker_cold_loads_total\{model="gemma3:1b",node="pi-8g"\} 1$/m);
    expect(text).toMatch(/^orion_worker_ollama_load_duration_seconds_count\{node="pi-8g"\} 2$/m);
  });

  it('count a timeout it answers under code "timeout", the series the timeouts panel sums', async () => {
    const queue = nodeQueue(server.addr, n, 'pi-8g');
    try {
      await enqueue(redis, queue, n, { request_id: 'late', model: 'gemma3:1b', prompt: 'p', timeout_ms: 1000 }, { deadline: Date.now() - 1 });
      expect(await finalOn(redis, n.responses, 'late', 15_000)).toMatchObject({ error: { code: 'timeout' }, node_id: 'pi-8g' });
    } finally {
      await queue.close();
    }
    expect(await metrics()).toMatch(/^orion_worker_jobs_total\{outcome="error",code="timeout",node="pi-8g"\} 1$/m);
    const dashboard = JSON.parse(readFileSync(new URL('../../dashboards/orion-inference.json', import.meta.url), 'utf8')) as {
      panels: { title: string; targets?: { expr: string; legendFormat?: string }[] }[];
    };
    const panel = dashboard.panels.find((p) => p.title === 'Re-routes and timeouts / s');
    const byWorkers = panel?.targets?.find((t) => t.legendFormat === 'timeouts answered by workers');
    expect(byWorkers?.expr).toBe('sum(rate(orion_worker_jobs_total{code="timeout"}[5m]))');
  });

  it('export no temperature sample from a node without a sensor (only the help and type lines)', async () => {
    const text = await metrics();
    expect(text).toContain('# TYPE orion_worker_node_temp_celsius gauge');
    expect(text).not.toMatch(/^orion_worker_node_temp_celsius[{ ]/m);
    expect(text).toMatch(/^orion_worker_node_ram_percent\{node="pi-8g"\} \d/m);
  });

  it('export the temperature while there is one, and none once the sensor is gone', async () => {
    const m = createWorkerMetrics('pi-x');
    m.temp.set(61.5);
    expect(await m.registry.metrics()).toMatch(/^orion_worker_node_temp_celsius\{sensor="thermal_zone0",node="pi-x"\} 61.5$/m);
    m.temp.reset();
    expect(await m.registry.metrics()).not.toMatch(/^orion_worker_node_temp_celsius[{ ]/m);
  });
});
