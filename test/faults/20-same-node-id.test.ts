import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpPortOf, report, requireBuilt, ROOT, routable, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

// Row 20: two workers started with the same --node-id. Their health documents overwrite each
// other and they share one queue; unchecked, nothing says so. Each worker has an instance id in
// its health document: they notice each other, warn, and the bridge's /nodes shows it.
describe('row 20: two workers with the same --node-id', () => {
  let w: World;
  let bridge: Proc;
  let workers: Proc[];
  beforeAll(async () => {
    w = await new World({ nodes: [{ id: 'pi-a' }], speed: 200, label: 'row20' }).start();
    workers = [w.startWorker('pi-a'), w.startWorker('pi-a')];
    bridge = w.startBridge();
    await withDump(w, () => w.healthy('pi-a', 30_000));
    await withDump(w, () => routable(bridge, ['pi-a'], 30_000));
  });
  afterAll(async () => {
    await w?.close();
  });

  it('is noticed by the workers and shown by the bridge, and every request is still answered once', async () => {
    const t0 = Date.now();
    await withDump(w, async () => {
      const port = await httpPortOf(bridge);
      const node = await waitFor('pi-a shown with duplicate instances', async () => {
        const nodes = (await (await fetch(`http://127.0.0.1:${port}/nodes`, { signal: AbortSignal.timeout(2000) })).json()) as Record<string, unknown>[];
        const a = nodes.find((x) => x['node_id'] === 'pi-a');
        return a && Array.isArray(a['duplicate_instances']) && a['duplicate_instances'].length > 0 ? a : undefined;
      }, 45_000, 250);
      expect(typeof node['instance_id']).toBe('string');
      expect(node['duplicate_instances']).not.toContain(node['instance_id']);
      expect(String(node['warning'])).toMatch(/2 worker processes publish health as pi-a/);
      const instances = await Promise.all(
        workers.map(async (p) => {
          const warn = await waitFor(`${p.name} warns`, () => p.logs(/another worker process publishes health under this node id/)[0], 45_000);
          return String(warn['instance_id']);
        }),
      );
      expect(new Set(instances).size).toBe(2);
      expect(new Set([node['instance_id'], ...(node['duplicate_instances'] as string[])])).toEqual(new Set(instances));
      // The CLI shows the bridge's warning under its table.
      // The bridge's view is rebuilt every second from whichever document was written last: ask
      // until the CLI's read falls on a snapshot that carries the warning.
      const cliNodes = () => promisify(execFile)(process.execPath, [join(ROOT, 'dist/src/bin/cli.js'), 'nodes', '--router', `http://127.0.0.1:${port}`]);
      const cli = await waitFor('orion nodes to print the warning', async () => {
        const out = await cliNodes();
        return /warning: pi-a: 2 worker processes/.test(out.stderr) ? out : undefined;
      }, 30_000, 500);
      expect(cli.stdout).toMatch(/^pi-a/m);
      expect(cli.stderr).toMatch(/warning: pi-a: 2 worker processes publish health as pi-a/);

      const ids = await w.send(Array.from({ length: 10 }, (_, i) => ({ request_id: `r20-${i}`, options: { num_predict: 8 } })));
      const answers = await w.allAnswered(ids, 30_000);
      const lost = ids.filter((id) => !answers.has(id)).length;
      const twice = ids.filter((id) => (answers.get(id)?.length ?? 0) > 1).length;
      for (const id of ids) expect(answers.get(id)?.[0]?.error, id).toBeUndefined();
      expect(lost).toBe(0);
      expect(twice).toBe(0);
      report({
        row: 20,
        title: 'Two workers started with the same --node-id',
        figures: {
          'workers warning': `${instances.length}/2`,
          '/nodes shows duplicate_instances': 'yes',
          'seconds until /nodes shows it': ((Date.now() - t0) / 1000).toFixed(1),
          answered: `${ids.length - lost}/${ids.length}`,
          lost,
          'answered twice': twice,
        },
      });
    });
  });
});
