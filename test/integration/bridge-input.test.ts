import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTER_GROUP } from '../../src/lib/names.js';
import { harness, until, type Harness } from './bridge.harness.js';

let h: Harness;
beforeAll(async () => {
  h = await harness();
});
afterAll(async () => {
  await h.stop();
});

describe('bad input is answered and dead-lettered, and never stops the bridge', () => {
  it('answers or dead-letters each bad entry while the good ones around it are routed', async () => {
    const s = h.scope();
    await s.node('n1');
    const b = await s.start();
    const good = (id: string) => ({ request_id: id, model: 'gemma3:1b', prompt: 'hi' });
    await s.send(good('ok-1'));
    const notJson = await s.send('{"request_id": "x1", ');
    const noData = await s.sendRaw('payload', '{"request_id":"x2"}');
    await s.send({ request_id: 'bad-schema', model: 'gemma3:1b' }); // neither prompt nor messages
    await s.send({ ...good('bad-field'), colour: 'blue' });
    await s.send({ ...good('bad-reply'), reply_to: 'elsewhere:responses' });
    await s.send({ ...good('big'), prompt: 'x'.repeat(2 * 1024 * 1024) });
    await s.send({ model: 'gemma3:1b', prompt: 'no id' });
    await s.send(good('ok-2'));

    const jobs = await until(() => s.jobs('n1').then((j) => j.length === 2 && j), 5000, 'good requests routed');
    expect(jobs.map((j) => j.id).sort()).toEqual(['req_ok-1', 'req_ok-2']);

    const replies = await until(() => s.replies().then((r) => r.length === 4 && r), 5000, 'four invalid_request answers');
    expect(replies.map((r) => r['request_id']).sort()).toEqual(['bad-field', 'bad-reply', 'bad-schema', 'big']);
    for (const r of replies) expect(r).toMatchObject({ done: true, error: { code: 'invalid_request' } });
    expect(replies.find((r) => r['request_id'] === 'bad-field')!['error']).toMatchObject({ message: expect.stringContaining("unknown field 'colour'") });
    expect(replies.find((r) => r['request_id'] === 'bad-reply')!['error']).toMatchObject({ message: expect.stringContaining('reply_to') });

    const dls = await until(() => s.deadletters().then((d) => d.length === 7 && d), 5000, 'seven dead letters');
    const byEntry = new Map(dls.map((d) => [d['entry_id'], d]));
    expect(byEntry.get(notJson)).toMatchObject({ error_code: 'invalid_request', request: '{"request_id": "x1", ' });
    expect(byEntry.get(notJson)).not.toHaveProperty('request_id');
    expect(byEntry.get(noData)).toMatchObject({ error_code: 'invalid_request', reason: expect.stringContaining("'data'") });
    const big = dls.find((d) => d['request_id'] === 'big')!;
    expect(String(big['reason'])).toMatch(/over the limit/);
    expect(typeof big['request']).toBe('string');
    expect((big['request'] as string).length).toBeLessThanOrEqual(64 * 1024);

    await until(() => b.stats().errors === 7, 10_000, 'seven errors counted');
    expect(b.stats()).toMatchObject({ total_routed: 2, errors: 7 });
    await until(async () => ((await h.redis.xpending(s.n.requests, ROUTER_GROUP)) as unknown[])[0] === 0, 10_000, 'all acked');

    // An invalid request does not take its id: sent again correctly, it is routed.
    await s.send(good('bad-schema'));
    await until(() => s.jobs('n1').then((j) => j.length === 3));
  });

  it('answers an invalid request on its own reply stream when reply_to is allowed', async () => {
    const s = h.scope();
    await s.start();
    const mine = `${s.n.responses}:client-7`;
    await s.send({ request_id: 'bad-prio', model: 'gemma3:1b', prompt: 'x', priority: 12, reply_to: mine });
    const [r] = await until(() => s.replies(mine).then((x) => x.length === 1 && x));
    expect(r).toMatchObject({ request_id: 'bad-prio', model: 'gemma3:1b', error: { code: 'invalid_request' } });
    expect(await s.replies()).toHaveLength(0);
  });

  it('creates its consumer group again when Redis loses it, and goes on reading', async () => {
    const s = h.scope();
    await s.node('n1');
    await s.start();
    await s.send({ request_id: 'before', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('n1').then((j) => j.length === 1));
    await h.redis.del(s.n.requests);
    await s.send({ request_id: 'after', model: 'gemma3:1b', prompt: 'x' });
    await until(() => s.jobs('n1').then((j) => j.length === 2), 5000, 'routed after the group was recreated');
  });
});
