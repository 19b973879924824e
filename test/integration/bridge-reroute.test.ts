import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceJobData, RerouteNotice } from '../../src/lib/bus.js';
import { ROUTER_GROUP } from '../../src/lib/names.js';
import type { BridgeHandle } from '../../src/router/bridge.js';
import { harness, until, type Harness, type Scope } from './bridge.harness.js';

let h: Harness;
const workers: Worker[] = [];
/** The stand-ins' connections: a Worker does not close a connection it was given. */
const connections: Redis[] = [];
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await Promise.all(workers.map((w) => w.close()));
  // Closed before Redis stops, so none keeps reconnecting (and logging) after the file ends.
  for (const c of connections) c.disconnect();
  await h.stop();
});

/** A stand-in for a node's worker: takes the next job, counting the attempt as a worker does. */
async function take(s: Scope, node: string, token: string): Promise<Job<InferenceJobData>> {
  const connection = new Redis(h.server.port, '127.0.0.1', { maxRetriesPerRequest: null });
  connections.push(connection);
  const w = new Worker<InferenceJobData>(node, null, { prefix: s.n.nodeQueuePrefix, connection, autorun: false });
  workers.push(w);
  const job = (await w.getNextJob(token)) as Job<InferenceJobData>;
  await job.updateData({ ...job.data, attempt: job.data.attempt + 1 });
  return job;
}

async function notice(s: Scope, n: RerouteNotice): Promise<void> {
  await h.redis.xadd(s.n.reroute, '*', 'data', JSON.stringify(n));
}

const owner = (s: Scope, id: string) => h.redis.hget(s.n.requestKey(id), 'node');

const reroutePending = async (s: Scope): Promise<number> => ((await h.redis.xpending(s.n.reroute, ROUTER_GROUP)) as [number])[0];

/**
 * Wait until the bridge has done everything it does after a refresh at least once from start to
 * end: held notices tried again, dead nodes swept. (`refresh()` may join a pass already under
 * way, so the second call is a pass that started after the first ended.)
 */
async function aWholePass(b: BridgeHandle): Promise<void> {
  await b.refresh();
  await b.refresh();
}

