import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, firstAnswerAfter, report, sleep, someRunning, withDump, World, waitFor, type Proc } from './harness.js';
import { drained, settle, startAcceptedFlow } from './redis-faults.js';

requireBuilt();

const NODES = ['pi-a', 'pi-b'];
const OOM_MS = 8000;

describe('row 30: Redis out of memory (noeviction) for 8 s under load', () => {
  let w: World;
  let procs: Proc[];
  beforeAll(async () => {
    w = await new World({ redis: { args: ['--maxmemory-policy', 'noeviction'] }, nodes: NODES.map((id) => ({ id })), speed: 10, label: 'row30' }).start();
    // --routing guide: these rows test Redis faults, not the balanced router's job moves.
    procs = [...NODES.map((id) => w.startWorker(id)), w.startBridge('bridge-a', ['--routing', 'guide'])];
    for (const id of NODES) await w.healthy(id, 45_000);
  });
  afterAll(async () => {
    await w?.close();
  });

  it('answers every accepted request once memory is back, none of them timeout', async () => {
    // 2 requests every 300 ms, generations of about 0.2 s, deadlines of 40 s: every request
    // accepted before or during the fault has time left once memory is back.
    const flow = startAcceptedFlow(w, 'r30', { everyMs: 300, request: { options: { num_predict: 16 }, timeout_ms: 40_000 } });
    await withDump(w, async () => {
      await waitFor('10 answers before the fault', async () => (await w.answers()).size >= 10, 30_000);
      const runningAtFault = await someRunning(w, NODES);
      // maxmemory of 1 byte: every write that may grow memory is refused with OOM.
      await w.admin.config('SET', 'maxmemory', '1');
      await sleep(OOM_MS);
      await w.admin.config('SET', 'maxmemory', '0');
      const backAt = Date.now();
      const firstAnswerMs = await firstAnswerAfter(w, backAt);
      await sleep(1500);
      await flow.stop();
      const ids = flow.accepted;
      const o = await settle(w, ids, 60_000);
      const allMs = Date.now() - backAt;
      const timeouts = o.errors.filter((e) => / timeout /.test(e));
      expect(timeouts).toEqual([]);
      expect(o.errors).toEqual([]);
      expect(o.twice).toEqual([]);
      await drained(w, NODES);
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);
      const letters = await w.deadLetters();
      expect(letters).toEqual([]);
      report({
        row: 30,
        title: `Redis out of memory (noeviction) for ${OOM_MS / 1000} s under load`,
        figures: {
          answered: `${ids.length - o.errors.length}/${ids.length} accepted`,
          'refused by Redis (OOM, never accepted)': flow.refused,
          'answered timeout': timeouts.length,
          'answered twice': o.twice.length,
          'dead letters': letters.length,
          'jobs running at the fault': runningAtFault,
          'first answer after memory is back (ms)': firstAnswerMs,
          'all answered (ms after memory is back)': allMs,
          'processes running': `${procs.filter((p) => p.running).length}/${procs.length}`,
          'BullMQ loops ended by a refused write and started again': procs.reduce((k, p) => k + p.logs(/^queue loop stopped/).length, 0),
        },
      });
    });
  });
});
