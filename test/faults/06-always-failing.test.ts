import { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, report, routable, simState, waitFor, withDump, World } from './harness.js';

requireBuilt();

const MAX_ATTEMPTS = 3;
/** Figures of both cases, reported once both have run. */
const figures: Record<string, string | number> = {};
afterAll(() => {
  if (Object.keys(figures).length > 0) report({ row: 6, title: `A request Ollama always fails (500 on every node), --max-attempts ${MAX_ATTEMPTS}`, figures });
});

// Row 6: every node's Ollama answers 500 (backend_error, retried elsewhere). Each request is
// tried on each of the three nodes once (a retry avoids the nodes it failed on), then answered
// with the error, dead-lettered, and its job left in the last node's failed set.
describe('row 6: a request the backend always fails', () => {
  let w: World;
  const nodes = ['pi-a', 'pi-b', 'pi-c'];
  beforeAll(async () => {
    w = await new World({ nodes: nodes.map((id) => ({ id })), speed: 50, label: 'row6' }).start();
    for (const id of nodes) await w.simFaults(id, { fail500: true });
    for (const id of nodes) w.startWorker(id);
    const bridge = w.startBridge('bridge-a', ['--max-attempts', String(MAX_ATTEMPTS)]);
    for (const id of nodes) await withDump(w, () => w.healthy(id, 30_000));
    await withDump(w, () => routable(bridge, nodes));
  });
  afterAll(async () => {
    await w?.close();
  });

  it(`tries it exactly ${MAX_ATTEMPTS} times, then answers the error, dead-letters it and leaves it failed`, async () => {
    const ids = ['r6-0', 'r6-1', 'r6-2'];
    await withDump(w, async () => {
      const t0 = Date.now();
      await w.send(ids.map((request_id) => ({ request_id, metadata: { row: 6 } })));
      const answers = await w.allAnswered(ids, 30_000);
      const seconds = (Date.now() - t0) / 1000;
      const finals = ids.map((id) => answers.get(id) ?? []);
      for (const list of finals) {
        expect(list).toHaveLength(1);
        const a = list[0]!;
        expect(a.error?.code).toBe('backend_error');
        expect(a.error?.message).toMatch(/500/);
        expect(a.attempt).toBe(MAX_ATTEMPTS);
        expect(a.metadata).toEqual({ row: 6 });
      }
      // Dead letters: one per request, with the attempt figure.
      const dead = await waitFor('3 dead letters', async () => {
        const d = await w.deadLetters();
        return d.length >= ids.length ? d : undefined;
      });
      expect(dead).toHaveLength(ids.length);
      for (const d of dead) {
        expect(d['error_code']).toBe('backend_error');
        expect(d['attempt']).toBe(MAX_ATTEMPTS);
      }
      expect(new Set(dead.map((d) => d['request_id']))).toEqual(new Set(ids));
      // The simulators: each request reached each node's Ollama exactly once.
      const perNode: Record<string, number> = {};
      for (const id of nodes) {
        // A call the fault answers counts in faultsInjected only; one that got through, in generate.
        const c = (await simState(w, id)).counters;
        perNode[id] = c.faultsInjected + c.generate + c.chat;
        expect(perNode[id], `${id} ${JSON.stringify(c)}`).toBe(ids.length);
      }
      // Each job is left in exactly one failed set (the copies of earlier tries are removed).
      // (The last worker moves its copy to the failed set just after answering: wait for it.)
      const count = async (): Promise<{ failed: number; elsewhere: number }> => {
        let failed = 0;
        let elsewhere = 0;
        for (const id of nodes) {
          const c = await w.queueCounts(id);
          failed += c['failed'] ?? 0;
          elsewhere += (c['wait'] ?? 0) + (c['prioritized'] ?? 0) + (c['active'] ?? 0) + (c['delayed'] ?? 0);
        }
        return { failed, elsewhere };
      };
      await waitFor('the jobs to settle', async () => (await count()).elsewhere === 0);
      const { failed, elsewhere } = await count();
      expect(failed).toBe(ids.length);
      expect(elsewhere).toBe(0);
      Object.assign(figures, {
        requests: ids.length,
        'final answer': `backend_error, attempt ${MAX_ATTEMPTS}, once each`,
        'Ollama calls per node': JSON.stringify(perNode),
        'dead letters': dead.length,
        'jobs in failed sets': failed,
        'send to error answer (s)': seconds.toFixed(1),
      });
    });
  });
});

// The same with a single node: every retry goes back to it (its failed copy removed first).
describe('row 6, one node: every try on the same node', () => {
  let w: World;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }], speed: 50, label: 'row6b' }).start();
    await w.simFaults('pi-a', { fail500: true });
    w.startWorker('pi-a');
    const bridge = w.startBridge('bridge-a', ['--max-attempts', String(MAX_ATTEMPTS)]);
    await withDump(w, () => w.healthy('pi-a', 30_000));
    await withDump(w, () => routable(bridge, ['pi-a']));
  });
  afterAll(async () => {
    await w?.close();
  });

  it(`tries it ${MAX_ATTEMPTS} times on that node, then answers the error`, async () => {
    await withDump(w, async () => {
      await w.send([{ request_id: 'r6-one' }]);
      const a = (await w.allAnswered(['r6-one'], 30_000)).get('r6-one')!;
      expect(a).toHaveLength(1);
      expect(a[0]!.error?.code).toBe('backend_error');
      expect(a[0]!.attempt).toBe(MAX_ATTEMPTS);
      const c = (await simState(w, 'pi-a')).counters;
      expect(c.faultsInjected + c.generate).toBe(MAX_ATTEMPTS);
      await waitFor('the job in the failed set', async () => {
        const q = await w.queueCounts('pi-a');
        return q['failed'] === 1 && (q['wait'] ?? 0) + (q['prioritized'] ?? 0) + (q['active'] ?? 0) === 0;
      });
      const dead = await w.deadLetters();
      expect(dead.map((d) => [d['request_id'], d['attempt']])).toEqual([['r6-one', MAX_ATTEMPTS]]);
      figures['one node only'] = `${c.faultsInjected + c.generate} calls, attempt ${a[0]!.attempt}, 1 dead letter, 1 failed job`;

      // Retried from the failed set (as Bull Board does) once Ollama works: a fresh start,
      // answered again, attempt 1.
      await w.clearSimFaults('pi-a');
      const q = new Queue('pi-a', { prefix: w.n.nodeQueuePrefix, connection: { host: '127.0.0.1', port: w.redis.port } });
      try {
        const job = await Job.fromId(q, 'req_r6-one');
        expect(await job!.getState()).toBe('failed');
        await job!.retry('failed');
      } finally {
        await q.close();
      }
      const again = await waitFor('the retried answer', async () => {
        const list = (await w.answers()).get('r6-one') ?? [];
        return list.length === 2 ? list[1] : undefined;
      });
      expect(again.error).toBeUndefined();
      expect(again.attempt).toBe(1);
      expect((await w.queueCounts('pi-a'))['failed']).toBe(0);
      figures['retried from the failed set'] = `answered, attempt ${again.attempt}`;
    });
  });
});
