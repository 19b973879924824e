import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, httpPortOf, report, routable, withDump, World, waitFor, type Proc } from './harness.js';
import { drained, requireFaketime, settle, startSkewedWorker } from './redis-faults.js';

requireBuilt();
requireFaketime();

const AHEAD = 'pi-ahead';
const BEHIND = 'pi-behind';
const NODES = [AHEAD, BEHIND];

interface NodeRow {
  node_id: string;
  eligible: boolean;
  excluded_reason?: string;
  clock_offset_ms?: number;
  clock_warning?: string;
}

describe('row 31: workers whose clocks are 60 s ahead and 60 s behind', () => {
  let w: World;
  let procs: Proc[];
  let bridge: Proc;
  beforeAll(async () => {
    // A model loaded on each node only, so that both get requests.
    w = await new World({ nodes: [{ id: AHEAD, loaded: ['gemma3:1b'] }, { id: BEHIND, loaded: ['llama3.2:3b'] }], speed: 10, label: 'row31' }).start();
    // --routing guide: these rows test Redis faults, not the balanced router's job moves.
    bridge = w.startBridge('bridge-a', ['--routing', 'guide']);
    procs = [startSkewedWorker(w, AHEAD, '+60s'), startSkewedWorker(w, BEHIND, '-60s'), bridge];
  });
  afterAll(async () => {
    await w?.close();
  });

  it('routes to both, answers within deadlines with true queue times, and shows each offset in /nodes', async () => {
    await withDump(w, async () => {
      // Both fresh: health stamped on Redis's clock (today's main: the one behind is stale forever).
      // (a busy machine may take a while to start three programs at once)
      await waitFor('the bridge started', () => bridge.logs(/^bridge started$/).length > 0, 45_000);
      await routable(bridge, NODES, 30_000);
      const port = await httpPortOf(bridge);
      const nodes = await waitFor('clock offsets in /nodes', async () => {
        const rows = (await (await fetch(`http://127.0.0.1:${port}/nodes`)).json()) as NodeRow[];
        return rows.every((r) => typeof r.clock_offset_ms === 'number') ? rows : undefined;
      });
      const ahead = nodes.find((r) => r.node_id === AHEAD)!;
      const behind = nodes.find((r) => r.node_id === BEHIND)!;
      // Offset = Redis's clock minus the node's: about -60 s for the one ahead, +60 s behind.
      expect(Math.abs(ahead.clock_offset_ms! + 60_000)).toBeLessThan(1000);
      expect(Math.abs(behind.clock_offset_ms! - 60_000)).toBeLessThan(1000);
      expect(ahead.clock_warning).toMatch(/^clock (59|60)\.\d s ahead of Redis's$/);
      expect(behind.clock_warning).toMatch(/^clock (59|60)\.\d s behind Redis's$/);
      for (const p of procs.slice(0, 2)) expect(p.logs(/clock is (59|60)\.\d s (ahead of|behind)/).length).toBe(1);

      // 30 s deadlines: a worker judging them on its own clock 60 s ahead would answer timeout.
      const ids = await w.send(
        Array.from({ length: 24 }, (_, i) => ({ request_id: `r31-${i}`, model: i % 2 ? 'llama3.2:3b' : 'gemma3:1b', timeout_ms: 30_000, options: { num_predict: 16 } })),
      );
      const o = await settle(w, ids, 60_000);
      expect(o.errors).toEqual([]);
      expect(o.twice).toEqual([]);
      const finals = ids.map((id) => o.answers.get(id)![0]!);
      const perNode: Record<string, number> = {};
      for (const a of finals) perNode[a.node_id ?? '?'] = (perNode[a.node_id ?? '?'] ?? 0) + 1;
      expect(Object.keys(perNode).sort()).toEqual([...NODES].sort());
      const queueMs = finals.map((a) => a.queue_ms ?? -1);
      expect(Math.min(...queueMs)).toBeGreaterThanOrEqual(0);
      // A machine's offset would add 60 s; the real wait, on a busy test machine, is seconds.
      expect(Math.max(...queueMs)).toBeLessThan(30_000);

      // Still fresh after several beats (the one behind never goes stale).
      const rows = (await (await fetch(`http://127.0.0.1:${port}/nodes`)).json()) as NodeRow[];
      expect(rows.filter((r) => !r.eligible).map((r) => `${r.node_id}: ${r.excluded_reason}`)).toEqual([]);
      await drained(w, NODES);
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);
      expect(await w.deadLetters()).toEqual([]);
      report({
        row: 31,
        title: 'Worker clocks 60 s ahead and 60 s behind (faketime), requests with timeout_ms 30000',
        figures: {
          answered: `${ids.length - o.errors.length}/${ids.length}`,
          'per node': JSON.stringify(perNode),
          'answered timeout': o.errors.filter((e) => / timeout /.test(e)).length,
          'largest queue_ms': Math.max(...queueMs),
          'clock_offset_ms in /nodes (ahead, behind)': `${ahead.clock_offset_ms}, ${behind.clock_offset_ms}`,
          'excluded as stale': 0,
        },
      });
    });
  });
});
