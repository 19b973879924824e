/**
 * The job the bridge's RAM relief sends a node over its RAM limit (src/router/relief.ts): an
 * empty prompt with keep_alive 0, run by a real worker against the Ollama simulator (a Pi 5
 * 8 GB at speed 100) over real HTTP: the model is unloaded and the job answered.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { names } from '../../src/lib/names.js';
import { startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';
import { createWorker, type WorkerHandle } from '../../src/worker/worker.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';
import { enqueue, finalOn, nodeQueue, workerConfig } from '../helpers/worker-harness.js';

let server: RedisServer;
let redis: Redis;
let sim: SimulatorHandle;
let worker: WorkerHandle;
const n = names(testPrefix('unload'));

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1');
  sim = await startSimulator({ profile: 'pi5-8g', speed: 100, responseTokens: [4, 4] });
  worker = await createWorker(workerConfig({ redisAddr: server.addr, ollamaUrl: sim.url, prefix: n.prefix, flags: { concurrency: '1' } }));
});
afterAll(async () => {
  await worker?.close();
  await sim?.close();
  redis?.disconnect();
  await server?.stop();
});

const loaded = async (): Promise<string[]> => ((await (await fetch(`${sim.url}/api/ps`)).json()) as { models: { name: string }[] }).models.map((m) => m.name);

describe('an unload job on a worker', () => {
  it('unloads the model from Ollama and is answered without generating', async () => {
    const queue = nodeQueue(server.addr, n, 'pi-8g');
    try {
      await enqueue(redis, queue, n, { request_id: 'warm-up', model: 'gemma3:1b', prompt: 'p' });
      await finalOn(redis, n.responses, 'warm-up', 15_000);
      expect(await loaded()).toEqual(['gemma3:1b']);
      await enqueue(redis, queue, n, { request_id: 'orion-unload-1', model: 'gemma3:1b', prompt: '', keep_alive: '0s', source: 'orion-unload' });
      const answer = await finalOn(redis, n.responses, 'orion-unload-1', 15_000);
      expect(answer).toMatchObject({ done: true, node_id: 'pi-8g' });
      expect(answer['eval_count'] ?? 0).toBe(0);
      expect(await loaded()).toEqual([]);
    } finally {
      await queue.close();
    }
  });
});
