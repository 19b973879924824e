import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { harness, until, type Harness } from './bridge.harness.js';
import { createLogger } from '../../src/lib/logger.js';

let h: Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h.stop();
});

const json = async (r: Response): Promise<unknown> => r.json();

describe('the bridge answers its endpoints as the guide shows them', () => {
  it('GET /health is the guide\'s document, then what the bridge sees of Redis', async () => {
    const s = h.scope();
    const b = await s.start();
    const r = await s.get('/health', b);
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text.startsWith('{"status":"ok","service":"orion-inference-router","version":"0.1.0",')).toBe(true);
    const body = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['status', 'service', 'version', 'redis']);
    expect(body['redis']).toMatchObject({ maxmemory_policy: 'noeviction', evicting: false, taking_work: true });
    expect(Math.abs((body['redis'] as { clock_offset_ms: number }).clock_offset_ms)).toBeLessThan(1000);
  });

  it('GET /stats starts with the guide\'s four counters of this bridge, then the others and the cluster totals', async () => {
    const s = h.scope();
    await s.node('n1', { models: ['gemma3:1b'] });
    const b = await s.start();
    await s.send({ request_id: 's1', model: 'gemma3:1b', prompt: 'x' });
    await s.send({ request_id: 's2', model: 'llama3.2:3b', prompt: 'x' });
    await s.send('not json');
    await until(() => b.stats().total_routed === 2 && b.stats().errors === 1);
    const body = await until(async () => {
      const x = (await json(await s.get('/stats', b))) as Record<string, unknown>;
      return (x['cluster'] as Record<string, number> | null)?.['total_routed'] === 2 && x;
    });
    expect(Object.keys(body).slice(0, 4)).toEqual(['total_routed', 'sticky_hits', 'fallbacks', 'errors']);
    expect(body).toMatchObject({ total_routed: 2, sticky_hits: 1, fallbacks: 1, errors: 1, consumer: 'bridge-1', waiting: 0, timeouts: 0, rerouted: 0, failed_jobs: 0 });
    expect(body['cluster']).toMatchObject({ total_routed: 2, sticky_hits: 1, fallbacks: 1, errors: 1 });
    expect(body['bridges']).toMatchObject({ 'bridge-1': { total_routed: 2, sticky_hits: 1, fallbacks: 1, errors: 1 } });
  });

  it('GET /nodes lists eligible nodes first in routing order, then the others with their excluded_reason', async () => {
    const s = h.scope();
    await s.node('z-eligible', { ram_percent: 20 });
    await s.node('a-eligible', { ram_percent: 60 });
    await s.node('hot', { temp_celsius: 90 });
    await s.node('full', { ram_percent: 95 });
    await s.node('off', { available: false, reason: 'ollama unreachable' });
    await s.node('stale', { ttl: false });
    await h.redis.hset(s.n.health, 'garbled', '{not json');
    const b = await s.start();
    const nodes = (await json(await s.get('/nodes', b))) as Record<string, unknown>[];
    expect(nodes.map((x) => x['node_id'])).toEqual(['z-eligible', 'a-eligible', 'full', 'hot', 'off', 'stale']);
    expect(nodes.map((x) => x['excluded_reason'])).toEqual([undefined, undefined, 'ram', 'temperature', 'unavailable', 'stale']);
    expect(nodes.map((x) => x['eligible'])).toEqual([true, true, false, false, false, false]);
    // The health document as published, then eligible (and excluded_reason).
    const published = JSON.parse((await h.redis.hget(s.n.health, 'off'))!) as Record<string, unknown>;
    // Then what the bridge knows of the node's queue (SPEC.md section 6: more keys may follow).
    expect(Object.keys(nodes[4]!)).toEqual([...Object.keys(published), 'eligible', 'excluded_reason', 'queue_waiting', 'queue_running']);
    expect(nodes[4]).toEqual({ ...published, eligible: false, excluded_reason: 'unavailable', queue_waiting: 0, queue_running: 0 });
    expect(Object.keys(nodes[0]!).slice(0, 7)).toEqual(['node_id', 'cpu_percent', 'ram_percent', 'temp_celsius', 'models', 'available', 'last_seen']);
  });

  it('drops a node silent for over 24 hours from the registry', async () => {
    const s = h.scope();
    await s.node('ancient', { ttl: false, age_ms: 25 * 3600 * 1000 });
    await s.node('recent', { ttl: false, age_ms: 23 * 3600 * 1000 });
    const b = await s.start();
    const nodes = (await json(await s.get('/nodes', b))) as Record<string, unknown>[];
    expect(nodes.map((x) => x['node_id'])).toEqual(['recent']);
    expect(await h.redis.hexists(s.n.health, 'ancient')).toBe(0);
  });

  it('GET /metrics is Prometheus text with the orion_router_ metrics', async () => {
    const s = h.scope();
    await s.node('n1', { models: ['gemma3:1b'], temp_celsius: 61.5 });
    const b = await s.start();
    await s.send({ request_id: 'm1', model: 'gemma3:1b', prompt: 'x' });
    await until(() => b.stats().total_routed === 1);
    const r = await s.get('/metrics', b);
    expect(r.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await r.text();
    for (const name of [
      'orion_router_requests_routed_total{node="n1",routing="sticky"} 1',
      'orion_router_errors_total',
      'orion_router_queue_jobs{node="n1",state="waiting"} 1',
      'orion_router_node_temp_celsius{node="n1"} 61.5',
      'orion_router_node_ram_percent{node="n1"} 50',
      'orion_router_node_cpu_percent',
      'orion_router_node_loaded_models{node="n1"} 1',
      'orion_router_node_eligible{node="n1"} 1',
      'orion_router_dispatch_latency_seconds_bucket',
      'orion_router_waiting_requests 0',
      'orion_router_process_cpu_seconds_total',
    ]) {
      expect(text).toContain(name);
    }
  });

  it('answers 503 while closing', async () => {
    const s = h.scope();
    const b = await s.start();
    const url = `http://127.0.0.1:${b.httpPort}/health`;
    const closing = b.close();
    const r = await fetch(url).catch(() => undefined);
    if (r) expect(r.status).toBe(503);
    await closing;
    await b.close(); // twice is fine
  });
});

