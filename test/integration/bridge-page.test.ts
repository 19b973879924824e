/**
 * What the live page reads from the bridge: the page itself, `/cluster`, and the decision
 * stream `/events`; and the drained-node flag the bridge honours.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { harness, until, type Harness } from './bridge.harness.js';

let h: Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h.stop();
});

/** Read server-sent events from a response until `enough` says so (or the time is up). */
async function readEvents(res: Response, enough: (events: Record<string, unknown>[]) => boolean, ms = 5000): Promise<Record<string, unknown>[]> {
  const reader = res.body!.getReader();
  const events: Record<string, unknown>[] = [];
  let text = '';
  const end = Date.now() + ms;
  try {
    while (!enough(events) && Date.now() < end) {
      const chunk = await Promise.race([reader.read(), new Promise<undefined>((r) => setTimeout(() => r(undefined), end - Date.now()))]);
      if (!chunk || chunk.done) break;
      text += Buffer.from(chunk.value).toString('utf8');
      let i: number;
      while ((i = text.indexOf('\n\n')) !== -1) {
        const frame = text.slice(0, i);
        text = text.slice(i + 2);
        const data = frame.split('\n').find((l) => l.startsWith('data: '));
        if (data) events.push(JSON.parse(data.slice(6)) as Record<string, unknown>);
      }
    }
  } finally {
    await reader.cancel();
  }
  return events;
}

describe('the live page\'s endpoints', () => {
  it('serves the page, its style and script, with nothing fetched from elsewhere', async () => {
    const s = h.scope();
    const b = await s.start();
    const html = await s.get('/', b);
    expect(html.headers.get('content-type')).toContain('text/html');
    const body = await html.text();
    expect(body).toContain('ORION inference');
    expect(body).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect((await s.get('/page.css', b)).headers.get('content-type')).toContain('text/css');
    const js = await (await s.get('/page.js', b)).text();
    expect(js).toContain("new EventSource('events')");
    expect(js).not.toMatch(/(fetch|EventSource|import)\s*\(\s*['"](https?:)?\/\//);
  });

  it('/cluster has every node with its queue, the thresholds, and the timeline', async () => {
    const s = h.scope();
    await s.node('a', { ram_percent: 20, temp_celsius: 48.5, models: ['gemma3:1b'], concurrency: 2 });
    await s.node('hot', { ram_percent: 30, temp_celsius: 81 });
    const b = await s.start({}, { timelineStepMs: 100 });
    await s.send({ request_id: 'c1', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('a').then((j) => j.length === 1));
    const c = await until(async () => {
      const body = (await (await s.get('/cluster', b)).json()) as {
        nodes: Record<string, unknown>[];
        thresholds: Record<string, number>;
        board: { path: string };
        timeline: { points: { routed: number }[]; totals: { total_routed: number } };
      };
      return body.timeline.totals.total_routed === 1 && body.timeline.points.some((p) => p.routed === 1) && body;
    }, 5000, 'a placement in the timeline');
    expect(c.thresholds).toMatchObject({ max_temp: 75, max_ram: 90 });
    expect(c.board.path).toBe('/admin/queues');
    expect(c.nodes.map((x) => x['node_id'])).toEqual(['a', 'hot']);
    expect(c.nodes[0]).toMatchObject({ eligible: true, temp_celsius: 48.5, waiting: 1, running: 0, models: ['gemma3:1b'], concurrency: 2 });
    expect(c.nodes[1]).toMatchObject({ eligible: false, excluded_reason: 'temperature' });
  });

  it('/events streams each placement as it happens, only to those listening', async () => {
    const s = h.scope();
    await s.node('a', { ram_percent: 20, models: ['gemma3:1b'] });
    await s.node('b', { ram_percent: 40 });
    const b = await s.start();
    // Placed while nobody listens: not kept, never sent later.
    await s.send({ request_id: 'before', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('a').then((j) => j.length === 1));
    const res = await s.get('/events', b);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    await s.send({ request_id: 'e1', model: 'gemma3:1b', prompt: 'x', priority: 8 });
    await s.send({ request_id: 'e2', model: 'llama3.2:3b', prompt: 'x' });
    await s.send({ request_id: 'e3', model: 'no-such-model', prompt: 'x' });
    const events = await readEvents(res, (e) => e.length >= 3);
    // Batches finish in any order: one event each, whatever the order.
    const byId = new Map(events.map((e) => [e['request_id'], e]));
    expect([...byId.keys()].sort()).toEqual(['e1', 'e2', 'e3']);
    expect(events).toHaveLength(3);
    expect(byId.get('e1')).toMatchObject({ kind: 'placed', node: 'a', routing: 'sticky', model: 'gemma3:1b', priority: 8 });
    expect(byId.get('e2')).toMatchObject({ kind: 'placed', node: 'a', routing: 'fallback' });
    expect(byId.get('e3')).toMatchObject({ kind: 'refused', reason: 'model_not_found' });
  });
});

describe('a drained node', () => {
  it('is excluded as drained, gets no new work, and what waits there moves; undrained it comes back', async () => {
    const s = h.scope();
    await s.node('a', { ram_percent: 20, models: ['gemma3:1b'] });
    await s.node('b', { ram_percent: 40 });
    const b = await s.start();
    await s.send({ request_id: 'd1', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('a').then((j) => j.length === 1));
    await h.redis.sadd(s.n.drained, 'a');
    await until(() => b.snapshot().views.get('a')?.excludedReason === 'drained', 10_000, 'a drained');
    const nodes = (await (await s.get('/nodes', b)).json()) as Record<string, unknown>[];
    expect(nodes.find((x) => x['node_id'] === 'a')).toMatchObject({ eligible: false, excluded_reason: 'drained' });
    // The waiting job moves to b; a new request goes to b too.
    // A move adds the job on b first, then removes it from a (docs/PROTOCOL.md): wait for both.
    await until(() => s.jobs('b').then((j) => j.length === 1), 5000, 'waiting job moved to b');
    await until(() => s.jobs('a').then((j) => j.length === 0), 5000, 'the old copy removed from a');
    expect((await s.jobs('b'))[0]!.data.request.request_id).toBe('d1');
    await s.send({ request_id: 'd2', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('b').then((j) => j.length === 2), 5000, 'new job on b');
    await until(() => b.stats().rerouted === 1);
    await h.redis.srem(s.n.drained, 'a');
    await until(() => b.snapshot().views.get('a')?.eligible === true, 10_000, 'a back');
  });

  it('stays stale when it is dead, so its running jobs are recovered as a dead node\'s', async () => {
    const s = h.scope();
    await s.node('gone', { ttl: false });
    await h.redis.sadd(s.n.drained, 'gone');
    const b = await s.start();
    await until(() => b.snapshot().views.get('gone')?.excludedReason === 'stale', 10_000, 'gone stale');
  });
});
