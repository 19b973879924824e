import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, report, routable, waitFor, World } from './harness.js';

requireBuilt();

describe('row 1: 1,000 requests over 3 workers', () => {
  let w: World;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }, { id: 'pi-b' }, { id: 'pi-c' }], speed: 200, label: 'row1' }).start();
    for (const id of ['pi-a', 'pi-b', 'pi-c']) w.startWorker(id);
    const bridge = w.startBridge();
    // Every node in the bridge's own view, not only in Redis: else the burst's first batches
    // see one or two nodes, and the row measures the start-up, not the routing.
    await routable(bridge, ['pi-a', 'pi-b', 'pi-c']);
  });
  afterAll(async () => {
    await w?.close();
  });

  it('answers every request exactly once and leaves queues and the dead-letter stream empty', async () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `r1-${i}`);
    const t0 = Date.now();
    await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 8, seed: i } })));
    let answers;
    try {
      answers = await w.allAnswered(ids, 120_000);
    } catch (err) {
      throw new Error(`${String(err)}\n${w.dump()}`);
    }
    const seconds = (Date.now() - t0) / 1000;
    const twice = ids.filter((id) => (answers.get(id)?.length ?? 0) > 1);
    const errors = ids.filter((id) => answers.get(id)?.[0]?.error);
    const perNode: Record<string, number> = {};
    for (const id of ids) {
      const node = answers.get(id)![0]!.node_id ?? '?';
      perNode[node] = (perNode[node] ?? 0) + 1;
    }
    expect(twice).toEqual([]);
    expect(errors).toEqual([]);
    // A worker publishes the answer, then BullMQ moves the job out of active: wait for the last.
    for (const id of ['pi-a', 'pi-b', 'pi-c']) {
      const left = async () => {
        const c = await w.queueCounts(id);
        return c.wait + c.active + c.prioritized + c.delayed + c.failed;
      };
      await waitFor(`${id} queue empty`, async () => (await left()) === 0, 20_000).catch(() => undefined);
      expect(await left(), id).toBe(0);
    }
    expect(await w.deadLetters()).toEqual([]);
    const pending = (await w.admin.xpending(w.n.requests, 'orion-inference-router')) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
    report({
      row: 1,
      title: '1,000 requests over 3 workers',
      figures: { answered: `${ids.length - errors.length}/${ids.length}`, 'answered twice': twice.length, 'dead letters': 0, seconds: seconds.toFixed(1), 'per node': JSON.stringify(perNode) },
    });
  });
});