describe('Bull Board shows every node queue', () => {
  it('lists the node queues, read-only without admin credentials', async () => {
    const s = h.scope();
    await s.node('pi-8g');
    await s.node('pi-16g');
    const b = await s.start();
    const r = await s.get('/admin/queues/api/queues', b);
    expect(r.status).toBe(200);
    const body = (await r.json()) as { queues: { name: string; displayName?: string; readOnlyMode: boolean }[] };
    const names = body.queues.map((q) => q.name);
    // Cards show the node id, not the long queue name.
    expect(body.queues.find((q) => q.name === `${s.n.nodeQueuePrefix}:pi-8g`)?.displayName).toBe('pi-8g');
    expect(body.queues.find((q) => q.name === `${s.n.heartbeatQueuePrefix}:pi-8g`)?.displayName).toBe('pi-8g heartbeat');
    expect(names).toEqual(expect.arrayContaining([`${s.n.nodeQueuePrefix}:pi-8g`, `${s.n.nodeQueuePrefix}:pi-16g`, `${s.n.heartbeatQueuePrefix}:pi-8g`]));
    expect(body.queues.every((q) => q.readOnlyMode)).toBe(true);
    const page = await s.get('/admin/queues', b);
    expect(page.status).toBe(200);
    const write = await s.get(`/admin/queues/api/queues/${encodeURIComponent(`${s.n.nodeQueuePrefix}:pi-8g`)}/pause`, b, { method: 'PUT' });
    expect(write.status).toBe(405);
  });

  it('adds the queue of a node that appears later', async () => {
    const s = h.scope();
    const b = await s.start();
    await s.node('late');
    await until(async () => {
      const body = (await (await s.get('/admin/queues/api/queues', b)).json()) as { queues: { name: string }[] };
      return body.queues.some((q) => q.name === `${s.n.nodeQueuePrefix}:late`);
    });
  });

  it('with admin credentials, write actions need them (401 without, done with)', async () => {
    const s = h.scope();
    await s.node('n1');
    const lines: Record<string, unknown>[] = [];
    const b = await s.start({ 'admin-user': 'ops', 'admin-password': 's3cret' }, { log: createLogger({ level: 'info', sink: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) }) });
    const q = encodeURIComponent(`${s.n.nodeQueuePrefix}:n1`);
    const body = (await (await s.get('/admin/queues/api/queues', b)).json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(body.queues.find((x) => x.name === `${s.n.nodeQueuePrefix}:n1`)!.readOnlyMode).toBe(false);
    const none = await s.get(`/admin/queues/api/queues/${q}/pause`, b, { method: 'PUT' });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic /);
    const wrong = await s.get(`/admin/queues/api/queues/${q}/pause`, b, { method: 'PUT', headers: { authorization: `Basic ${Buffer.from('ops:nope').toString('base64')}` } });
    expect(wrong.status).toBe(401);
    const right = await s.get(`/admin/queues/api/queues/${q}/pause`, b, { method: 'PUT', headers: { authorization: `Basic ${Buffer.from('ops:s3cret').toString('base64')}` } });
    expect(right.status).toBeLessThan(300);
    expect(await s.queue('n1').isPaused()).toBe(true);
    // Every write is logged as an admin action, as structured JSON, never with the password.
    const actions = lines.filter((l) => l['admin_action'] === true);
    expect(actions.map((a) => [a['msg'], a['method'], a['user'], a['status']])).toEqual([
      ['admin action refused', 'PUT', null, 401],
      ['admin action refused', 'PUT', 'ops', 401],
      ['admin action', 'PUT', 'ops', right.status],
    ]);
    expect(actions[2]).toMatchObject({ level: 'info', path: `/admin/queues/api/queues/${q}/pause` });
    expect(JSON.stringify(lines)).not.toContain('s3cret');
  });

  it('takes exactly the configured user and password, a colon in the password included', async () => {
    const s = h.scope();
    await s.node('n1');
    const b = await s.start({ 'admin-user': 'ops', 'admin-password': 'pa:ss' });
    const pause = `/admin/queues/api/queues/${encodeURIComponent(`${s.n.nodeQueuePrefix}:n1`)}/pause`;
    const basic = (creds: string, scheme = 'Basic'): string => `${scheme} ${Buffer.from(creds).toString('base64')}`;
    const statusWith = async (authorization: string): Promise<number> => (await s.get(pause, b, { method: 'PUT', headers: { authorization } })).status;
    expect(await statusWith(basic('ops:pa:ss:x'))).toBe(401);
    expect(await statusWith(basic('ops:pa'))).toBe(401);
    expect(await statusWith(basic('other:pa:ss'))).toBe(401);
    expect(await statusWith('Bearer abc')).toBe(401);
    expect(await s.queue('n1').isPaused()).toBe(false);
    expect(await statusWith(basic('ops:pa:ss', 'basic'))).toBeLessThan(300);
    expect(await s.queue('n1').isPaused()).toBe(true);
  });
});
