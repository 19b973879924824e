import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, firstAnswerAfter, report, sleep, someRunning, startFlow, tally, waitFor, withDump, World, type Proc } from './harness.js';
import { drained } from './redis-faults.js';

requireBuilt();

const NODES = ['pi-a', 'pi-b'];

describe('row 8: Redis killed (SIGKILL) and restarted with appendonly yes while requests flow', () => {
  let w: World;
  let procs: Proc[];
  beforeAll(async () => {
    w = await new World({ redis: { appendonly: true }, nodes: NODES.map((id) => ({ id })), speed: 10, label: 'row8' }).start();
    procs = [...NODES.map((id) => w.startWorker(id)), w.startBridge()];
    for (const id of NODES) await w.healthy(id);
  });
  afterAll(async () => {
    await w?.close();
  });

  it('loses nothing and answers again within 5 s of the restart', async () => {
    // The Brain keeps sending, 2 requests every 300 ms, each a generation of about 0.2 s.
    const flow = startFlow(w, 'r8', { everyMs: 300, options: { num_predict: 16 } });
    await withDump(w, async () => {
      await waitFor('10 answers before the kill', async () => (await w.answers()).size >= 10, 30_000);
      const runningAtKill = await someRunning(w, NODES);
      await w.redis.stop('SIGKILL');
      await sleep(1000);
      await w.redis.start();
      const firstAnswerMs = await firstAnswerAfter(w, Date.now());
      await sleep(1000);
      await flow.stop();
      const ids = flow.ids;

      const answers = await w.allAnswered(ids, 60_000);
      const t = tally(answers, ids);
      expect(t.errors).toEqual([]);
      expect(firstAnswerMs).toBeLessThan(5000);
      // Nothing left behind: no entry pending, no job waiting or running, all processes up.
      // (A worker publishes the answer, then BullMQ moves the job out of active: wait for it.)
      await drained(w, NODES);
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);
      const letters = await w.deadLetters();
      expect(letters).toEqual([]);
      report({
        row: 8,
        title: 'Redis SIGKILL + restart with appendonly yes (appendfsync always), 1 s down, requests flowing',
        figures: {
          answered: `${ids.length - t.errors.length}/${ids.length}`,
          'answered twice': t.twice.length,
          'dead letters': letters.length,
          'jobs running at the kill': runningAtKill,
          'first answer after the restart (ms)': firstAnswerMs,
          'per node': JSON.stringify(t.perNode),
        },
      });
    });
  });
});
