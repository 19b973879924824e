import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpPortOf, report, requireBuilt, routable, tally, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

// Row 42: two bridges (built programs, processes of their own) share one cluster under
// --routing balanced. Both read the same stream; each places what it reads. They must agree
// on how many jobs wait and run on each node (what balanced routing decides by) and on the
// cluster's counters, and every request is answered once.
describe('row 42: two bridges agree on counts', () => {
  let w: World;
  const bridges: Proc[] = [];
  const figures: Record<string, string | number> = {};
  const nodes = ['pi-a', 'pi-b'];
  beforeAll(async () => {
    w = await new World({ nodes: nodes.map((id) => ({ id })), speed: 10, label: 'row42' }).start();
    for (const id of nodes) w.startWorker(id, ['--concurrency', '1']);
    for (const name of ['bridge-a', 'bridge-b']) bridges.push(w.startBridge(name, ['--routing', 'balanced', '--default-answer-time', '6s']));
    for (const id of nodes) await withDump(w, () => w.healthy(id, 30_000));
    for (const b of bridges) await withDump(w, () => routable(b, nodes));
  });
  afterAll(async () => {
    await w?.close();
    if (Object.keys(figures).length > 0) report({ row: 42, title: 'Two bridges (processes) share a cluster: the same counts per node and for the cluster', figures });
  });

  const get = async <T>(b: Proc, path: string): Promise<T> => (await (await fetch(`http://127.0.0.1:${await httpPortOf(b)}${path}`, { signal: AbortSignal.timeout(3000) })).json()) as T;

  it('show the same jobs waiting and running on each node as the queues hold, and the same cluster counters', async () => {
    // Answers crawl (a chunk every 2 s) while the burst is placed, so the queues stand still.
    for (const id of nodes) await w.simFaults(id, { slowStreamMs: 2000 });
    // Short answers: the two that started crawling finish soon after the crawl ends.
    const ids = Array.from({ length: 20 }, (_, i) => `two-${i}`);
    await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 6, seed: i } })));
    const truth = async (): Promise<Record<string, string>> => {
      const out: Record<string, string> = {};
      for (const id of nodes) {
        const c = await w.queueCounts(id);
        out[id] = `${c.prioritized + c.wait}/${c.active}`;
      }
      return out;
    };
    const seen = async (b: Proc): Promise<Record<string, string>> => {
      const list = await get<{ node_id: string; queue_waiting: number; queue_running: number }[]>(b, '/nodes');
      return Object.fromEntries(list.filter((x) => nodes.includes(x.node_id)).map((x) => [x.node_id, `${x.queue_waiting}/${x.queue_running}`]));
    };
    // Every request placed (20 jobs in the two queues), then both bridges' views equal the queues.
    await withDump(w, () => waitFor('20 jobs placed', async () => {
      const t = await truth();
      return Object.values(t).reduce((s, x) => s + x.split('/').map(Number).reduce((a, b) => a + b, 0), 0) === 20;
    }, 30_000));
    const agreed = await withDump(w, () => waitFor('both bridges showing the queues as they are', async () => {
      const [t, a, b] = await Promise.all([truth(), seen(bridges[0]!), seen(bridges[1]!)]);
      return JSON.stringify(a) === JSON.stringify(t) && JSON.stringify(b) === JSON.stringify(t) ? t : undefined;
    }, 30_000));
    figures['waiting/running per node, as both bridges and the queues show it'] = JSON.stringify(agreed);
    // Balanced: the burst is spread, not all on the guide's first node.
    for (const id of nodes) expect(Number(agreed[id]!.split('/')[0]) + Number(agreed[id]!.split('/')[1]), id).toBeGreaterThanOrEqual(5);

    type Stats = { total_routed: number; sticky_hits: number; fallbacks: number; cluster: { total_routed: number; sticky_hits: number; fallbacks: number } | null };
    // Each bridge adds its counts to the cluster's in Redis once a second: wait
    // until both have, then both must read the same cluster counters.
    const [sa, sb] = await withDump(w, () => waitFor('both bridges flushed their counts', async () => {
      const both = await Promise.all(bridges.map((b) => get<Stats>(b, '/stats')));
      return both.every((x) => x.cluster?.total_routed === 20) ? both : undefined;
    }, 30_000));
    figures['total_routed per bridge'] = `${sa!.total_routed} + ${sb!.total_routed}`;
    expect(sa!.total_routed + sb!.total_routed).toBe(20);
    expect(sa!.cluster).toEqual(sb!.cluster);
    expect(sa!.cluster?.total_routed).toBe(20);
    expect(sa!.cluster!.sticky_hits + sa!.cluster!.fallbacks).toBe(20);

    for (const id of nodes) await w.clearSimFaults(id);
    const answers = await withDump(w, () => w.allAnswered(ids, 120_000));
    const t = tally(answers, ids);
    figures['answered once'] = `${ids.length - t.twice.length}/${ids.length}`;
    figures['per node'] = JSON.stringify(t.perNode);
    expect(t.twice).toEqual([]);
    expect(t.errors).toEqual([]);
  });
});
