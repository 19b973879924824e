import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { built, report, sleep, tally, waitFor, withDump, World, type Proc } from './harness.js';

const NODES = ['pi-a', 'pi-b'];

describe.skipIf(!built())('row 10: Redis paused for 5 s (SIGSTOP) under load', () => {
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
    const ids: string[] = [];
    const sends: Promise<unknown>[] = [];
    let sending = true;
    const brain = (async () => {
      for (let i = 0; sending; i++) {
        const batch = [`r10-${i}-a`, `r10-${i}-b`];
        ids.push(...batch);
        sends.push(w.send(batch.map((request_id) => ({ request_id, options: { num_predict: 16 } }))));
        await sleep(400);
      }
    })();

    await withDump(w, async () => {
      await waitFor('10 answers before the pause', async () => (await w.answers()).size >= 10, 30_000);
      // Strike while a generation runs.
      const runningAtPause = await waitFor('a job running', async () => {
        const active = (await Promise.all(NODES.map((id) => w.queueCounts(id)))).reduce((a, c) => a + c.active, 0);
        return active > 0 ? active : undefined;
      }, 10_000, 10);
      w.redis.pause();
      await sleep(5000);
      w.redis.resume();
      const resumedAt = Date.now();
      const firstAnswerMs = await waitFor('an answer after the resume', async () => {
        const [last] = await w.admin.xrevrange(w.n.responses, '+', '-', 'COUNT', 1);
        const at = last ? Number(last[0].split('-')[0]) : 0;
        return at >= resumedAt ? at - resumedAt : undefined;
      }, 30_000, 20);
      await sleep(1000);
      sending = false;
      await brain;
      await Promise.all(sends);

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
