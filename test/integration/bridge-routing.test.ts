import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorResponse, publishFinal } from '../../src/lib/bus.js';
import { ROUTER_GROUP } from '../../src/lib/names.js';
import { harness, until, type Harness } from './bridge.harness.js';

let h: Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h.stop();
});

const req = (id: string, extra: Record<string, unknown> = {}) => ({ request_id: id, model: 'gemma3:1b', prompt: 'hi', ...extra });

describe('the bridge routes each request to one node queue', () => {
  it('sends a request to the node that has its model loaded (a sticky hit), as job req_<id>', async () => {
    const s = h.scope();
    await s.node('pi-16g', { ram_percent: 30, models: [] });
    await s.node('pi-8g', { ram_percent: 60, models: ['gemma3:1b'] });
    const b = await s.start();
    await s.send(req('r-1'));
    const [job] = await until(() => s.jobs('pi-8g').then((j) => j.length === 1 && j), 5000, 'job on pi-8g');
    expect(job!.id).toBe('req_r-1');
    expect(job!.name).toBe('inference');
    expect(job!.data).toMatchObject({ request: req('r-1'), attempt: 0, max_attempts: 3, routing: 'sticky', tried: [] });
    expect(job!.data.deadline).toBe(job!.data.seen_at - (job!.data.seen_at - Number(job!.data.entry_id.split('-')[0])) + 600_000);
    expect(await s.jobs('pi-16g')).toHaveLength(0);
    await until(() => b.stats().total_routed === 1);
    expect(b.stats()).toMatchObject({ total_routed: 1, sticky_hits: 1, fallbacks: 0, errors: 0 });
  });

  it('falls back to the least-loaded eligible node, preferring one with the model installed', async () => {
    const s = h.scope();
    await s.node('a-low', { ram_percent: 20, installed_models: ['other:1b'] });
    await s.node('b-mid', { ram_percent: 40 });
    await s.node('c-high', { ram_percent: 70 });
    const b = await s.start();
    await s.send(req('r-fb', { model: 'llama3.2:3b' }));
    const [job] = await until(() => s.jobs('b-mid').then((j) => j.length === 1 && j));
    expect(job!.data.routing).toBe('fallback');
    await until(() => b.stats().fallbacks === 1);
    expect(b.stats()).toMatchObject({ total_routed: 1, sticky_hits: 0, fallbacks: 1, cold_loads: 1 });
  });

  it('skips hot, full, stale (old last_seen or no TTL key) and unavailable nodes', async () => {
    const s = h.scope();
    await s.node('hot', { ram_percent: 10, temp_celsius: 75.1, models: ['gemma3:1b'] });
    await s.node('full', { ram_percent: 90.1, models: ['gemma3:1b'] });
    await s.node('old', { ram_percent: 11, age_ms: 20_000, models: ['gemma3:1b'] });
    await s.node('nottl', { ram_percent: 12, ttl: false, models: ['gemma3:1b'] });
    await s.node('off', { ram_percent: 13, available: false, models: ['gemma3:1b'] });
    await s.node('ok', { ram_percent: 89, temp_celsius: 75 });
    await s.start();
    await s.send(req('r-skip'));
    await until(() => s.jobs('ok').then((j) => j.length === 1));
    for (const id of ['hot', 'full', 'old', 'nottl', 'off']) expect(await s.jobs(id)).toHaveLength(0);
  });

  it('maps ORION priority p to BullMQ priority 10 - p, default 5 -> 5', async () => {
    const s = h.scope();
    await s.node('n1');
    await s.start();
    await s.send(req('p9', { priority: 9 }));
    await s.send(req('p0', { priority: 0 }));
    await s.send(req('pd'));
    const jobs = await until(() => s.jobs('n1').then((j) => j.length === 3 && j));
    const prio = Object.fromEntries(jobs.map((j) => [j.id, j.opts.priority]));
    expect(prio).toEqual({ req_p9: 1, req_p0: 10, req_pd: 5 });
  });

  it('acks an entry only once its job is queued, and re-reads its own unacked entries at start', async () => {
    const s = h.scope();
    await s.node('n1');
    // A previous run read this entry and died before placing it.
    await h.redis.xgroup('CREATE', s.n.requests, ROUTER_GROUP, '0', 'MKSTREAM');
    await s.send(req('r-crash'));
    await h.redis.xreadgroup('GROUP', ROUTER_GROUP, 'bridge-1', 'COUNT', 10, 'STREAMS', s.n.requests, '>');
    expect(((await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as unknown[])[0]).toBe(1);
    await s.start();
    await until(() => s.jobs('n1').then((j) => j.length === 1));
    await s.send(req('r-next'));
    await until(() => s.jobs('n1').then((j) => j.length === 2));
    await until(async () => ((await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as unknown[])[0] === 0, 10_000, 'XPENDING empty');
  });

  it('runs a duplicate request id once; the second reply_to gets the final answer when the job finishes', async () => {
    const s = h.scope();
    await s.node('n1');
    const b = await s.start();
    await s.send(req('dup', { reply_to: `${s.n.responses}:first` }));
    await until(() => s.jobs('n1').then((j) => j.length === 1));
    await s.send(req('dup', { reply_to: `${s.n.responses}:second` }));
    await until(() => b.stats().duplicates === 1);
    expect(await s.jobs('n1')).toHaveLength(1);
    // The worker finishes the job.
    const final = { request_id: 'dup', model: 'gemma3:1b', node_id: 'n1', done: true, response: 'ok', created_at: '2026-01-01T00:00:00Z' };
    expect(await publishFinal(h.redis, s.n, `${s.n.responses}:first`, final, 'n1')).toBe(true);
    expect(await s.replies(`${s.n.responses}:first`)).toEqual([final]);
    expect(await s.replies(`${s.n.responses}:second`)).toEqual([final]);
    // Sent again after it is done: answered at once from the record.
    await s.send(req('dup', { reply_to: `${s.n.responses}:third` }));
    await until(() => s.replies(`${s.n.responses}:third`).then((r) => r.length === 1));
    expect(await s.replies(`${s.n.responses}:third`)).toEqual([final]);
    expect(await s.jobs('n1')).toHaveLength(1);
    expect(b.stats().total_routed).toBe(1);
  });

  it('holds a request while no node is eligible and routes it when one appears', async () => {
    const s = h.scope();
    await s.node('sick', { available: false });
    const b = await s.start();
    await s.send(req('r-wait'));
    await until(() => b.waiting() === 1);
    // Not acked while held.
    expect(((await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as unknown[])[0]).toBe(1);
    const stats = (await (await s.get('/stats', b)).json()) as Record<string, unknown>;
    expect(stats['waiting']).toBe(1);
    await s.node('well');
    await until(() => s.jobs('well').then((j) => j.length === 1));
    expect(b.waiting()).toBe(0);
    await until(async () => ((await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as unknown[])[0] === 0);
    expect(b.stats()).toMatchObject({ total_routed: 1, errors: 0 });
  });

  it('answers no_healthy_node at the deadline of a held request, and dead-letters it', async () => {
    const s = h.scope();
    const b = await s.start();
    // Long enough a deadline that a loaded machine still sees the request held before it ends.
    await s.send(req('r-late', { timeout_ms: 2000, metadata: { k: 1 } }));
    await until(() => b.waiting() === 1);
    const [reply] = await until(() => s.replies().then((r) => r.length === 1 && r), 10_000);
    expect(reply).toMatchObject({ request_id: 'r-late', model: 'gemma3:1b', done: true, error: { code: 'no_healthy_node' }, metadata: { k: 1 } });
    expect(reply).not.toHaveProperty('node_id');
    const [dl] = await until(() => s.deadletters().then((d) => d.length === 1 && d));
    expect(dl).toMatchObject({ error_code: 'no_healthy_node', request_id: 'r-late', request: { request_id: 'r-late' } });
    // The bridge counts the error once its own writes are acknowledged, which may follow the
    // dead letter's arrival by a moment.
    await until(() => b.waiting() === 0 && b.stats().errors === 1, 5000, 'held request released and counted');
    await until(async () => ((await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as unknown[])[0] === 0);
  });

  it('answers timeout for a queued job past its deadline and takes it out of the node queue', async () => {
    const s = h.scope();
    await s.node('n1');
    const b = await s.start();
    await s.send(req('r-slow', { timeout_ms: 500 }));
    await until(() => s.jobs('n1').then((j) => j.length === 1));
    const [reply] = await until(() => s.replies().then((r) => r.length === 1 && r), 10_000);
    expect(reply).toMatchObject({ request_id: 'r-slow', node_id: 'n1', done: true, error: { code: 'timeout' } });
    await until(() => s.jobs('n1').then((j) => j.length === 0), 10_000, 'job removed');
    const [letter] = await s.lettered();
    expect(letter).toMatchObject({ error_code: 'timeout', request_id: 'r-slow', node_id: 'n1' });
    expect(b.stats()).toMatchObject({ timeouts: 1, errors: 0, total_routed: 1 });
    // Once only: another sweep publishes nothing more.
    await b.sweepDeadlines();
    expect(await s.replies()).toHaveLength(1);
  });

  it('answers model_not_found at once when every eligible node reports its installed models', async () => {
    const s = h.scope();
    await s.node('n1', { installed_models: ['gemma3:1b'] });
    const b = await s.start();
    await s.send(req('r-nomodel', { model: 'mistral:7b' }));
    const [reply] = await until(() => s.replies().then((r) => r.length === 1 && r));
    expect(reply).toMatchObject({ request_id: 'r-nomodel', error: { code: 'model_not_found' } });
    const [letter] = await s.lettered();
    expect(letter).toMatchObject({ error_code: 'model_not_found' });
    expect(b.stats().errors).toBe(1);
    expect(await s.jobs('n1')).toHaveLength(0);
  });

  it('waits rather than refusing a model that only an ineligible node has', async () => {
    const s = h.scope();
    await s.node('n1', { installed_models: ['gemma3:1b'] });
    await s.node('hot', { temp_celsius: 80, installed_models: ['mistral:latest'] });
    const b = await s.start();
    await s.send(req('r-cool', { model: 'mistral' }));
    await until(() => b.waiting() === 1);
    await s.node('hot', { temp_celsius: 60, installed_models: ['mistral:latest'] });
    // (`mistral` is `mistral:latest`, Ollama's rule.)
    await until(() => s.jobs('hot').then((j) => j.length === 1));
    expect(await s.replies()).toHaveLength(0);
  });

  it('sends the next requests for a model to the node it was just sent to as a fallback', async () => {
    const s = h.scope();
    await s.node('a', { ram_percent: 20 });
    await s.node('b', { ram_percent: 30 });
    const b = await s.start({}, { refreshMs: 60_000 });
    await s.send(req('warm-1'));
    await until(() => s.jobs('a').then((j) => j.length === 1));
    // 'a' now looks busier, but it is loading the model already.
    await s.node('a', { ram_percent: 40 });
    await b.refresh();
    await s.send(req('warm-2'));
    const jobs = await until(() => s.jobs('a').then((j) => j.length === 2 && j));
    expect(jobs.find((j) => j.id === 'req_warm-2')!.data.routing).toBe('sticky');
    expect(b.stats()).toMatchObject({ total_routed: 2, sticky_hits: 1, fallbacks: 1, anticipated: 1 });
  });
});

describe('several bridges share the stream', () => {
  it('takes over entries another bridge left pending longer than --claim-idle', async () => {
    const s = h.scope();
    await s.node('n1');
    await h.redis.xgroup('CREATE', s.n.requests, ROUTER_GROUP, '0', 'MKSTREAM');
    await s.send(req('orphan'));
    await h.redis.xreadgroup('GROUP', ROUTER_GROUP, 'gone-bridge', 'COUNT', 10, 'STREAMS', s.n.requests, '>');
    await s.start({ 'claim-idle': '1s' });
    await until(() => s.jobs('n1').then((j) => j.length === 1), 5000, 'orphan routed');
    await until(async () => ((await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as unknown[])[0] === 0);
  });

  it('keeps a held request from being taken over by a sibling', async () => {
    const s = h.scope();
    const one = await s.start({ 'consumer-name': 'one', 'claim-idle': '1s' });
    await s.send(req('held'));
    await until(() => one.waiting() === 1);
    const two = await s.start({ 'consumer-name': 'two', 'claim-idle': '1s' });
    // Past the claim-idle of 1 s, then at least four more XAUTOCLAIM passes (each bridge looks
    // every 500 ms): had the entry gone idle, one of them would have taken it over.
    await new Promise((r) => setTimeout(r, 1800));
    const autoclaims = async (): Promise<number> => Number(/cmdstat_xautoclaim:calls=(\d+)/.exec(await h.redis.info('commandstats'))?.[1] ?? 0);
    const before = await autoclaims();
    await until(async () => (await autoclaims()) >= before + 4, 10_000, 'four more claim passes');
    expect(one.waiting()).toBe(1);
    expect(two.waiting()).toBe(0);
    const pending = (await h.redis.xpending(s.n.requests, ROUTER_GROUP, '-', '+', 10)) as [string, string, number, number][];
    expect(pending.map((p) => p[1])).toEqual(['one']);
  });
});

describe('deadline answers are given once even with several bridges', () => {
  it('publishes one timeout and one dead letter for a request two bridges both see expire', async () => {
    const s = h.scope();
    const b1 = await s.start({ 'consumer-name': 'one' });
    const b2 = await s.start({ 'consumer-name': 'two' });
    // A record in the deadline set, already past, placed on a node that never ran it.
    const key = s.n.requestKey('gone');
    await h.redis.multi().hset(key, 'entry', '1-0', 'reply_to', s.n.responses, 'node', 'zz').zadd(`${s.prefix}:deadlines`, 1, key).exec();
    await Promise.all([b1.sweepDeadlines(), b2.sweepDeadlines()]);
    await until(() => s.replies().then((r) => r.length === 1));
    expect((await s.replies())[0]).toMatchObject({ request_id: 'gone', error: { code: 'timeout' } });
    expect(await s.lettered()).toHaveLength(1);
    expect(await publishFinal(h.redis, s.n, s.n.responses, errorResponse('gone', 'timeout', 'again'))).toBe(false);
  });
});
