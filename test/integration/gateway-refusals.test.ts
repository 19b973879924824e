/**
 * What the gateway refuses before anything reaches the bus, from the health registry in a real
 * Redis (written here as workers write it): an unknown model is 404 and a model no eligible node
 * can serve now is 503 with Retry-After, each in its API's shape; nothing is sent on the bus.
 * Also its own endpoints: /health, /metrics, and 503 while closing.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadGatewayConfig } from '../../src/config/gateway.js';
import { createGateway, type GatewayHandle } from '../../src/gateway/gateway.js';
import { silentLogger } from '../../src/lib/logger.js';
import { names } from '../../src/lib/names.js';
import { rfc3339 } from '../../src/lib/time.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

let server: RedisServer;
let redis: Redis;
let gw: GatewayHandle;
let url: string;
const prefix = testPrefix('gwref');
const n = names(prefix);

/** A node's health as a worker publishes it, with its TTL key. */
async function publish(id: string, doc: Record<string, unknown>): Promise<void> {
  const full = { node_id: id, cpu_percent: 5, ram_percent: 40, temp_celsius: null, available: true, last_seen: rfc3339(), ...doc };
  await redis.hset(n.health, id, JSON.stringify(full));
  await redis.set(n.healthKey(id), JSON.stringify(full), 'PX', 60_000);
}

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.port, '127.0.0.1');
  // pi-hot has the model but is too hot; pi-ok is eligible but has only another model.
  await publish('pi-hot', { temp_celsius: 82, models: ['gemma3:1b'], installed_models: ['gemma3:1b'] });
  await publish('pi-ok', { models: [], installed_models: ['qwen2.5:0.5b'] });
  gw = await createGateway(loadGatewayConfig({ flags: { 'redis-addr': server.addr, 'stream-prefix': prefix, 'http-port': '0', 'http-addr': '127.0.0.1' }, env: {} }), { log: silentLogger, refreshMs: 100 });
  url = `http://127.0.0.1:${gw.port}`;
});

afterAll(async () => {
  await gw?.close();
  redis?.disconnect();
  await server?.stop();
});

const post = (path: string, body: unknown): Promise<Response> => fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('the gateway refuses what no node can serve', () => {
  it('answers a model no eligible node has 503 with Retry-After, in both shapes', async () => {
    const a = await post('/v1/chat/completions', { model: 'gemma3:1b', messages: [{ role: 'user', content: 'hi' }] });
    expect(a.status).toBe(503);
    expect(a.headers.get('retry-after')).toBe('5');
    expect(((await a.json()) as { error: { code: string; type: string } }).error).toMatchObject({ code: 'no_healthy_node', type: 'server_error' });
    const b = await post('/api/generate', { model: 'gemma3:1b', prompt: 'hi' });
    expect(b.status).toBe(503);
    expect(b.headers.get('retry-after')).toBe('5');
    expect(typeof ((await b.json()) as { error: string }).error).toBe('string');
  });

  it('answers a model no node has 404, in both shapes', async () => {
    const a = await post('/v1/embeddings', { model: 'mistral:7b', input: 'x' });
    expect(a.status).toBe(404);
    expect(((await a.json()) as { error: { code: string } }).error.code).toBe('model_not_found');
    const b = await post('/api/chat', { model: 'mistral:7b', messages: [] });
    expect(b.status).toBe(404);
    expect(await b.json()).toEqual({ error: "model 'mistral:7b' not found" });
  });

  it('sends nothing on the bus for either', async () => {
    expect(await redis.exists(n.requests)).toBe(0);
  });

  it('lists only models of eligible nodes in /v1/models, and every fresh node in /api/tags', async () => {
    const v1 = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(v1.data.map((m) => m.id)).toEqual(['qwen2.5:0.5b']);
    const tags = (await (await fetch(`${url}/api/tags`)).json()) as { models: { name: string }[] };
    expect(tags.models.map((m) => m.name)).toEqual(['gemma3:1b', 'qwen2.5:0.5b']);
    const ps = (await (await fetch(`${url}/api/ps`)).json()) as { models: { name: string; node: string }[] };
    expect(ps.models).toMatchObject([{ name: 'gemma3:1b', node: 'pi-hot' }]);
  });

  it('answers unknown paths 404 in each shape, and bad JSON 400', async () => {
    expect((await fetch(`${url}/v1/nothing`)).status).toBe(404);
    expect(await (await fetch(`${url}/api/nothing`)).json()).toEqual({ error: '404 page not found' });
    const bad = await fetch(`${url}/api/chat`, { method: 'POST', body: '{not json' });
    expect(bad.status).toBe(400);
  });

  it('routes by method and path: HEAD / to the Ollama API, /v1/models/{id} with its id decoded, GET /api/chat nowhere', async () => {
    const head = await fetch(`${url}/`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    const one = await fetch(`${url}/v1/models/qwen2.5%3A0.5b`);
    expect(one.status).toBe(200);
    expect(await one.json()).toMatchObject({ id: 'qwen2.5:0.5b', object: 'model' });
    expect((await fetch(`${url}/api/chat`)).status).toBe(404);
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toMatch(/orion_gateway_requests_total\{api="ollama",endpoint="\/",status="200"\} 1/);
    expect(text).toMatch(/orion_gateway_requests_total\{api="openai",endpoint="\/v1\/models\/\{id\}",status="200"\} 1/);
  });

  it('exposes /health and its metrics', async () => {
    expect(await (await fetch(`${url}/health`)).json()).toMatchObject({ status: 'ok', redis: true, eligible_nodes: 1 });
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toMatch(/orion_gateway_requests_total\{api="openai",endpoint="\/v1\/chat\/completions",status="503"\} 1/);
  });

  it('stops taking calls when closed', async () => {
    await gw.close();
    await gw.close();
    await expect(fetch(`${url}/api/tags`)).rejects.toThrow();
  });
});
