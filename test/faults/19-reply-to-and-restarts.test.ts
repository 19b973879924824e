import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { report, requireBuilt, routable, waitFor, withDump, World } from './harness.js';

requireBuilt();

// Row 19: where answers go when the client's side is odd.
//   a  reply_to names a key that is a string, not a stream: the final answer goes to the default
//      stream and is dead-lettered (inside the final script an XADD there fails WRONGTYPE, and
//      left unchecked the answer is stored but never delivered);
//   b  the same with a hash and stream: true: partials and final go to the default stream;
//   c  an invalid request naming such a reply_to: answered invalid_request, dead-lettered;
//   d  a streamed generation cut off on one node and started again on another: every partial
//      carries its attempt, and the partials of the last attempt make the final text.
describe('row 19: reply_to that is not a stream, and a streamed generation restarted', () => {
  let w: World;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }, { id: 'pi-b', loaded: [] }], speed: 200, label: 'row19' }).start();
    w.startWorker('pi-a');
    w.startWorker('pi-b');
    const bridge = w.startBridge();
    await withDump(w, () => Promise.all([w.healthy('pi-a', 30_000), w.healthy('pi-b', 30_000)]));
    await withDump(w, () => routable(bridge, ['pi-a', 'pi-b'], 30_000));
  });
  afterAll(async () => {
    await w?.close();
  });

  /** Every document (partials too) of a request on a stream, in order. */
  async function docs(stream: string, id: string): Promise<InferenceResponse[]> {
    const entries = await w.admin.xrange(stream, '-', '+');
    return entries.map(([, f]) => JSON.parse(f[1] ?? '{}') as InferenceResponse).filter((d) => d.request_id === id);
  }

  it('delivers every answer somewhere a client reads, says so in the dead letters, and marks restarts', async () => {
    const t0 = Date.now();
    await withDump(w, async () => {
      const taken = `${w.n.responses}:taken`;
      const hashed = `${w.n.responses}:hashed`;
      await w.admin.set(taken, 'someone else\'s string');
      await w.admin.hset(hashed, 'f', 'v');
      // a, b, c
      await w.send([
        { request_id: 'r19-string', reply_to: taken, options: { num_predict: 8 } },
        { request_id: 'r19-hash', reply_to: hashed, stream: true, options: { num_predict: 8 } },
        { request_id: 'r19-invalid', reply_to: taken, priority: 42 },
      ]);
      const answers = await w.allAnswered(['r19-string', 'r19-hash', 'r19-invalid'], 30_000);
      expect(answers.get('r19-string')?.[0]?.error).toBeUndefined();
      expect(answers.get('r19-hash')?.[0]?.error).toBeUndefined();
      expect(answers.get('r19-invalid')?.[0]?.error?.code).toBe('invalid_request');
      const hashPartials = (await docs(w.n.responses, 'r19-hash')).filter((d) => !d.done);
      expect(hashPartials.length).toBeGreaterThan(0);
      // The client's keys are left as they were.
      expect(await w.admin.type(taken)).toBe('string');
      expect(await w.admin.type(hashed)).toBe('hash');
      const letters = await waitFor('dead letters', async () => {
        const d = await w.deadLetters();
        return ['r19-string', 'r19-hash', 'r19-invalid'].every((id) => d.some((x) => x['request_id'] === id)) ? d : undefined;
      }, 10_000);
      for (const id of ['r19-string', 'r19-hash']) {
        expect(letters.find((d) => d['request_id'] === id)?.['reason'], id).toMatch(/not a stream/);
      }

      // d: pi-a has the model loaded (so it gets the request) and cuts every stream after 3 chunks.
      await w.simFaults('pi-a', { cutStreamAfter: 3 });
      const mine = `${w.n.responses}:r19`;
      await w.send([{ request_id: 'r19-restart', reply_to: mine, stream: true, options: { num_predict: 24 } }]);
      const final = (await w.allAnswered(['r19-restart'], 30_000, mine)).get('r19-restart')![0]!;
      expect(final.error, JSON.stringify(final)).toBeUndefined();
      expect(final.attempt).toBe(2);
      expect(final.node_id).toBe('pi-b');
      const partials = (await docs(mine, 'r19-restart')).filter((d) => !d.done);
      expect(partials.every((p) => typeof p.attempt === 'number'), JSON.stringify(partials)).toBe(true);
      const first = partials.filter((p) => p.attempt === 1);
      const last = partials.filter((p) => p.attempt === 2);
      expect(first.length).toBeGreaterThan(0);
      expect(last.length).toBeGreaterThan(0);
      // Attempts do not interleave: all of attempt 1, then all of attempt 2.
      expect(partials.map((p) => p.attempt)).toEqual([...first.map(() => 1), ...last.map(() => 2)]);
      expect(last.map((p) => p.response ?? '').join('')).toBe(final.response);

      const ids = ['r19-string', 'r19-hash', 'r19-invalid', 'r19-restart'];
      const all = new Map([...(await w.answers()), ...(await w.answers(mine))]);
      const lost = ids.filter((id) => !all.has(id)).length;
      expect(lost).toBe(0);
      report({
        row: 19,
        title: 'reply_to naming a string or a hash key (answers, partials, an invalid request); a streamed generation cut after 3 chunks and restarted on another node',
        figures: {
          answered: `${ids.length - lost}/${ids.length}`,
          lost,
          'answers for a non-stream reply_to delivered to the default stream and dead-lettered': '3/3',
          'partials carrying attempt': `${partials.filter((p) => p.attempt !== undefined).length}/${partials.length}`,
          'partials of attempt 1 / 2': `${first.length} / ${last.length}`,
          seconds: ((Date.now() - t0) / 1000).toFixed(1),
        },
      });
    });
  });
});
