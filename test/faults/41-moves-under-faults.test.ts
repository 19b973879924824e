import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpPortOf, report, requireBuilt, routable, simState, tally, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

// Row 41: moves of waiting jobs (--routing balanced) while things break. 24 requests all wait
// on pi-a (the only node); pi-b comes up with the model loaded, so the bridge moves the back of
// pi-a's queue to it. Meanwhile the bridge is killed (SIGKILL) and started again, and then pi-a's
// worker is killed: its waiting jobs go to pi-b (dead-node sweep), its running one once its lock
// lapses. Every request must be answered exactly once, and no generation may start twice except
// the one the killed worker was running.
describe('row 41: moves under a killed bridge and a killed worker', () => {
  let w: World;
  let bridge: Proc;
  const workers = new Map<string, Proc>();
  const figures: Record<string, string | number> = {};
  const FLAGS = ['--routing', 'balanced', '--default-answer-time', '6s', '--default-load-time', '10s'];
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }, { id: 'pi-b' }], speed: 10, label: 'row41' }).start();
    workers.set('pi-a', w.startWorker('pi-a', ['--concurrency', '1']));
    bridge = w.startBridge('bridge-a', FLAGS);
    await withDump(w, () => w.healthy('pi-a', 30_000));
    await withDump(w, () => routable(bridge, ['pi-a']));
  });
  afterAll(async () => {
    await w?.close();
    if (Object.keys(figures).length > 0) report({ row: 41, title: 'Moves of waiting jobs under a killed bridge and a killed worker', figures });
  });

  it('answers every request exactly once', async () => {
    const ids = Array.from({ length: 24 }, (_, i) => `mv-${i}`);
    await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 60, seed: i } })));
    await withDump(w, () => waitFor('24 jobs on pi-a', async () => (await w.queueCounts('pi-a')).prioritized + (await w.queueCounts('pi-a')).active >= 20, 30_000));

    // pi-b comes up warm: the bridge starts moving the back of pi-a's queue there.
    workers.set('pi-b', w.startWorker('pi-b', ['--concurrency', '1']));
    await withDump(w, () => w.healthy('pi-b', 30_000));
    const port = await httpPortOf(bridge);
    await withDump(w, () => waitFor('a first move', async () => {
      const s = (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as { moves: number };
      return s.moves > 0;
    }, 30_000));

    // The bridge dies mid-way and a new one takes over its consumer name.
    await bridge.kill('SIGKILL');
    bridge = w.startBridge('bridge-a', FLAGS);
    await withDump(w, () => routable(bridge, ['pi-a', 'pi-b']));
    // Then pi-a's worker dies with jobs waiting and one running.
    await workers.get('pi-a')!.kill('SIGKILL');

    const answers = await withDump(w, () => w.allAnswered(ids, 120_000));
    const t = tally(answers, ids);
    figures['answered'] = `${ids.length - t.errors.length}/${ids.length}`;
    figures['answered twice'] = t.twice.length;
    figures['per node'] = JSON.stringify(t.perNode);
    figures['per attempt'] = JSON.stringify(t.perAttempt);
    expect(t.twice).toEqual([]);
    expect(t.errors).toEqual([]);
    expect(t.perNode['pi-b'] ?? 0).toBeGreaterThan(0);
    // Generations started on the simulator: one per request, plus at most the one pi-a's worker
    // was running when it died (its attempt counted, restarted on pi-b).
    const started = (await simState(w, 'pi-a')).counters.requests + (await simState(w, 'pi-b')).counters.requests;
    figures['generations started'] = started;
    expect(started).toBeLessThanOrEqual(ids.length + 1);
    expect(Object.keys(t.perAttempt).every((a) => a === '1' || a === '2')).toBe(true);
    // A move the killed bridge left half-way is finished (or dropped, its request answered) by
    // the bridge after it once the record is 10 s old: wait for that, not for an instant.
    await withDump(w, () => waitFor('no move record left', async () => (await w.admin.hlen(w.n.moves)) === 0, 30_000));
  });
});