describe('a job a worker hands back is placed on another node', () => {
  it('moves a failed job to another eligible node, removes it from the old queue, and counts the attempt', async () => {
    const s = h.scope();
    await s.node('a', { ram_percent: 20, models: ['gemma3:1b'] });
    await s.node('b', { ram_percent: 40 });
    const b = await s.start();
    await s.send({ request_id: 'rr', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('a').then((j) => j.length === 1));
    const job = await take(s, 'a', 'tok');
    await notice(s, { request_id: 'rr', node_id: 'a', code: 'overloaded', message: 'busy', counts: true });
    await job.moveToFailed(new Error('overloaded: busy'), 'tok');
    const [moved] = await until(() => s.jobs('b').then((j) => j.length === 1 && j), 5000, 'job on b');
    expect(moved!.id).toBe('req_rr');
    expect(moved!.data).toMatchObject({ attempt: 1, tried: ['a'], routing: 'fallback' });
    expect(await moved!.getState()).toBe('prioritized');
    await until(() => s.jobs('a').then((j) => j.length === 0), 10_000, 'old copy removed');
    expect(await owner(s, 'rr')).toBe('b');
    await until(() => b.stats().rerouted === 1);
    await until(async () => ((await h.redis.xpending(s.n.reroute, ROUTER_GROUP)) as unknown[])[0] === 0, 10_000, 'notice acked');
  });

  it('gives the attempt back when the failure was the node\'s (counts false), waiting for the worker to let go of its copy', async () => {
    const s = h.scope();
    await s.node('a', { ram_percent: 20 });
    await s.node('b', { ram_percent: 40 });
    const b = await s.start();
    await s.send({ request_id: 'rr2', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('a').then((j) => j.length === 1));
    const job = await take(s, 'a', 'tok');
    // The notice arrives while the worker still holds the job.
    await notice(s, { request_id: 'rr2', node_id: 'a', code: 'backend_error', message: 'ollama down', counts: false });
    // The bridge has read the notice, and looked at it again after a refresh: it waits.
    await until(async () => (await reroutePending(s)) === 1, 5000, 'notice read by the bridge');
    await aWholePass(b);
    expect(await reroutePending(s)).toBe(1);
    expect(await s.jobs('b')).toHaveLength(0);
    await job.moveToFailed(new Error('backend_error'), 'tok');
    const [moved] = await until(() => s.jobs('b').then((j) => j.length === 1 && j), 5000, 'job on b');
    expect(moved!.data).toMatchObject({ attempt: 0, tried: ['a'] });
    await until(() => s.jobs('a').then((j) => j.length === 0));
  });

  it('answers with the notice\'s error once the attempts are used up, leaving the job in the failed set', async () => {
    const s = h.scope();
    await s.node('a', { ram_percent: 20 });
    await s.node('b', { ram_percent: 40 });
    await s.start({ 'max-attempts': '1' });
    await s.send({ request_id: 'rr3', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('a').then((j) => j.length === 1));
    const job = await take(s, 'a', 'tok');
    await job.moveToFailed(new Error('overloaded'), 'tok');
    await notice(s, { request_id: 'rr3', node_id: 'a', code: 'overloaded', message: 'busy', counts: true });
    const [r] = await until(() => s.replies().then((x) => x.length === 1 && x));
    expect(r).toMatchObject({ request_id: 'rr3', node_id: 'a', attempt: 1, error: { code: 'overloaded' } });
    const [letter] = await s.lettered();
    expect(letter).toMatchObject({ error_code: 'overloaded', node_id: 'a', attempt: 1 });
    expect(await s.jobs('b')).toHaveLength(0);
    expect(await (await s.jobs('a'))[0]!.getState()).toBe('failed');
  });

  it('keeps a handed-back job until a node is eligible', async () => {
    const s = h.scope();
    await s.node('a', { ram_percent: 20 });
    const b = await s.start();
    await s.send({ request_id: 'rr4', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('a').then((j) => j.length === 1));
    const job = await take(s, 'a', 'tok');
    await s.node('a', { available: false });
    await b.refresh();
    await job.moveToFailed(new Error('backend_error'), 'tok');
    await notice(s, { request_id: 'rr4', node_id: 'a', code: 'backend_error', message: 'down', counts: false });
    await until(async () => (await reroutePending(s)) === 1, 5000, 'notice read by the bridge');
    await aWholePass(b);
    // Read together, so that a failure shows which of the notice's exits was taken.
    const after = async () => ({
      pending: await reroutePending(s),
      states: await Promise.all((await s.jobs('a')).map((j) => j.getState())),
      owner: await owner(s, 'rr4'),
      final: await h.redis.hget(s.n.requestKey('rr4'), 'final'),
      attempt: (await s.jobs('a'))[0]?.data.attempt,
    });
    expect(await after()).toEqual({ pending: 1, states: ['failed'], owner: 'a', final: null, attempt: 1 });
    await s.node('c');
    const [moved] = await until(() => s.jobs('c').then((j) => j.length === 1 && j), 5000, 'job on c');
    expect(moved!.data).toMatchObject({ attempt: 0, tried: ['a'] });
    await until(() => s.jobs('a').then((j) => j.length === 0));
  });
});

describe('the jobs of a dead node are moved to eligible nodes', () => {
  it('moves waiting jobs, and active jobs whose lock lapsed, once the TTL key is gone', async () => {
    const s = h.scope();
    await s.node('dying', { ram_percent: 10, models: ['gemma3:1b'] });
    await s.node('other', { ram_percent: 50 });
    const b = await s.start();
    for (const id of ['d1', 'd2', 'd3']) await s.send({ request_id: id, model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('dying').then((j) => j.length === 3));
    const running = await take(s, 'dying', 'tok1');
    const held = await take(s, 'dying', 'tok2');
    // While the node is alive, a pass of the dead-node sweep moves nothing.
    await aWholePass(b);
    expect(await s.jobs('other')).toHaveLength(0);
    // The node dies: its TTL key expires; one worker lock lapses, the other is still held.
    await h.redis.del(s.n.healthKey('dying'));
    await h.redis.del(s.queue('dying').toKey(`${running.id}:lock`));
    const moved = await until(() => s.jobs('other').then((j) => j.length === 2 && j), 5000, 'two jobs moved');
    const byId = Object.fromEntries(moved.map((j) => [j.id, j.data]));
    expect(Object.keys(byId).sort()).toEqual([`req_${running.data.request.request_id}`, 'req_d3'].sort());
    expect(byId[`req_${running.data.request.request_id}`]).toMatchObject({ attempt: 1 });
    // The first one moved is a fallback; 'other' then counts as loading the model: sticky.
    expect(moved.map((j) => j.data.routing).sort()).toEqual(['fallback', 'sticky']);
    expect(byId['req_d3']).toMatchObject({ attempt: 0 });
    // A move adds the new copy first, then removes the old one: wait for the removals.
    await until(() => s.jobs('dying').then((j) => j.length === 1), 5000, 'the old copies removed');
    const left = await s.jobs('dying');
    expect(left.map((j) => j.id)).toEqual([held.id]);
    expect(await owner(s, 'd3')).toBe('other');
    await until(() => b.stats().rerouted === 2);
  });

  it('moves the waiting jobs of a node that reports itself unavailable, and leaves its running ones to it', async () => {
    const s = h.scope();
    await s.node('down', { ram_percent: 10, models: ['gemma3:1b'] });
    await s.node('other', { ram_percent: 50 });
    const b = await s.start();
    for (const id of ['u1', 'u2', 'u3']) await s.send({ request_id: id, model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('down').then((j) => j.length === 3));
    const running = await take(s, 'down', 'tok');
    // Its Ollama stops answering: the worker says so, and keeps publishing (the TTL key lives).
    await s.node('down', { ram_percent: 10, available: false, reason: 'ollama unreachable' });
    const moved = await until(() => s.jobs('other').then((j) => j.length === 2 && j), 5000, 'two waiting jobs moved');
    expect(moved.map((j) => j.data.attempt)).toEqual([0, 0]);
    await until(() => s.jobs('down').then((j) => j.length === 1), 5000, 'the old copies removed');
    expect((await s.jobs('down')).map((j) => j.id)).toEqual([running.id]);
    expect(await owner(s, running.data.request.request_id)).toBe('down');
    await until(() => b.stats().rerouted === 2);
  });

  it('leaves the waiting jobs of an unavailable node that alone has their model (it lists no models while its Ollama is down)', async () => {
    const s = h.scope();
    await s.node('big', { ram_percent: 10, installed_models: ['llama3.1:8b'] });
    await s.node('small', { ram_percent: 50, installed_models: ['gemma3:1b'] });
    const b = await s.start();
    await s.send({ request_id: 'only-big', model: 'llama3.1:8b', prompt: 'x' });
    await until(() => s.jobs('big').then((j) => j.length === 1));
    await s.node('big', { ram_percent: 10, available: false, models: [], installed_models: undefined, reason: 'ollama unreachable' });
    for (let i = 0; i < 3; i++) await b.refresh();
    expect((await s.jobs('big')).map((j) => j.id)).toEqual(['req_only-big']);
    expect(await s.replies()).toEqual([]);
    expect(await s.deadletters()).toEqual([]);
  });

  it('answers backend_error for a dead node\'s active job that had used its last attempt', async () => {
    const s = h.scope();
    await s.node('dying', { ram_percent: 10 });
    await s.node('other', { ram_percent: 50 });
    await s.start({ 'max-attempts': '1' });
    await s.send({ request_id: 'last', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('dying').then((j) => j.length === 1));
    const job = await take(s, 'dying', 'tok');
    await h.redis.del(s.n.healthKey('dying'), s.queue('dying').toKey(`${job.id}:lock`));
    const [r] = await until(() => s.replies().then((x) => x.length === 1 && x), 5000, 'error answer');
    expect(r).toMatchObject({ request_id: 'last', node_id: 'dying', error: { code: 'backend_error' } });
    await until(async () => (await (await s.jobs('dying'))[0]?.getState()) === 'failed', 10_000, 'job in the failed set');
    expect(await s.jobs('other')).toHaveLength(0);
  });
});
