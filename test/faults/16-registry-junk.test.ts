import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpPortOf, report, requireBuilt, ROOT, routable, sleep, waitFor, warnings, withDump, World, type Proc } from './harness.js';

requireBuilt();

// Row 16: registry entries that are no node id. A worker's ACL user may write any field of
// {p}:health, and anyone with the bridge's rights any member of {p}:nodes: `evil:node`, `x:y` and
// an empty field name no queue (BullMQ refuses ':' in queue names). The bridge must start with
// them there, keep routing, keep /stats failed_jobs and the per-queue /metrics series, move no
// dead node's jobs because of them, and warn about them now and then rather than at every
// refresh.
describe('row 16: junk in the node registry', () => {
  let w: World;
  let bridge: Proc;
  let port: number;
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }], speed: 200, label: 'row16' }).start();
    await w.admin.hset(w.n.health, 'evil:node', 'garbage', '', 'garbage');
    await w.admin.sadd(w.n.nodes, 'x:y');
    w.startWorker('pi-a');
    bridge = w.startBridge('bridge-a', ['--max-attempts', '1']);
    await withDump(w, () => w.healthy('pi-a', 30_000));
    await withDump(w, () => routable(bridge, ['pi-a'], 30_000));
    port = await httpPortOf(bridge);
  });
  afterAll(async () => {
    await w?.close();
  });

  const get = async (path: string): Promise<Response> => fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(3000) });

  it('starts, routes, counts and warns now and then', async () => {
    const t0 = Date.now();
    await withDump(w, async () => {
      // Two jobs that fail for good (Ollama answers 500, one attempt allowed): failed_jobs = 2.
      await w.simFaults('pi-a', { fail500: true });
      const failing = await w.send([{ request_id: 'r16-fail-0' }, { request_id: 'r16-fail-1' }]);
      await w.allAnswered(failing, 30_000);
      await w.clearSimFaults('pi-a');
      // More junk while it runs.
      await w.admin.hset(w.n.health, 'bad node', '{}', 'a:b:c', JSON.stringify({ node_id: 'a:b:c', ram_percent: 1, available: true, last_seen: new Date().toISOString() }));
      await w.admin.sadd(w.n.nodes, 'a:b:c', '');
      const good = await w.send(Array.from({ length: 12 }, (_, i) => ({ request_id: `r16-good-${i}`, options: { num_predict: 8 } })));
      const answers = await w.allAnswered(good, 60_000);
      for (const id of good) expect(answers.get(id)?.[0]?.error, id).toBeUndefined();
      const all = await w.answers();
      for (const id of failing) expect(all.get(id)?.[0]?.error?.code, id).toBe('backend_error');
      const lost = [...good, ...failing].filter((id) => !all.has(id)).length;
      expect(lost).toBe(0);

      // Let several registry refreshes (1 s each) go by with the junk in place.
      await sleep(4000);
      const stats = await waitFor('failed_jobs 2 in /stats', async () => {
        const s = (await (await get('/stats')).json()) as { failed_jobs: number | null };
        return s.failed_jobs === 2 ? s : undefined;
      }, 30_000);
      expect(stats.failed_jobs).toBe(2);
      const metrics = await (await get('/metrics')).text();
      expect(metrics).toMatch(/orion_router_queue_jobs\{node="pi-a",state="failed"\} 2/);
      expect(metrics).not.toMatch(/node="(evil:node|x:y|a:b:c|bad node|)"/);
      const nodes = (await (await get('/nodes')).json()) as { node_id: string }[];
      expect(nodes.map((x) => x.node_id)).toEqual(['pi-a']);
      const cli = await promisify(execFile)(process.execPath, [join(ROOT, 'dist/src/bin/cli.js'), 'nodes', '--router', `http://127.0.0.1:${port}`]);
      expect(cli.stdout.trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0])).toEqual(['pi-a']);

      // Warned about: once at start, once for what came later; never the same junk at every refresh.
      const junkWarnings = bridge.logs(/no node id/);
      const warned = junkWarnings.flatMap((l) => l['entries'] as string[]);
      expect(new Set(warned)).toEqual(new Set(['evil:node', '', 'x:y', 'bad node', 'a:b:c']));
      expect(junkWarnings.length).toBeLessThanOrEqual(2);
      // No other warning from the registry, the dead-node sweeper or Bull Board about them.
      const others = warnings(bridge, t0).filter((l) => !/no node id/.test(String(l['msg'])) && /node|queue|registry/i.test(JSON.stringify(l)) && !/r16-fail/.test(JSON.stringify(l)));
      expect(others, JSON.stringify(others)).toEqual([]);
      expect(bridge.output.join('\n')).not.toMatch(/Queue name cannot contain/);
      expect(bridge.running).toBe(true);
      const pending = (await w.admin.xpending(w.n.requests, 'orion-inference-router')) as [number, ...unknown[]];
      expect(pending[0]).toBe(0);

      report({
        row: 16,
        title: 'Registry entries that are no node id (`evil:node`, `x:y`, `a:b:c`, `bad node`, an empty field) in {p}:health and {p}:nodes, before start and while running',
        figures: {
          'bridge running': bridge.running ? 'yes' : 'no',
          answered: `${good.length + failing.length}/${good.length + failing.length}`,
          lost,
          'failed_jobs in /stats': String(stats.failed_jobs),
          'junk entries skipped': 5,
          'junk warnings in the bridge log': junkWarnings.length,
          seconds: ((Date.now() - t0) / 1000).toFixed(1),
        },
      });
    });
  });
});
