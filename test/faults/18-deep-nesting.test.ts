import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pendingAt, report, requireBuilt, routable, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

/** A request whose metadata nests `depth` levels (20 KB at 10,000). */
function deep(id: string, depth: number, extra = ''): string {
  return `{"request_id":"${id}","model":"gemma3:1b","prompt":"x"${extra},"metadata":${'{"a":'.repeat(depth - 1)}{}${'}'.repeat(depth - 1)}}`;
}

// Row 18: a request nested 10,000 levels deep in `metadata` (valid by the schema), sent in one
// batch with good requests and one that times out. JSON.stringify recurses: left unchecked, the
// batch's add fails, the good ones end as `timeout`, the deadline sweep stops answering anyone
// and it all comes back after a restart. Bounded at 64 levels: refused, answered, dead-lettered.
describe('row 18: a request nested 10,000 levels deep', () => {
  let w: World;
  let bridge: Proc;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }], speed: 200, label: 'row18' }).start();
    w.startWorker('pi-a');
    bridge = w.startBridge();
    await withDump(w, () => w.healthy('pi-a', 30_000));
    await withDump(w, () => routable(bridge, ['pi-a'], 30_000));
  });
  afterAll(async () => {
    await w?.close();
  });

  it('answers and dead-letters the deep ones; the batch, the deadline sweep and a restart go on', async () => {
    const t0 = Date.now();
    await withDump(w, async () => {
      const good = Array.from({ length: 20 }, (_, i) => `r18-good-${i}`);
      const pipe = w.admin.pipeline();
      const req = (id: string, extra: Record<string, unknown> = {}): string => JSON.stringify({ request_id: id, model: 'gemma3:1b', prompt: 'x', options: { num_predict: 8 }, ...extra });
      good.slice(0, 10).forEach((id) => pipe.xadd(w.n.requests, '*', 'data', req(id)));
      pipe.xadd(w.n.requests, '*', 'data', deep('r18-deep', 10_000));
      // Deep and schema-invalid too: answered and dead-lettered, no unhandled rejection.
      pipe.xadd(w.n.requests, '*', 'data', deep('r18-deep-invalid', 10_000, ',"priority":42'));
      // Past its deadline when read (timeout_ms 1): only the deadline sweep answers it.
      pipe.xadd(w.n.requests, '*', 'data', req('r18-late', { timeout_ms: 1 }));
      good.slice(10).forEach((id) => pipe.xadd(w.n.requests, '*', 'data', req(id)));
      await pipe.exec();

      const ids = [...good, 'r18-deep', 'r18-deep-invalid', 'r18-late'];
      const answers = await w.allAnswered(ids, 30_000);
      for (const id of good) expect(answers.get(id)?.[0]?.error, id).toBeUndefined();
      for (const id of ['r18-deep', 'r18-deep-invalid']) {
        expect(answers.get(id)?.[0]?.error?.code, id).toBe('invalid_request');
        expect(answers.get(id)?.[0]?.error?.message, id).toMatch(/more than 64 levels/);
      }
      expect(answers.get('r18-late')?.[0]?.error?.code).toBe('timeout');
      const letters = await waitFor('dead letters', async () => {
        const d = await w.deadLetters();
        return ['r18-deep', 'r18-deep-invalid', 'r18-late'].every((id) => d.some((x) => x['request_id'] === id)) ? d : undefined;
      }, 10_000);
      const deepLetter = letters.find((d) => d['request_id'] === 'r18-deep')!;
      expect(typeof deepLetter['request']).toBe('string');

      // A restart: nothing comes back (no entry left pending, no second answer).
      expect(await pendingAt(w, 'bridge-a')).toBe(0);
      await bridge.kill('SIGKILL');
      const again = w.startBridge('bridge-a');
      await routable(again, ['pi-a'], 30_000);
      // A marker sent after the restart: once it is answered, the new bridge has read its
      // pending entries and the stream up to it, so anything coming back would have by now.
      await w.send([{ request_id: 'r18-marker' }]);
      await w.allAnswered(['r18-marker'], 30_000);
      const after = await w.answers();
      const twice = ids.filter((id) => (after.get(id)?.length ?? 0) > 1);
      expect(twice).toEqual([]);
      expect(await pendingAt(w, 'bridge-a')).toBe(0);
      const unhandled = [bridge, again].flatMap((p) => p.output.filter((l) => /unhandled|Maximum call stack/i.test(l)));
      expect(unhandled).toEqual([]);
      const lost = ids.filter((id) => !after.has(id)).length;
      expect(lost).toBe(0);
      report({
        row: 18,
        title: 'Requests nested 10,000 levels deep in metadata (one also schema-invalid), in one batch with 20 good ones and one past its deadline (answered by the deadline sweep); then a bridge restart',
        figures: {
          answered: `${ids.length - lost}/${ids.length}`,
          lost,
          'good answered without error': `${good.length}/${good.length}`,
          'deep ones answered invalid_request and dead-lettered': '2/2',
          'answered twice after the restart': twice.length,
          'unhandled rejections': unhandled.length,
          seconds: ((Date.now() - t0) / 1000).toFixed(1),
        },
      });
    });
  });
});
