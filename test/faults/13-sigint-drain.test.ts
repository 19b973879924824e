import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, held, report, routable, simState, tally, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

// Row 13: pi-a runs 4 requests at once (--concurrency 4; its Ollama serves them one after
// another, slowly: about 6 s in all) and gets SIGINT. It stops taking jobs, finishes the 4,
// and exits 0. The drain outlasts its health TTL (3 s), so the bridge sees a dead node
// meanwhile: it must not move jobs whose locks the draining worker still renews. pi-b, idle,
// is where anything re-routed would go.
describe('row 13: SIGINT a busy worker', () => {
  let w: World;
  let bridge: Proc;
  const workers = new Map<string, Proc>();
  const figures: Record<string, string | number> = {};
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }, { id: 'pi-b', loaded: [] }], speed: 50, label: 'row13' }).start();
    await w.simFaults('pi-a', { slowStreamMs: 150 });
    workers.set('pi-a', w.startWorker('pi-a', ['--concurrency', '4']));
    workers.set('pi-b', w.startWorker('pi-b'));
    bridge = w.startBridge();
    for (const id of ['pi-a', 'pi-b']) await withDump(w, () => w.healthy(id, 30_000));
    await withDump(w, () => routable(bridge, ['pi-a', 'pi-b']));
  });
  afterAll(async () => {
    await w?.close();
    if (Object.keys(figures).length > 0) report({ row: 13, title: 'SIGINT a worker running 4 requests (about 6 s of work left, longer than its health TTL); then one running 2 with 4 queued', figures });
  });

  it('finishes what it holds, exits 0, and nothing is re-routed', async () => {
    const ids = Array.from({ length: 4 }, (_, i) => `r13-${i}`);
    const victim = workers.get('pi-a')!;
    await withDump(w, async () => {
      // Two of them streamed: partial answers keep flowing during the drain.
      await w.send(ids.map((request_id, i) => ({ request_id, stream: i % 2 === 0, options: { num_predict: 8, seed: i } })));
      await waitFor('pi-a running all 4', async () => (await simState(w, 'pi-a')).counters.generate === 4 && (await w.queueCounts('pi-a'))['active'] === 4);
      const sigintAt = Date.now();
      victim.signal('SIGINT');
      const exit = await Promise.race([victim.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 30_000))]);
      const drainS = (Date.now() - sigintAt) / 1000;
      expect(exit, 'pi-a did not exit within 30 s').toEqual({ code: 0, signal: null });
      expect(victim.logs(/^worker stopped$/)).toHaveLength(1);

      const answers = await w.allAnswered(ids, 10_000);
      const t = tally(answers, ids);
      const why = `\n${JSON.stringify(t)}`;
      expect(t.twice, why).toEqual([]);
      expect(t.errors, why).toEqual([]);
      expect(t.perNode, why).toEqual({ 'pi-a': 4 });
      expect(t.perAttempt, why).toEqual({ '1': 4 });
      // The streamed ones got their partials, all from pi-a.
      const partials = (await w.admin.xrange(w.n.responses, '-', '+')).map(([, f]) => JSON.parse(f[1]!) as { done: boolean; node_id?: string; request_id: string }).filter((d) => !d.done);
      expect(partials.length).toBeGreaterThan(0);
      expect(new Set(partials.map((d) => d.node_id))).toEqual(new Set(['pi-a']));
      expect(new Set(partials.map((d) => d.request_id))).toEqual(new Set([ids[0], ids[2]]));

      // Nothing re-routed: no notice, no dead-node move (give the bridge a few sweeps after
      // pi-a's TTL key is gone), pi-b's Ollama never called, pi-a's queue empty.
      expect(await w.admin.xlen(w.n.reroute)).toBe(0);
      await waitFor('pi-a seen dead by the bridge', async () => (await w.admin.exists(w.n.healthKey('pi-a'))) === 0);
      const sweepsFrom = Date.now();
      await waitFor('two registry refreshes', () => Date.now() - sweepsFrom > 2000);
      expect(bridge.logs(/moved/)).toEqual([]);
      expect((await simState(w, 'pi-b')).counters.generate).toBe(0);
      expect(await held(w, 'pi-a')).toBe(0);
      expect(await w.deadLetters()).toEqual([]);
      Object.assign(figures, {
        'exit code': exit!.code ?? 'none',
        'SIGINT to exit (s)': drainS.toFixed(1),
        answered: `${ids.length}/${ids.length}, all by the stopped worker`,
        attempts: JSON.stringify(t.perAttempt),
        'reroute notices': 0,
        'jobs moved by the bridge': 0,
      });
    });
  });

  it('with requests queued behind the running ones: those go to another node at once, unstarted', async () => {
    const victim = w.startWorker('pi-a');
    workers.set('pi-a', victim);
    await withDump(w, async () => {
      await w.healthy('pi-a', 30_000);
      await routable(bridge, ['pi-a', 'pi-b']);
      const ids = Array.from({ length: 6 }, (_, i) => `r13-q${i}`);
      const base = (await simState(w, 'pi-a')).counters.generate;
      await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 8, seed: 10 + i } })));
      await waitFor('pi-a running 2 of 6', async () => (await held(w, 'pi-a')) === 6 && (await w.queueCounts('pi-a'))['active'] === 2 && (await simState(w, 'pi-a')).counters.generate === base + 2);
      const sigintAt = Date.now();
      victim.signal('SIGINT');
      const exit = await Promise.race([victim.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 30_000))]);
      const drainS = (Date.now() - sigintAt) / 1000;
      expect(exit, 'pi-a did not exit within 30 s').toEqual({ code: 0, signal: null });
      const answers = await w.allAnswered(ids, 15_000);
      const t = tally(answers, ids);
      const why = `\n${JSON.stringify(t)}`;
      expect(t.twice, why).toEqual([]);
      expect(t.errors, why).toEqual([]);
      // The 2 running finished on pi-a; the 4 queued never started there (attempt 1 on pi-b).
      expect(t.perNode, why).toEqual({ 'pi-a': 2, 'pi-b': 4 });
      expect(t.perAttempt, why).toEqual({ '1': 6 });
      expect(await w.admin.xlen(w.n.reroute)).toBe(0);
      await waitFor('pi-a queue empty', async () => (await held(w, 'pi-a')) === 0);
      Object.assign(figures, {
        'with 4 queued: SIGINT to exit (s)': drainS.toFixed(1),
        'with 4 queued: answered': `6/6 (${JSON.stringify(t.perNode)}), attempt 1 everywhere, no reroute notice`,
      });
    });
  });
});
