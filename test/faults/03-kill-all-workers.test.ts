import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, eligibleAt, held, report, routable, simState, sleep, tally, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

// --routing guide: the row's premise is the guide's stickiness (requests stay on the node with
// the model loaded); balanced routing would spread them (rows 40 and 41 cover it).
const GUIDE = ['--routing', 'guide'];

// Row 3: pi-a holds the gemma3:1b requests, pi-b the llama3.2:3b ones (each node has only its
// model loaded, so requests stick to it), both slowed so they hold them; pi-c holds nothing.
// Every worker is SIGKILLed; 20 s later pi-a alone comes back. Its own running jobs come back
// through BullMQ's stalled check, pi-b's jobs are moved to it by the bridge.
describe('row 3: SIGKILL every worker, restart one 20 s later', () => {
  let w: World;
  let bridge: Proc;
  const workers = new Map<string, Proc>();
  const nodes = ['pi-a', 'pi-b', 'pi-c'];
  beforeAll(async () => {
    w = await new World({
      nodes: [
        { id: 'pi-a', loaded: ['gemma3:1b'] },
        { id: 'pi-b', loaded: ['llama3.2:3b'] },
        { id: 'pi-c', loaded: [] },
      ],
      speed: 50,
      label: 'row3',
    }).start();
    for (const id of ['pi-a', 'pi-b']) await w.simFaults(id, { slowStreamMs: 5000 });
    for (const id of nodes) workers.set(id, w.startWorker(id));
    bridge = w.startBridge('bridge-a', GUIDE);
    for (const id of nodes) await withDump(w, () => w.healthy(id, 30_000));
    await withDump(w, () => routable(bridge, nodes));
  });
  afterAll(async () => {
    await w?.close();
  });

  it('answers every request once one worker is back', async () => {
    const gemma = Array.from({ length: 10 }, (_, i) => `r3-g${i}`);
    const llama = Array.from({ length: 10 }, (_, i) => `r3-l${i}`);
    const ids = [...gemma, ...llama];
    await w.send([
      ...gemma.map((request_id, i) => ({ request_id, options: { num_predict: 8, seed: i } })),
      ...llama.map((request_id, i) => ({ request_id, model: 'llama3.2:3b', options: { num_predict: 8, seed: i } })),
    ]);
    await withDump(w, () =>
      // Running: Ollama (the simulator) has both calls, so the start is recorded in the job.
      waitFor('pi-a and pi-b holding 10 requests each, 2 running', async () => {
        for (const id of ['pi-a', 'pi-b']) if ((await held(w, id)) !== 10 || (await simState(w, id)).counters.generate !== 2) return false;
        return true;
      }),
    );

    await Promise.all(nodes.map((id) => workers.get(id)!.kill('SIGKILL')));
    const killedAt = Date.now();
    // The Brain keeps sending during the outage: once every node is dead, these are held.
    await withDump(w, () => waitFor('no eligible node at the bridge', async () => (await eligibleAt(bridge)).length === 0));
    const during = Array.from({ length: 5 }, (_, i) => `r3-h${i}`);
    ids.push(...during);
    await w.send(during.map((request_id, i) => ({ request_id, options: { num_predict: 8, seed: 100 + i } })));
    await withDump(w, () => waitFor('5 requests held for lack of a node', () => bridge.logs(/no eligible node: request held/).length === 5));
    // Nothing can be answered while no worker runs (a condition would pass at once: wait it out).
    await sleep(20_000 - (Date.now() - killedAt));
    expect((await w.answers()).size, w.dump()).toBe(0);
    await w.clearSimFaults('pi-a');
    await w.clearSimFaults('pi-b');
    const restartedAt = Date.now();
    workers.set('pi-a', w.startWorker('pi-a'));
    const answers = await withDump(w, () => w.allAnswered(ids, 60_000));
    const seconds = (Date.now() - restartedAt) / 1000;

    const t = tally(answers, ids);
    const why = `\n${JSON.stringify(t)}\n${w.dump()}`;
    expect(t.twice, why).toEqual([]);
    expect(t.errors, why).toEqual([]);
    expect(t.perNode, why).toEqual({ 'pi-a': 25 });
    // The four that were running when the workers died were started once before.
    expect(t.perAttempt, why).toEqual({ '1': 21, '2': 4 });
    // (A job leaves the active list just after its answer is out.)
    await withDump(w, () => waitFor('every queue empty', async () => {
      for (const id of nodes) if ((await held(w, id)) !== 0) return false;
      return true;
    }));
    expect(await w.deadLetters(), why).toEqual([]);
    report({
      row: 3,
      title: 'SIGKILL every worker (20 requests held, 4 running; 5 more sent while none runs), restart one 20 s later',
      figures: {
        answered: `${ids.length - t.errors.length}/${ids.length}`,
        'answered twice': 0,
        'down (s)': ((restartedAt - killedAt) / 1000).toFixed(1),
        'restart to last answer (s)': seconds.toFixed(1),
        attempts: JSON.stringify(t.perAttempt),
      },
    });
  });
});
