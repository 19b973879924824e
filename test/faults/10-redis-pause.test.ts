import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, firstAnswerAfter, report, sleep, someRunning, startFlow, tally, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

const NODES = ['pi-a', 'pi-b'];

describe('row 10: Redis paused for 5 s (SIGSTOP) under load', () => {
  let w: World;
  let procs: Proc[];
  beforeAll(async () => {
    w = await new World({ nodes: NODES.map((id) => ({ id })), speed: 10, label: 'row10' }).start();
    procs = [...NODES.map((id) => w.startWorker(id)), w.startBridge()];
    for (const id of NODES) await w.healthy(id);
  });
  afterAll(async () => {
    await w?.close();
  });

  it('keeps every process running and answers every request', async () => {
    // 2 requests every 400 ms, each a generation of about 0.2 s. A frozen Redis does not close
    // connections: commands just get no answer, and every key with a TTL (health keys, job
    // locks, both shorter than the pause) has expired when it wakes up.
    const flow = startFlow(w, 'r10', { everyMs: 400, options: { num_predict: 16 } });
    await withDump(w, async () => {
      await waitFor('10 answers before the pause', async () => (await w.answers()).size >= 10, 30_000);
      const runningAtPause = await someRunning(w, NODES);
      w.redis.pause();
      await sleep(5000);
      w.redis.resume();
      const resumedAt = Date.now();
      const firstAnswerMs = await firstAnswerAfter(w, resumedAt);
      await sleep(1000);
      await flow.stop();
      const ids = flow.ids;

      const answers = await w.allAnswered(ids, 60_000);
      const allMs = Date.now() - resumedAt;
      const t = tally(answers, ids);
      expect(t.errors).toEqual([]);
      await waitFor('request stream fully acked', async () => ((await w.admin.xpending(w.n.requests, 'orion-inference-router')) as [number])[0] === 0, 15_000);
      for (const id of NODES) {
        await waitFor(`${id} queue empty`, async () => {
          const c = await w.queueCounts(id);
          return c.wait + c.active + c.prioritized + c.delayed === 0;
        }, 15_000);
      }
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);
      const letters = await w.deadLetters();
      expect(letters).toEqual([]);
      report({
        row: 10,
        title: 'Redis paused 5 s (SIGSTOP) under load',
        figures: {
          answered: `${ids.length - t.errors.length}/${ids.length}`,
          'answered twice': t.twice.length,
          'dead letters': letters.length,
          'jobs running at the pause': runningAtPause,
          'first answer after the resume (ms)': firstAnswerMs,
          'all answered (ms after the resume)': allMs,
          'processes running': `${procs.filter((p) => p.running).length}/${procs.length}`,
        },
      });
    });
  });
});
