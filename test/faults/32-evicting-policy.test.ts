import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, httpPortOf, report, sleep, waitFor, withDump, World, type Proc } from './harness.js';
import { drained, settle } from './redis-faults.js';

requireBuilt();

const NODES = ['pi-a', 'pi-b'];

interface RedisView {
  maxmemory_policy: string;
  evicting: boolean;
  taking_work: boolean;
}

async function redisViewOf(p: Proc): Promise<RedisView | undefined> {
  const port = await httpPortOf(p);
  const body = (await (await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) })).json()) as { status: string; redis?: RedisView };
  expect(body.status).toBe('ok');
  return body.redis;
}

/** Wait until every program's /health says it takes work (or not); returns the ms it took. */
async function allTaking(procs: Proc[], taking: boolean): Promise<number> {
  const from = Date.now();
  await waitFor(`every program ${taking ? 'taking' : 'refusing'} work`, async () => (await Promise.all(procs.map(redisViewOf))).every((v) => v?.taking_work === taking), 40_000);
  return Date.now() - from;
}

describe('row 32: maxmemory-policy allkeys-lru at start, then switched while running', () => {
  let w: World;
  let procs: Proc[];
  beforeAll(async () => {
    w = await new World({ redis: { args: ['--maxmemory-policy', 'allkeys-lru'] }, nodes: NODES.map((id) => ({ id })), speed: 10, label: 'row32' }).start();
    // --routing guide: these rows test Redis faults, not the balanced router's job moves.
    procs = [...NODES.map((id) => w.startWorker(id)), w.startBridge('bridge-a', ['--routing', 'guide'])];
  });
  afterAll(async () => {
    await w?.close();
  });

  it('takes no work under an evicting policy, says so, and takes it once the policy is noeviction', async () => {
    await withDump(w, async () => {
      // At start: every program refuses, in /health and in its logs; the nodes report unavailable.
      await allTaking(procs, false);
      const views = await Promise.all(procs.map(redisViewOf));
      for (const v of views) expect(v).toMatchObject({ maxmemory_policy: 'allkeys-lru', evicting: true, taking_work: false });
      for (const p of procs) expect(p.logs(/maxmemory-policy allkeys-lru evicts keys/).length).toBeGreaterThan(0);
      for (const id of NODES) {
        const doc = await waitFor(`${id} health`, async () => w.admin.get(w.n.healthKey(id)).then((d) => (d ? (JSON.parse(d) as { available: boolean; reason?: string }) : undefined)));
        expect(doc.available).toBe(false);
        expect(doc.reason).toMatch(/maxmemory-policy allkeys-lru/);
      }
      const first = await w.send(Array.from({ length: 10 }, (_, i) => ({ request_id: `r32-a-${i}`, options: { num_predict: 16 } })));
      await sleep(3000);
      const early = await w.answers();
      expect(first.filter((id) => early.has(id))).toEqual([]);

      // Policy fixed: work is taken within a check interval, and everything is answered.
      await w.admin.config('SET', 'maxmemory-policy', 'noeviction');
      const resumeMs = await allTaking(procs, true);
      const a = await settle(w, first, 30_000);
      expect(a.errors).toEqual([]);

      // Switched to an evicting policy while running: refused again within a check interval.
      await w.admin.config('SET', 'maxmemory-policy', 'volatile-lru');
      const refuseMs = await allTaking(procs, false);
      const second = await w.send(Array.from({ length: 10 }, (_, i) => ({ request_id: `r32-b-${i}`, options: { num_predict: 16 } })));
      await sleep(3000);
      const during = await w.answers();
      const answeredUnderEviction = second.filter((id) => during.has(id)).length;
      expect(answeredUnderEviction).toBe(0);
      await w.admin.config('SET', 'maxmemory-policy', 'noeviction');
      await allTaking(procs, true);
      const b = await settle(w, second, 30_000);
      expect(b.errors).toEqual([]);
      expect([...a.twice, ...b.twice]).toEqual([]);
      await drained(w, NODES);
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);
      expect(await w.deadLetters()).toEqual([]);
      report({
        row: 32,
        title: 'maxmemory-policy allkeys-lru at start, volatile-lru set while running (checks: worker every heartbeat, bridge every 5 s)',
        figures: {
          'answered under an evicting policy': `0/${first.length + second.length}`,
          'answered once noeviction': `${first.length + second.length}/${first.length + second.length}`,
          'taking work again after CONFIG SET noeviction (ms)': resumeMs,
          'refusing after CONFIG SET volatile-lru (ms)': refuseMs,
          'answered twice': 0,
          'dead letters': 0,
          'processes running': `${procs.filter((p) => p.running).length}/${procs.length}`,
        },
      });
    });
  });
});
