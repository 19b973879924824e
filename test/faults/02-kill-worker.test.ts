import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, held, report, routable, simState, slowSingleNode, tally, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

// --routing guide: the row's premise is the guide's stickiness (requests stay on the node with
// the model loaded); balanced routing would spread them (rows 40 and 41 cover it).
const GUIDE = ['--routing', 'guide'];

// Row 2: the victim (the only node with the model loaded, so every request sticks to it) is
// slowed to a crawl, takes 100 requests (2 running, 98 queued) and is SIGKILLed. Its TTL key
// lapses, the bridge moves the queued jobs at once and the running ones once their locks lapse.
const figures: Record<string, string | number> = {};
afterAll(() => {
  if (Object.keys(figures).length > 0) report({ row: 2, title: 'SIGKILL 1 of 3 workers while it holds 100 requests (2 running, 98 queued); one worker killed twice running the same request', figures });
});

describe('row 2: SIGKILL 1 of 3 workers holding 100 requests', () => {
  let w: World;
  const workers = new Map<string, Proc>();
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }, { id: 'pi-b', loaded: [] }, { id: 'pi-c', loaded: [] }], speed: 50, label: 'row2' }).start();
    await w.simFaults('pi-a', { slowStreamMs: 5000 });
    for (const id of ['pi-a', 'pi-b', 'pi-c']) workers.set(id, w.startWorker(id));
    const bridge = w.startBridge('bridge-a', GUIDE);
    for (const id of ['pi-a', 'pi-b', 'pi-c']) await withDump(w, () => w.healthy(id, 30_000));
    await withDump(w, () => routable(bridge, ['pi-a', 'pi-b', 'pi-c']));
  });
  afterAll(async () => {
    await w?.close();
  });

  it('answers all 100 from the other workers, within seconds of the kill', async () => {
    const ids = Array.from({ length: 100 }, (_, i) => `r2-${i}`);
    await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 8, seed: i } })));
    await withDump(w, () => waitFor('pi-a holding 100 requests, 2 of them running', async () => (await held(w, 'pi-a')) === 100 && (await simState(w, 'pi-a')).counters.generate === 2));

    const victim = workers.get('pi-a')!;
    await victim.kill('SIGKILL');
    const t0 = Date.now();
    const answers = await withDump(w, () => w.allAnswered(ids, 60_000));
    const seconds = (Date.now() - t0) / 1000;

    const t = tally(answers, ids);
    const why = `\n${JSON.stringify(t)}\n${w.dump()}`;
    expect(t.twice, why).toEqual([]);
    expect(t.errors, why).toEqual([]);
    expect(t.perNode['pi-a'] ?? 0, why).toBe(0);
    // The two that were running were started once on pi-a: their answer says attempt 2.
    expect(t.perAttempt, why).toEqual({ '1': 98, '2': 2 });
    expect(seconds, why).toBeLessThan(30);
    expect(await held(w, 'pi-a'), why).toBe(0);
    expect(await w.deadLetters(), why).toEqual([]);
    Object.assign(figures, {
      answered: `${ids.length - t.errors.length}/${ids.length}`,
      'answered twice': t.twice.length,
      'kill to last answer (s)': seconds.toFixed(1),
      'per node': JSON.stringify(t.perNode),
      attempts: JSON.stringify(t.perAttempt),
    });
  });
});

// The same worker killed twice while it runs the same request, restarted at once each time (as
// pm2 does): its own queue brings the job back (BullMQ's stalled check) each time, and the third
// start answers it. BullMQ alone would fail a job that stalls twice, silently.
describe('row 2, restarted at once: one worker killed twice running the same request', () => {
  let w: World;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }], speed: 50, label: 'row2b' }).start();
    await slowSingleNode(w, 5000);
  });
  afterAll(async () => {
    await w?.close();
  });

  it('answers it on the third start', async () => {
    await withDump(w, async () => {
      await w.send([{ request_id: 'r2-twice', options: { num_predict: 8 } }]);
      for (let kill = 1; kill <= 2; kill++) {
        // Running: its start is recorded in the job, and Ollama has the call.
        await waitFor(`start ${kill} running`, async () => (await simState(w, 'pi-a')).counters.generate === kill);
        await [...w.procs].find((p) => p.name === 'worker pi-a' && p.running)!.kill('SIGKILL');
        if (kill === 2) await w.clearSimFaults('pi-a');
        w.startWorker('pi-a');
      }
      const a = (await w.allAnswered(['r2-twice'], 30_000)).get('r2-twice')!;
      expect(a).toHaveLength(1);
      expect(a[0]!.error).toBeUndefined();
      expect(a[0]!.attempt).toBe(3);
      expect((await simState(w, 'pi-a')).counters.generate).toBe(3);
      figures['killed twice running the same request'] = `answered on start ${a[0]!.attempt}`;
    });
  });
});
