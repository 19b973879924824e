import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, held, report, routable, simState, tally, waitFor, withDump, workerOutcomes, World, type Proc } from './harness.js';

requireBuilt();

// Row 5: the victim (the only node with the model loaded) holds 10 requests, 2 of them running
// slowly, and is SIGSTOPped. Past stale-after its TTL key lapses and the bridge moves its jobs
// to pi-b; then it gets SIGCONT. Its two generations finish (the simulator kept streaming to
// the paused process) or are cut by its lost locks, and whatever it tries to answer is refused
// by the owner guard: every request is answered exactly once, by pi-b.
describe('row 5: SIGSTOP a worker past stale-after, then SIGCONT', () => {
  let w: World;
  const workers = new Map<string, Proc>();
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }, { id: 'pi-b', loaded: [] }], speed: 50, label: 'row5' }).start();
    // About 1.6 s per running request on pi-a: still running when it is stopped, done (in the
    // simulator) long before it is resumed.
    await w.simFaults('pi-a', { slowStreamMs: 200 });
    for (const id of ['pi-a', 'pi-b']) workers.set(id, w.startWorker(id));
    // --routing guide: the row needs every request on the one node with the model loaded;
    // balanced routing would spread them (row 41 covers moves under faults with it).
    const bridge = w.startBridge('bridge-a', ['--routing', 'guide']);
    for (const id of ['pi-a', 'pi-b']) await withDump(w, () => w.healthy(id, 30_000));
    await withDump(w, () => routable(bridge, ['pi-a', 'pi-b']));
  });
  afterAll(async () => {
    await w?.close();
  });

  it('re-routes the paused worker\'s jobs and refuses its late answers', async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `r5-${i}`);
    const zombie = workers.get('pi-a')!;
    await withDump(w, async () => {
      // Streamed: the zombie's late partial answers must be refused too.
      await w.send(ids.map((request_id, i) => ({ request_id, stream: true, options: { num_predict: 8, seed: i } })));
      await waitFor('pi-a holding 10 requests, 2 running', async () => (await held(w, 'pi-a')) === 10 && (await simState(w, 'pi-a')).counters.generate === 2);
      zombie.signal('SIGSTOP');
      const stoppedAt = Date.now();
      const answers = await w.allAnswered(ids, 60_000);
      const seconds = (Date.now() - stoppedAt) / 1000;
      // The simulator finished (or dropped) the zombie's two generations meanwhile.
      await waitFor('pi-a simulator idle', async () => {
        const s = await simState(w, 'pi-a');
        return s.queue.active + s.queue.pending === 0;
      });
      const before = tally(answers, ids);
      expect(before.perNode).toEqual({ 'pi-b': 10 });
      const zombiePartials = async (): Promise<number> =>
        (await w.admin.xrange(w.n.responses, '-', '+')).filter(([, f]) => {
          const d = JSON.parse(f[1]!) as { done: boolean; node_id?: string };
          return !d.done && d.node_id === 'pi-a';
        }).length;
      const partialsBefore = await zombiePartials();

      zombie.signal('SIGCONT');
      const contAt = Date.now();
      // The zombie ends both of the jobs it was running without answering: superseded (its
      // answer refused by the owner guard) or cancelled (lock lost first).
      const outcomes = await waitFor('the zombie to finish its two jobs', async () => {
        const o = await workerOutcomes(zombie);
        return (o['superseded'] ?? 0) + (o['cancelled'] ?? 0) >= 2 ? o : undefined;
      });
      const outcomesS = (Date.now() - contAt) / 1000;
      const partialsAfter = await zombiePartials();
      const after = await w.answers();
      const t = tally(after, ids);
      const why = `\n${JSON.stringify({ t, outcomes, partialsBefore, partialsAfter })}`;
      expect(partialsAfter, why).toBe(partialsBefore);
      expect(t.twice, why).toEqual([]);
      expect(t.errors, why).toEqual([]);
      expect(t.perNode, why).toEqual({ 'pi-b': 10 });
      expect(t.perAttempt, why).toEqual({ '1': 8, '2': 2 });
      expect(outcomes['ok'] ?? 0, why).toBe(0);
      expect(await held(w, 'pi-a'), why).toBe(0);
      expect(await w.deadLetters(), why).toEqual([]);
      // And it works again: healthy, it takes (and answers) new requests.
      await w.clearSimFaults('pi-a');
      await w.healthy('pi-a', 30_000);
      const more = ['r5-after-0', 'r5-after-1'];
      await w.send(more.map((request_id) => ({ request_id, options: { num_predict: 8 } })));
      const late = tally(await w.allAnswered(more, 15_000), more);
      expect(late.errors, why).toEqual([]);
      report({
        row: 5,
        title: 'SIGSTOP a worker holding 10 requests (2 running) past stale-after, then SIGCONT',
        figures: {
          answered: `${ids.length}/${ids.length}, all by the other node`,
          'answered twice': 0,
          'stop to last answer (s)': seconds.toFixed(1),
          'zombie outcomes after SIGCONT': JSON.stringify(outcomes),
          'zombie partials after SIGCONT': partialsAfter - partialsBefore,
          'zombie finished its 2 jobs after SIGCONT in (s)': outcomesS.toFixed(1),
          attempts: JSON.stringify(t.perAttempt),
        },
      });
    });
  });
});
