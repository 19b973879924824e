import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRouterConfig } from '../../src/config/router.js';
import { loadWorkerConfig } from '../../src/config/worker.js';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { silentLogger } from '../../src/lib/logger.js';
import { names } from '../../src/lib/names.js';
import { createBridge, type BridgeHandle } from '../../src/router/bridge.js';
import { startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';
import { createLlamaEngine, DEFAULT_LLAMA_MODEL } from '../../src/simulator/llama/engine.js';
import { llamaAvailability } from '../../src/simulator/llama/runtime.js';
import { createWorker, type WorkerHandle } from '../../src/worker/worker.js';
import { requireBuilt } from '../helpers/built.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

const availability = await llamaAvailability();
if (!availability.available) console.warn(`llama engine tests skipped: ${availability.reason}`);

describe.skipIf(!availability.available)('the whole system on real llama.cpp inference', () => {
  let redis: RedisServer;
  let client: Redis;
  let sim: SimulatorHandle;
  let worker: WorkerHandle;
  let bridge: BridgeHandle;
  const prefix = testPrefix('llama');
  const n = names(prefix);

  beforeAll(async () => {
    redis = await startRedis();
    client = new Redis(redis.port, '127.0.0.1');
    sim = await startSimulator({ engine: await createLlamaEngine(), id: 'pi-llama' });
    worker = await createWorker(
      loadWorkerConfig({
        flags: { 'node-id': 'pi-llama', 'redis-addr': redis.addr, 'stream-prefix': prefix, 'ollama-host': sim.url, 'http-port': '0', concurrency: '1', 'heartbeat-interval': '200ms', 'log-level': 'silent' },
        env: {},
      }),
      { log: silentLogger },
    );
    bridge = await createBridge(
      loadRouterConfig({ flags: { 'redis-addr': redis.addr, 'stream-prefix': prefix, 'http-port': '0', 'consumer-name': 'llama-bridge' }, env: {} }),
      { log: silentLogger, refreshMs: 200 },
    );
  }, 60_000);
  afterAll(async () => {
    await bridge?.close();
    await worker?.close();
    await sim?.close();
    client?.disconnect();
    await redis?.stop();
  });

  async function ask(id: string, extra: Record<string, unknown>): Promise<{ final: InferenceResponse; partials: InferenceResponse[] }> {
    const replyTo = `${n.responses}:${id}`;
    await client.xadd(n.requests, '*', 'data', JSON.stringify({ request_id: id, model: DEFAULT_LLAMA_MODEL, reply_to: replyTo, ...extra }));
    const partials: InferenceResponse[] = [];
    let cursor = '0';
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      const res = (await client.xread('BLOCK', 1000, 'STREAMS', replyTo, cursor)) as [string, [string, string[]][]][] | null;
      for (const [entryId, fields] of res?.[0]?.[1] ?? []) {
        cursor = entryId;
        const doc = JSON.parse(fields[1]!) as InferenceResponse;
        if (doc.done) return { final: doc, partials };
        partials.push(doc);
      }
    }
    throw new Error(`no answer to ${id}`);
  }

  it('answers a prompt with text llama.cpp generated, real token counts and durations, streamed in order', async () => {
    const { final, partials } = await ask('l-1', { prompt: 'Hello ORION', stream: true, options: { num_predict: 12, seed: 3, temperature: 0 } });
    expect(final.error).toBeUndefined();
    expect(final).toMatchObject({ node_id: 'pi-llama', done: true, routing: 'fallback', attempt: 1 });
    expect(final.eval_count).toBeGreaterThan(0);
    expect(final.eval_count).toBeLessThanOrEqual(12);
    expect(final.eval_duration_ms).toBeGreaterThan(0);
    expect(final.prompt_eval_count).toBeGreaterThan(0);
    expect(partials.map((p) => p.response).join('')).toBe(final.response);
  });

  it('is deterministic for the same prompt and seed, sticky once the model is loaded, and chats too', async () => {
    const a = await ask('l-2', { prompt: 'Status of joint 3', options: { num_predict: 10, seed: 7, temperature: 0 } });
    const b = await ask('l-3', { prompt: 'Status of joint 3', options: { num_predict: 10, seed: 7, temperature: 0 } });
    expect(a.final.response).toBe(b.final.response);
    expect(b.final.routing).toBe('sticky');
    const chat = await ask('l-4', { messages: [{ role: 'user', content: 'Hi' }], options: { num_predict: 6, seed: 1 } });
    expect(chat.final.error).toBeUndefined();
    expect(chat.final.message?.role).toBe('assistant');
    expect(chat.final.eval_count).toBeGreaterThan(0);
  });

  const simBin = join(import.meta.dirname, '../../dist/src/bin/sim.js');
  it('runs from the simulator bin with --engine llama', async () => {
    requireBuilt(simBin);
    const child = spawn(process.execPath, [simBin, '--engine', 'llama', '--port', '0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once('exit', (code) => reject(new Error(`sim exited ${code}: ${out}`)));
        setTimeout(() => reject(new Error(`no url in: ${out}`)), 20_000);
      });
      const tags = (await (await fetch(`${url}/api/tags`)).json()) as { models: { name: string }[] };
      expect(tags.models.map((m) => m.name)).toContain(DEFAULT_LLAMA_MODEL);
      const gen = (await (await fetch(`${url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: DEFAULT_LLAMA_MODEL, prompt: 'x', stream: false, options: { num_predict: 4 } }) })).json()) as { done: boolean; eval_count: number };
      expect(gen.done).toBe(true);
      expect(gen.eval_count).toBeGreaterThan(0);
    } finally {
      child.kill('SIGTERM');
    }
  }, 30_000);
});
