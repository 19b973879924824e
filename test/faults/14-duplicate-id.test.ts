import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { requireBuilt, report, simState, slowSingleNode, waitFor, withDump, World } from './harness.js';

requireBuilt();

// Row 14: the same request id sent twice runs once; every reply stream named gets the answer.
//   a  sent again while it runs, naming another reply stream, and a third time once done,
//      naming a third one (answered at once from the stored final answer);
//   b  sent twice to the same reply stream while it runs: one answer there;
//   c  sent twice in the same batch (one pipeline), to two reply streams.
describe('row 14: the same request id sent twice', () => {
  let w: World;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }], speed: 50, label: 'row14' }).start();
    // About 1 s per request, so a duplicate can arrive while the first runs.
    await slowSingleNode(w, 100);
  });
  afterAll(async () => {
    await w?.close();
  });

  const generations = async (): Promise<number> => (await simState(w, 'pi-a')).counters.generate;
  const finals = async (stream: string, id: string): Promise<InferenceResponse[]> => (await w.answers(stream)).get(id) ?? [];

  it('runs it once and answers every reply stream', async () => {
    const other = `${w.n.responses}:other`;
    const late = `${w.n.responses}:late`;
    await withDump(w, async () => {
      // a: first send, then a duplicate to another stream while it runs.
      await w.send([{ request_id: 'r14-a', options: { num_predict: 8 } }]);
      await waitFor('r14-a running', async () => (await generations()) === 1);
      await w.send([{ request_id: 'r14-a', reply_to: other, options: { num_predict: 8 } }]);
      await w.allAnswered(['r14-a'], 15_000);
      await w.allAnswered(['r14-a'], 15_000, other);
      // a: a third send once it is done, answered from the stored final.
      const lateSentAt = Date.now();
      await w.send([{ request_id: 'r14-a', reply_to: late, options: { num_predict: 8 } }]);
      await w.allAnswered(['r14-a'], 15_000, late);
      const lateMs = Date.now() - lateSentAt;
      const [a1, a2, a3] = [await finals(w.n.responses, 'r14-a'), await finals(other, 'r14-a'), await finals(late, 'r14-a')];
      expect([a1.length, a2.length, a3.length]).toEqual([1, 1, 1]);
      expect(a1[0]!.error).toBeUndefined();
      expect(a2[0]).toEqual(a1[0]);
      expect(a3[0]).toEqual(a1[0]);
      expect(await generations()).toBe(1);

      // b: twice to the same stream while it runs.
      await w.send([{ request_id: 'r14-b', options: { num_predict: 8 } }]);
      await waitFor('r14-b running', async () => (await generations()) === 2);
      await w.send([{ request_id: 'r14-b', options: { num_predict: 8 } }]);
      // c: twice in one pipeline, to two streams.
      await w.send([
        { request_id: 'r14-c', options: { num_predict: 8 } },
        { request_id: 'r14-c', reply_to: other, options: { num_predict: 8 } },
      ]);
      await w.allAnswered(['r14-b', 'r14-c'], 15_000);
      await w.allAnswered(['r14-c'], 15_000, other);
      // Both duplicates were read and acked by the bridge (nothing left to answer later).
      await waitFor('every entry acked', async () => ((await w.admin.xpending(w.n.requests, 'orion-inference-router')) as [number])[0] === 0);
      const b = await finals(w.n.responses, 'r14-b');
      const c1 = await finals(w.n.responses, 'r14-c');
      const c2 = await finals(other, 'r14-c');
      expect([b.length, c1.length, c2.length]).toEqual([1, 1, 1]);
      expect(c2[0]).toEqual(c1[0]);
      expect(await generations()).toBe(3);
      expect(await w.deadLetters()).toEqual([]);
      report({
        row: 14,
        title: 'The same request id sent twice (while running, after done, in one batch; same or other reply stream)',
        figures: {
          'sends': 7,
          'request ids': 3,
          'Ollama generations': await generations(),
          'finals per reply stream': 1,
          'late duplicate answered from the stored final (ms)': lateMs,
        },
      });
    });
  });
});
