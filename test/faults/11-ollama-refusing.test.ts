import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, report, ROOT, sleep, startFlow, tally, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

const NODES = ['pi-a', 'pi-b'];
/** pi-a reads the 16 GB fixture's RAM (about 20 % used), pi-b the 8 GB one's (about 62 %): pi-a comes first. */
const procRoot = (fixture: string): string[] => ['--proc-root', join(ROOT, 'test/fixtures/nodes', fixture)];
const REFUSE_MS = 15_000;
const HEARTBEAT_MS = 1000;

describe("row 11: Ollama refusing connections on one node", () => {
  let w: World;
  let a: Proc;
  let procs: Proc[];
  beforeAll(async () => {
    w = await new World({ nodes: NODES.map((id) => ({ id })), speed: 10, label: 'row11' }).start();
    a = w.startWorker('pi-a', procRoot('pi-16g'));
    procs = [a, w.startWorker('pi-b', procRoot('pi-8g')), w.startBridge()];
    for (const id of NODES) await w.healthy(id);
  });
  afterAll(async () => {
    await w?.close();
  });

  /** Ms from `sinceMs` until the node's published health says unavailable. */
  const unavailableAfter = (id: string, sinceMs: number): Promise<number> =>
    waitFor(`${id} reported unavailable`, async () => {
      const doc = await w.admin.get(w.n.healthKey(id));
      return doc !== null && (JSON.parse(doc) as { available: boolean }).available === false ? Date.now() - sinceMs : undefined;
    }, 10_000, 20);

  it('reports the node unavailable within 2 heartbeats, serves its requests elsewhere, and does not use up attempts', async () => {
    // 2 requests every 300 ms, each a generation of about 0.2 s: all on pi-a while it is healthy.
    const flow = startFlow(w, 'r11', { everyMs: 300, options: { num_predict: 16 } });
    await withDump(w, async () => {
      await waitFor('6 answers from pi-a before the fault', async () => [...(await w.answers()).values()].filter((l) => l[0]?.node_id === 'pi-a').length >= 6, 30_000);
      const faultAt = Date.now();
      await w.simFaults('pi-a', { refuseConnections: REFUSE_MS });
      const unavailableMs = await unavailableAfter('pi-a', faultAt);
      await sleep(3000);
      await flow.stop();
      const { ids, sentAt } = flow;
      const answers = await w.allAnswered(ids, 30_000);
      const doneMs = Date.now() - faultAt;
      // All answered while pi-a still refuses: nothing waited for it to come back.
      expect(doneMs).toBeLessThan(REFUSE_MS);
      const t = tally(answers, ids);
      expect(t.errors).toEqual([]);
      expect(await w.deadLetters()).toEqual([]);

      // What pi-a handed back: refused connections give the attempt back (counts: false);
      // generations cut off when its connections dropped were started there (counts: true).
      const handedBack = new Map(a.logs(/^handed back for another node$/).map((o) => [String(o['request_id']), o['counts'] === true]));
      const afterFault = ids.filter((id) => sentAt.get(id)! >= faultAt);
      const elsewhere = afterFault.filter((id) => answers.get(id)![0]!.node_id !== 'pi-b');
      expect(elsewhere, 'requests sent after the fault answered by pi-a').toEqual([]);
      for (const id of ids) {
        const attempt = answers.get(id)![0]!.attempt;
        if (attempt === 1) continue;
        expect(handedBack.get(id), `${id} answered with attempt ${attempt} but was not started on pi-a`).toBe(true);
      }
      const refused = [...handedBack].filter(([, counts]) => !counts).map(([id]) => id);
      for (const id of refused) expect(answers.get(id)![0]!.attempt, id).toBe(1);
      expect(unavailableMs).toBeLessThanOrEqual(2 * HEARTBEAT_MS);
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);

      // With no request to fail on it, only the heartbeat's probe can notice: pi-b, idle now.
      const idleFaultAt = Date.now();
      await w.simFaults('pi-b', { refuseConnections: 3000 });
      const idleUnavailableMs = await unavailableAfter('pi-b', idleFaultAt);
      expect(idleUnavailableMs).toBeLessThanOrEqual(2 * HEARTBEAT_MS);
      report({
        row: 11,
        title: `Ollama refusing connections on one node of two (${REFUSE_MS / 1000} s), requests flowing`,
        figures: {
          'reported unavailable after (ms; heartbeat 1000), with requests failing on it': unavailableMs,
          'idle, by the heartbeat probe alone': idleUnavailableMs,
          answered: `${ids.length - t.errors.length}/${ids.length}`,
          'sent after the fault, answered by the other node': `${afterFault.length - elsewhere.length}/${afterFault.length}`,
          'handed back refused (attempt given back)': refused.length,
          'handed back cut off mid-generation (attempt counted)': handedBack.size - refused.length,
          'answers by attempt': JSON.stringify(t.perAttempt),
          'dead letters': 0,
        },
      });
    });
  });
});
