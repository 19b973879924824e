import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { report, requireBuilt, routable, slowSingleNode, waitFor, withDump, World } from './harness.js';

requireBuilt();

const DAY_MS = 24 * 3600_000;

// Row 17: timeouts at the edges, and an entry id from the future.
//   a  timeout_ms 2^31 (past what setTimeout honours): refused invalid_request, not `timeout` at once;
//   b  timeout_ms 24 h, the most allowed: answered, its request record living past the deadline;
//   c  an entry added with an id 30 days ahead, and `*` entries after it (Redis gives them ids
//      just above it): answered, not `timeout`; a short timeout_ms after it still holds;
//   d  a request whose deadline passes while no bridge runs: answered `timeout` quoting its own
//      timeout_ms.
describe('row 17: long timeouts and an entry id from the future', () => {
  let w: World;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }], speed: 50, label: 'row17' }).start();
    // About 100 ms per streamed chunk: a request of 8 tokens runs about a second.
    await slowSingleNode(w, 100);
  });
  afterAll(async () => {
    await w?.close();
  });

  const answerOf = async (id: string, timeoutMs = 30_000): Promise<InferenceResponse> => (await w.allAnswered([id], timeoutMs)).get(id)![0]!;

  it('answers each honestly and loses nothing', async () => {
    const t0 = Date.now();
    await withDump(w, async () => {
      // a
      await w.send([{ request_id: 'r17-huge', timeout_ms: 2 ** 31 }]);
      const huge = await answerOf('r17-huge');
      expect(huge.error?.code).toBe('invalid_request');
      expect(huge.error?.message).toMatch(/timeout_ms must be <= 86400000/);

      // b
      // About 4 s of generation: its record is read while it runs (an answer resets the TTL to 24 h).
      await w.send([{ request_id: 'r17-day', timeout_ms: DAY_MS, options: { num_predict: 40 } }]);
      const ttl = await waitFor('the 24 h request record', async () => {
        const t = await w.admin.ttl(w.n.requestKey('r17-day'));
        return t > 0 ? t : undefined;
      }, 10_000, 20);
      expect(ttl).toBeGreaterThan(DAY_MS / 1000);
      const day = await answerOf('r17-day');
      expect(day.error, JSON.stringify(day)).toBeUndefined();

      // c
      const future = `${Date.now() + 30 * DAY_MS}-0`;
      await w.admin.xadd(w.n.requests, future, 'data', JSON.stringify({ request_id: 'r17-future', model: 'gemma3:1b', prompt: 'from the future', options: { num_predict: 8 } }));
      const after = await w.send(Array.from({ length: 5 }, (_, i) => ({ request_id: `r17-after-${i}`, options: { num_predict: 8 } })));
      const sentShort = Date.now();
      await w.send([{ request_id: 'r17-short', timeout_ms: 2000, options: { num_predict: 400 } }]);
      const answers = await w.allAnswered(['r17-future', ...after, 'r17-short'], 60_000);
      for (const id of ['r17-future', ...after]) {
        const a = answers.get(id)![0]!;
        expect(a.error, `${id}: ${JSON.stringify(a)}`).toBeUndefined();
        expect(a.queue_ms ?? 0, id).toBeLessThan(30_000);
      }
      const short = answers.get('r17-short')![0]!;
      expect(short.error?.code).toBe('timeout');
      expect(short.error?.message).toMatch(/\(2000 ms\)/);
      const [shortEntry] = await w.admin.xrevrange(w.n.responses, '+', '-', 'COUNT', 200).then((es) => es.filter(([, f]) => (f[1] ?? '').includes('"r17-short"')));
      const shortAfterMs = Number(shortEntry![0].split('-')[0]) - sentShort;
      // Answered at its own deadline: not at once (a timer clamped to 1 ms), not 30 days later.
      expect(shortAfterMs).toBeGreaterThanOrEqual(1500);

      // d
      const [bridge] = [...w.procs].filter((p) => p.name.startsWith('bridge'));
      await bridge!.kill('SIGKILL');
      await w.send([{ request_id: 'r17-down', timeout_ms: 1000 }]);
      await new Promise((r) => setTimeout(r, 2000));
      const again = w.startBridge('bridge-b');
      await routable(again, ['pi-a'], 30_000);
      const down = await answerOf('r17-down');
      expect(down.error?.code).toBe('timeout');
      expect(down.error?.message).toMatch(/\(1000 ms\)/);

      const ids = ['r17-huge', 'r17-day', 'r17-future', ...after, 'r17-short', 'r17-down'];
      const all = await w.answers();
      const lost = ids.filter((id) => !all.has(id)).length;
      const twice = ids.filter((id) => (all.get(id)?.length ?? 0) > 1).length;
      expect(lost).toBe(0);
      expect(twice).toBe(0);
      // An error answer is published first and dead-lettered just after: wait for the letters.
      const lettered = ['r17-huge', 'r17-short', 'r17-down'];
      const letters = await waitFor('the dead letters', async () => {
        const d = await w.deadLetters();
        return lettered.every((id) => d.some((x) => x['request_id'] === id)) ? d : undefined;
      }, 10_000).catch(() => w.deadLetters());
      for (const id of lettered) expect(letters.some((d) => d['request_id'] === id), `${id} dead-lettered`).toBe(true);
      report({
        row: 17,
        title: 'timeout_ms 2^31 and 24 h, an entry id 30 days ahead followed by `*` entries, a deadline passing with no bridge running',
        figures: {
          answered: `${ids.length - lost}/${ids.length}`,
          lost,
          'answered twice': twice,
          'timeout_ms 2^31': huge.error?.code ?? 'answered',
          'record TTL of a 24 h request (s)': ttl,
          'after the future id, answered without error': `${after.length + 1}/${after.length + 1}`,
          'timeout_ms 2000 answered after (ms)': shortAfterMs,
          'deadline passed with no bridge: message quotes': /\((\d+) ms\)/.exec(down.error?.message ?? '')?.[1] ?? '?',
          seconds: ((Date.now() - t0) / 1000).toFixed(1),
        },
      });
    });
  });
});
