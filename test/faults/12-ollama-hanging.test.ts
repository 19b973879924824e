import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, report, ROOT, routable, tally, withDump, World, type Proc } from './harness.js';

requireBuilt();

// --routing guide: the row's premise is the guide's stickiness (requests stay on the node with
// the model loaded); balanced routing would spread them (rows 40 and 41 cover it).
const GUIDE = ['--routing', 'guide'];

const NODES = ['pi-a', 'pi-b'];
/** pi-a reads the 16 GB fixture's RAM (about 20 % used), pi-b the 8 GB one's (about 62 %): pi-a comes first. */
const procRoot = (fixture: string): string[] => ['--proc-root', join(ROOT, 'test/fixtures/nodes', fixture)];
/** The worker's per-call inactivity limit here (production default 5m). */
const OLLAMA_TIMEOUT_MS = 2000;
const TIMEOUT_MS = 20_000;

describe('row 12: Ollama hanging on one node', () => {
  let w: World;
  let a: Proc;
  let procs: Proc[];
  beforeAll(async () => {
    w = await new World({ nodes: NODES.map((id) => ({ id })), speed: 50, label: 'row12' }).start();
    const limit = ['--ollama-timeout', `${OLLAMA_TIMEOUT_MS}ms`];
    a = w.startWorker('pi-a', [...procRoot('pi-16g'), ...limit]);
    procs = [a, w.startWorker('pi-b', [...procRoot('pi-8g'), ...limit]), w.startBridge('bridge-a', GUIDE)];
    for (const id of NODES) await w.healthy(id);
    await routable(procs[2]!, NODES);
  });
  afterAll(async () => {
    await w?.close();
  });

  it('gives up on the hanging call after --ollama-timeout and serves the request on another node, well within timeout_ms', async () => {
    await withDump(w, async () => {
      // pi-a accepts generations and never answers; its /api/ps and /api/tags still do, so it
      // stays available (and first in routing order): only the per-call limit can save the request.
      await w.simFaults('pi-a', { hang: true });
      const ids = Array.from({ length: 4 }, (_, i) => `r12-${i}`);
      const t0 = Date.now();
      await w.send(ids.map((request_id) => ({ request_id, timeout_ms: TIMEOUT_MS, options: { num_predict: 8 } })));
      const answers = await w.allAnswered(ids, TIMEOUT_MS + 5000);
      const seconds = (Date.now() - t0) / 1000;
      const t = tally(answers, ids);
      expect(t.errors).toEqual([]);
      expect(t.perNode).toEqual({ 'pi-b': ids.length });
      // Started on pi-a (attempt 1, counted), answered on pi-b as attempt 2.
      expect(t.perAttempt).toEqual({ '2': ids.length });
      const handedBack = a.logs(/^handed back for another node$/);
      expect(handedBack.map((o) => o['request_id']).sort()).toEqual(ids);
      for (const o of handedBack) expect(o).toMatchObject({ code: 'backend_error', counts: true, err: expect.stringMatching(/no answer from ollama/i) });
      expect(seconds).toBeLessThan(TIMEOUT_MS / 1000);
      expect(await w.deadLetters()).toEqual([]);
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);
      report({
        row: 12,
        title: `Ollama hanging on one node of two (generations accepted, never answered); worker --ollama-timeout ${OLLAMA_TIMEOUT_MS / 1000}s, request timeout_ms ${TIMEOUT_MS}`,
        figures: {
          answered: `${ids.length - t.errors.length}/${ids.length}`,
          'per node': JSON.stringify(t.perNode),
          'answers by attempt': JSON.stringify(t.perAttempt),
          'handed back by the hanging node': handedBack.length,
          'all answered after (s)': seconds.toFixed(1),
          'dead letters': 0,
        },
      });
    });
  });
});
