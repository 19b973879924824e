/**
 * `--routing balanced` at the bridge end, on a real Redis with nodes written into the registry
 * (no workers: jobs stay where the bridge puts them, so placements can be read off the queues).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { jobIdFor } from '../../src/lib/names.js';
import { RELIEF_EVERY_MS } from '../../src/router/moves.js';
import { pickNode, toNodeView, eligibleInOrder } from '../../src/router/routing.js';
import { harness, until, type Harness, type Scope } from './bridge.harness.js';
import { seededRandom as rng } from '../../src/lib/random.js';

let h: Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h.stop();
});

const BALANCED = { routing: 'balanced', 'default-answer-time': '2s', 'default-load-time': '10s' };
const req = (id: string, extra: Record<string, unknown> = {}) => ({ request_id: id, model: 'gemma3:1b', prompt: 'hi', ...extra });

/** How many jobs each node's queue holds. */
async function spread(s: Scope, nodes: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = Object.fromEntries(nodes.map((id) => [id, 0]));
  for (const id of nodes) out[id] = (await s.jobs(id)).length;
  return out;
}


describe('balanced routing at the bridge', () => {
  it('chooses exactly as the guide on an idle cluster (random clusters, one request each)', async () => {
    const r = rng(20261205);
    const models = ['gemma3:1b', 'llama3.2:3b', 'qwen2.5:0.5b'];
    for (let round = 0; round < 10; round++) {
      const s = h.scope(`idle${round}`);
      const docs: NodeHealth[] = [];
      for (let i = 0; i < 2 + Math.floor(r() * 4); i++) {
        const loaded = models.filter(() => r() < 0.3);
        const installed = [...new Set([...loaded, ...models.filter(() => r() < 0.6)])];
        const doc = { node_id: `n${i}`, ram_percent: Math.round(r() * 8) * 10, models: loaded, installed_models: installed, cpu_percent: 10, temp_celsius: 50, available: true, last_seen: new Date().toISOString() };
        docs.push(doc);
        await s.node(doc.node_id, { ram_percent: doc.ram_percent, models: loaded, installed_models: installed });
      }
      const model = models[Math.floor(r() * models.length)]!;
      const want = pickNode(model, eligibleInOrder(docs.map((d) => toNodeView(d, true, Date.now(), { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 }))));
      const b = await s.start(BALANCED);
      await s.send(req(`idle-${round}`, { model }));
      if (want.kind !== 'routed') {
        await until(() => s.replies().then((a) => a.length === 1), 5000, 'the refusal');
        expect((await s.replies())[0]).toMatchObject({ error: { code: want.kind } });
      } else {
        const where = await until(async () => {
          for (const d of docs) if ((await s.jobs(d.node_id)).length > 0) return d.node_id;
          return undefined;
        }, 5000, 'the placement');
        expect(where, `round ${round}: ${model} over ${JSON.stringify(docs.map((d) => [d.node_id, d.ram_percent, d.models, d.installed_models]))}`).toBe(want.node.health.node_id);
        expect(b.stats().spills).toBe(0);
      }
      await b.close();
    }
  });

  it('spreads a burst over nodes that all have the model loaded (the guide puts it all on one)', async () => {
    const nodes = ['pi-a', 'pi-b', 'pi-c'];
    const burst = async (routing: string): Promise<Record<string, number>> => {
      const s = h.scope(`burst-${routing}`);
      for (const [i, id] of nodes.entries()) await s.node(id, { ram_percent: 40 + i, models: ['gemma3:1b'], concurrency: 1 });
      const b = await s.start({ ...BALANCED, routing });
      const pipe = h.redis.pipeline();
      for (let i = 0; i < 30; i++) pipe.xadd(s.n.requests, '*', 'data', JSON.stringify(req(`b-${routing}-${i}`)));
      await pipe.exec();
      await until(() => b.stats().total_routed === 30, 10_000, '30 placements');
      expect(b.stats()).toMatchObject({ sticky_hits: 30, fallbacks: 0, cold_loads: 0 });
      return spread(s, nodes);
    };
    expect(await burst('balanced')).toEqual({ 'pi-a': 10, 'pi-b': 10, 'pi-c': 10 });
    expect(await burst('guide')).toEqual({ 'pi-a': 30, 'pi-b': 0, 'pi-c': 0 });
  });

  it('loads a second copy when waiting would cost more than the load, and not before', async () => {
    const s = h.scope('cold');
    await s.node('warm', { ram_percent: 30, models: ['gemma3:1b'], concurrency: 1 });
    await s.node('cold', { ram_percent: 60, models: [], concurrency: 1 });
    // One answer 2 s, a load 10 s: the sixth job would wait 10 s on the warm node.
    const b = await s.start(BALANCED);
    for (let i = 0; i < 5; i++) await s.send(req(`c-${i}`));
    await until(() => b.stats().total_routed === 5, 5000, 'five placements');
    expect(await spread(s, ['warm', 'cold'])).toEqual({ warm: 5, cold: 0 });
    expect(b.stats().avoided_cold_loads).toBeGreaterThan(0);
    for (let i = 5; i < 12; i++) await s.send(req(`c-${i}`));
    await until(() => b.stats().total_routed === 12, 5000, 'twelve placements');
    const split = await spread(s, ['warm', 'cold']);
    expect(split.cold).toBeGreaterThan(0);
    expect(b.stats().cold_loads).toBe(1);
    expect(b.stats().fallbacks).toBe(1);
    expect(b.stats().spills).toBeGreaterThan(0);
  });

  it('moves waiting jobs to a node that comes back, keeping their attempt, and says where each request is', async () => {
    const s = h.scope('move');
    await s.node('busy', { ram_percent: 30, models: ['gemma3:1b'], concurrency: 1 });
    await s.node('later', { ram_percent: 20, models: ['gemma3:1b'], concurrency: 1, temp_celsius: 80 });
    const b = await s.start(BALANCED);
    for (let i = 0; i < 8; i++) await s.send(req(`m-${i}`));
    await until(() => b.stats().total_routed === 8, 5000, 'eight placements');
    expect(await spread(s, ['busy', 'later'])).toEqual({ busy: 8, later: 0 });

    // /requests/{id}: the last one waits eighth on `busy`.
    const w = (await (await s.get('/requests/m-7', b)).json()) as Record<string, unknown>;
    expect(w).toMatchObject({ request_id: 'm-7', state: 'waiting', node_id: 'busy', position: 8, ahead: 7, model: 'gemma3:1b', routing: 'sticky', attempt: 0 });
    expect(w['eta_start_ms']).toBeGreaterThan(10_000);
    expect((await s.get('/requests/nobody', b)).status).toBe(404);
    expect((await s.get('/requests/bad%20id', b)).status).toBe(400);

    // The hot node cools to 72 °C: still excluded (hysteresis), nothing moves; at 65 °C it is back.
    await s.node('later', { ram_percent: 20, models: ['gemma3:1b'], concurrency: 1, temp_celsius: 72 });
    // A refresh already under way may have read the document before it changed: wait for one
    // that has seen it.
    let nodes: Record<string, unknown>[] = [];
    await until(
      async () => {
        await b.refresh();
        nodes = (await (await s.get('/nodes', b)).json()) as Record<string, unknown>[];
        return nodes.find((x) => x['node_id'] === 'later')?.['temp_celsius'] === 72;
      },
      5000,
      'the bridge to see the node at 72 °C',
    );
    expect(nodes.find((x) => x['node_id'] === 'later')).toMatchObject({ eligible: false, excluded_reason: 'temperature', hysteresis: true, readmit_below: 70 });
    expect(nodes.find((x) => x['node_id'] === 'busy')).toMatchObject({ eligible: true, queue_waiting: 8, queue_running: 0 });
    expect((await s.jobs('later')).length).toBe(0);
    await s.node('later', { ram_percent: 20, models: ['gemma3:1b'], concurrency: 1, temp_celsius: 65 });
    await until(async () => (await s.jobs('later')).length >= 3, 5000, 'jobs moved to the node that came back');
    await b.refresh();
    const split = await spread(s, ['busy', 'later']);
    const { busy = 0, later = 0 } = split;
    expect(busy + later).toBe(8);
    expect(later).toBeGreaterThanOrEqual(3);
    expect(b.stats().moves).toBe(later);
    for (const j of await s.jobs('later')) {
      expect(j.data.attempt).toBe(0);
      expect(await h.redis.hget(s.n.requestKey(j.data.request.request_id), 'node')).toBe('later');
    }
    expect(await h.redis.hlen(s.n.moves)).toBe(0);
    const moved = (await (await s.get(`/requests/${(await s.jobs('later'))[0]!.data.request.request_id}`, b)).json()) as Record<string, unknown>;
    expect(moved).toMatchObject({ state: 'waiting', node_id: 'later' });
  });

  it('finishes a move another bridge left half-way (owner changed, job not yet added)', async () => {
    const s = h.scope('halfway');
    await s.node('a', { ram_percent: 30, models: ['gemma3:1b'] });
    const b = await s.start(BALANCED, { refreshMs: 100 });
    await s.send(req('hw-1'));
    await until(() => s.jobs('a').then((j) => j.length === 1), 5000, 'the placement');
    // A bridge died right after claiming a move to `b`: owner is b, the record says a -> b.
    await s.node('b', { ram_percent: 90, models: ['gemma3:1b'] });
    await h.redis.hset(s.n.requestKey('hw-1'), 'node', 'b');
    await h.redis.hset(s.n.moves, 'hw-1', `a,b,${Date.now() - 60_000}`);
    await until(() => s.jobs('b').then((j) => j.length === 1), 5000, 'the move finished');
    await until(() => s.jobs('a').then((j) => j.length === 0), 5000, 'the old copy removed');
    expect((await s.jobs('b'))[0]!.id).toBe(jobIdFor('hw-1'));
    expect(await h.redis.hlen(s.n.moves)).toBe(0);
    await b.close();
  });

  it('asks a node over its RAM limit with nothing to do to unload its least recently used model, one a node at a time', async () => {
    const s = h.scope('relief');
    const both = { models: ['gemma3:1b', 'llama3.2:3b'], concurrency: 1 };
    await s.node('full', { ram_percent: 30, ...both });
    const b = await s.start(BALANCED, { refreshMs: 100 });
    // gemma3:1b is used here: a request placed on the node, then taken off as a worker would.
    await s.send(req('rf-1'));
    await until(() => s.jobs('full').then((j) => j.length === 1), 5000, 'the placement');
    await (await s.jobs('full'))[0]!.remove();
    // Over the limit now, nothing waiting or running there: llama3.2:3b (never used here) goes.
    await s.node('full', { ram_percent: 93, ...both });
    await until(() => s.jobs('full').then((j) => j.length === 1), 5000, 'an unload job');
    const [unload] = await s.jobs('full');
    expect(unload!.data.request).toMatchObject({ model: 'llama3.2:3b', prompt: '', keep_alive: '0s', source: 'orion-unload', reply_to: s.n.keepWarmReplies });
    // Counted once the job is in the queue (the job is seen first).
    await until(() => b.stats().ram_unloads === 1, 5000, 'the unload counted');
    // Still over with gemma3:1b alone: the node's lock holds the next unload back for a while
    // (the node reports the RAM it freed first); without the lock, gemma3:1b goes too.
    await unload!.remove();
    await s.node('full', { ram_percent: 92, ...both, models: ['gemma3:1b'] });
    const ttl = await h.redis.pttl(s.n.keepWarmLockKey('unload@full'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(RELIEF_EVERY_MS);
    await h.redis.del(s.n.keepWarmLockKey('unload@full'));
    await until(() => s.jobs('full').then((j) => j.length === 1), 5000, 'a second unload job');
    expect((await s.jobs('full'))[0]!.data.request).toMatchObject({ model: 'gemma3:1b', keep_alive: '0s' });
    await until(() => b.stats().ram_unloads === 2, 5000, 'the second unload counted');
    await b.close();
  });

  it('renews the keep-alive of the last warm copy of a model in demand when Ollama says it expires within a minute', async () => {
    const s = h.scope('warm');
    const inMs = (ms: number): string => new Date(Date.now() + ms).toISOString();
    const warm = { ram_percent: 30, models: ['gemma3:1b'], concurrency: 1 };
    await s.node('only', { ...warm, models_expire_at: { 'gemma3:1b': inMs(4 * 60_000) } });
    const b = await s.start(BALANCED, { refreshMs: 100 });
    // Demand for the model: a request placed there, then taken off as a worker would.
    await s.send(req('kw-1'));
    await until(() => s.jobs('only').then((j) => j.length === 1), 5000, 'the placement');
    await (await s.jobs('only'))[0]!.remove();
    // Four minutes left: a refresh and all that follows it (keep-warm included) send nothing.
    await b.refresh();
    expect(await s.jobs('only')).toHaveLength(0);
    // Thirty seconds left: a renewal.
    await s.node('only', { ...warm, models_expire_at: { 'gemma3:1b': inMs(30_000) } });
    await until(() => s.jobs('only').then((j) => j.length === 1), 5000, 'a keep-alive job');
    const [job] = await s.jobs('only');
    expect(job!.data.request).toMatchObject({ model: 'gemma3:1b', prompt: '', keep_alive: '300s', source: 'orion-keep-warm', reply_to: s.n.keepWarmReplies });
    await until(() => b.stats().keep_warm === 1, 5000, 'the renewal counted');
    await b.close();
  });

  it('two bridges see the same jobs waiting on each node', async () => {
    const s = h.scope('two');
    for (const id of ['x', 'y']) await s.node(id, { ram_percent: id === 'x' ? 30 : 40, models: ['gemma3:1b'], concurrency: 1 });
    const b1 = await s.start(BALANCED);
    const b2 = await s.start({ ...BALANCED, 'consumer-name': 'bridge-2' });
    const pipe = h.redis.pipeline();
    for (let i = 0; i < 20; i++) pipe.xadd(s.n.requests, '*', 'data', JSON.stringify(req(`two-${i}`)));
    await pipe.exec();
    const placed = async (): Promise<number> => Object.values(await spread(s, ['x', 'y'])).reduce((a, c) => a + c, 0);
    await until(async () => (await placed()) === 20, 10_000, '20 placements');
    const truth = await spread(s, ['x', 'y']);
    expect(b1.stats().total_routed + b2.stats().total_routed).toBe(20);
    const view = async (b: typeof b1) => {
      await b.refresh();
      const nodes = (await (await s.get('/nodes', b)).json()) as { node_id: string; queue_waiting: number }[];
      return Object.fromEntries(nodes.map((x) => [x.node_id, x.queue_waiting]));
    };
    expect(await view(b1)).toEqual(truth);
    expect(await view(b2)).toEqual(truth);
    // Both spread the burst: neither node holds more than 12 of 20.
    expect(Math.max(...Object.values(truth))).toBeLessThanOrEqual(12);
  });
});
