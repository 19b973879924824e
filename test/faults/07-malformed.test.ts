import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { requireBuilt, httpPortOf, report, waitFor, World, type Proc } from './harness.js';

requireBuilt();

/** A bad entry: its stream fields, and the request id it can be answered under (if any). */
interface Bad {
  what: string;
  fields: string[];
  answerAs?: string;
}

describe('row 7: malformed entries mixed with good ones', () => {
  let w: World;
  let bridge: Proc;
  let worker: Proc;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }], speed: 200, label: 'row7' }).start();
    worker = w.startWorker('pi-a');
    bridge = w.startBridge();
    await w.healthy('pi-a');
  });
  afterAll(async () => {
    await w?.close();
  });

  it('dead-letters every bad entry, answers those with a usable id, answers every good one, and nothing stops', async () => {
    const req = (id: string, extra: Record<string, unknown> = {}): string => JSON.stringify({ request_id: id, model: 'gemma3:1b', prompt: 'x', ...extra });
    const bad: Bad[] = [
      { what: 'not JSON', fields: ['data', '{"request_id":"m-json", this is not JSON'] },
      { what: "no 'data' field", fields: ['payload', req('m-nodata')] },
      { what: 'JSON but not an object', fields: ['data', '["m-array"]'] },
      { what: 'request id breaking the pattern', fields: ['data', req('m bad id!')] },
      { what: 'schema-invalid (priority 42)', fields: ['data', req('m-schema', { priority: 42 })], answerAs: 'm-schema' },
      { what: 'unknown field', fields: ['data', req('m-unknown', { colour: 'blue' })], answerAs: 'm-unknown' },
      // A reply_to naming the health registry: it must not be written there.
      { what: 'reply_to outside the prefix', fields: ['data', req('m-replyto', { reply_to: w.n.health })], answerAs: 'm-replyto' },
      { what: '2 MiB request', fields: ['data', req('m-big', { prompt: 'x'.repeat(2 * 1024 * 1024) })], answerAs: 'm-big' },
    ];
    const good = Array.from({ length: 24 }, (_, i) => `g7-${i}`);
    // Interleaved in one pipeline: three good, one bad, three good, ...
    const pipe = w.admin.pipeline();
    const order: Array<{ bad?: Bad; good?: string }> = [];
    good.forEach((id, i) => {
      order.push({ good: id });
      if (i % 3 === 2 && bad[(i - 2) / 3]) order.push({ bad: bad[(i - 2) / 3] });
    });
    for (const o of order) {
      if (o.good) pipe.xadd(w.n.requests, '*', 'data', req(o.good, { options: { num_predict: 8 } }));
      else pipe.xadd(w.n.requests, '*', ...o.bad!.fields);
    }
    const t0 = Date.now();
    const res = (await pipe.exec()) ?? [];
    const entryOf = new Map<Bad, string>();
    order.forEach((o, i) => {
      if (o.bad) entryOf.set(o.bad, res[i]![1] as string);
    });
    expect(entryOf.size).toBe(bad.length);

    const answerIds = [...good, ...bad.flatMap((b) => (b.answerAs ? [b.answerAs] : []))];
    let answers: Map<string, InferenceResponse[]>;
    let letters: Record<string, unknown>[];
    try {
      answers = await w.allAnswered(answerIds, 60_000);
      letters = await waitFor('a dead letter per bad entry', async () => {
        const d = await w.deadLetters();
        return d.length >= bad.length ? d : undefined;
      }, 15_000);
    } catch (err) {
      throw new Error(`${String(err)}\n${w.dump()}`);
    }
    const seconds = (Date.now() - t0) / 1000;

    // Good ones: answered once, without an error.
    for (const id of good) {
      const a = answers.get(id)!;
      expect(a, id).toHaveLength(1);
      expect(a[0]!.error, id).toBeUndefined();
      expect(a[0]!.node_id).toBe('pi-a');
    }
    // Bad ones: one dead letter each (by entry id), invalid_request; answered when they have an id.
    for (const b of bad) {
      const mine = letters.filter((d) => d['entry_id'] === entryOf.get(b));
      expect(mine, `${b.what}\n${w.dump()}`).toHaveLength(1);
      expect(mine[0]!['error_code'], b.what).toBe('invalid_request');
      if (b.answerAs) {
        expect(mine[0]!['request_id'], b.what).toBe(b.answerAs);
        const a = answers.get(b.answerAs)!;
        expect(a, b.what).toHaveLength(1);
        expect(a[0]!.error?.code, b.what).toBe('invalid_request');
      } else {
        expect(mine[0]!['request_id'], b.what).toBeUndefined();
      }
    }
    expect(letters).toHaveLength(bad.length);
    // The 2 MiB request is kept in its dead letter only as its first 64 KiB of raw text.
    const big = letters.find((d) => d['request_id'] === 'm-big')!;
    expect(typeof big['request']).toBe('string');
    expect((big['request'] as string).length).toBeLessThanOrEqual(64 * 1024);
    // reply_to outside the reply streams: the answer went to the default stream, the registry is untouched.
    expect(await w.admin.type(w.n.health)).toBe('hash');
    // Nothing left pending, both programs still up and answering /health.
    const pending = (await w.admin.xpending(w.n.requests, 'orion-inference-router')) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
    const running = [bridge, worker, w.sim].filter((p) => p.running).length;
    expect(running, w.dump()).toBe(3);
    for (const p of [bridge, worker]) {
      const r = await fetch(`http://127.0.0.1:${await httpPortOf(p)}/health`);
      expect(r.status, p.name).toBe(200);
    }
    const answered = bad.filter((b) => b.answerAs).length;
    report({
      row: 7,
      title: `Malformed entries (${bad.map((b) => b.what).join(', ')}) mixed with ${good.length} good ones`,
      figures: {
        'good answered': `${good.length}/${good.length}`,
        'bad dead-lettered': `${bad.length}/${bad.length}`,
        'bad with a usable id answered invalid_request': `${answered}/${answered}`,
        'processes running': `${running}/3`,
        seconds: seconds.toFixed(1),
      },
    });
  });
});
