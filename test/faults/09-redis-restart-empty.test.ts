import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, report, sleep, tally, waitFor, warnings, withDump, World, type Proc } from './harness.js';

requireBuilt();

const NODES = ['pi-a', 'pi-b'];
/** Warn and error lines one program may write over the whole outage: a few per connection. */
const MAX_WARNINGS = 25;

describe('row 9: Redis restarted without persistence (comes back empty)', () => {
  let w: World;
  let procs: Proc[];
  beforeAll(async () => {
    w = await new World({ nodes: NODES.map((id) => ({ id })), speed: 200, label: 'row9' }).start();
    procs = [...NODES.map((id) => w.startWorker(id)), w.startBridge()];
    for (const id of NODES) await w.healthy(id);
  });
  afterAll(async () => {
    await w?.close();
  });

  it('recreates the consumer group, the heartbeats and the health registry, without an error storm, and serves new requests', async () => {
    await withDump(w, async () => {
      const before = Array.from({ length: 10 }, (_, i) => `r9-before-${i}`);
      await w.send(before.map((request_id) => ({ request_id })));
      await w.allAnswered(before, 30_000);

      const outageAt = Date.now();
      await w.redis.stop('SIGKILL');
      await sleep(2000);
      await w.redis.start();
      const restartAt = Date.now();
      expect(await w.admin.exists(w.n.requests, w.n.health), 'Redis came back empty').toBe(0);

      // New requests at once: they wait in the stream until the group is back and nodes report.
      const after = Array.from({ length: 10 }, (_, i) => `r9-after-${i}`);
      await w.send(after.map((request_id) => ({ request_id })));
      const answers = await w.allAnswered(after, 30_000);
      const servedMs = Date.now() - restartAt;
      const t = tally(answers, after);
      expect(t.errors).toEqual([]);

      // Group recreated, every worker publishing health again, heartbeat schedulers back.
      const groups = (await w.admin.xinfo('GROUPS', w.n.requests)) as unknown[][];
      expect(groups.map((g) => g[g.indexOf('name') + 1])).toEqual(['orion-inference-router']);
      for (const id of NODES) {
        await w.healthy(id);
        await waitFor(`${id} heartbeat scheduler recreated`, async () => (await w.admin.zcard(`${w.n.heartbeatQueuePrefix}:${id}:repeat`)) === 1, 15_000);
      }
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);

      // No error storm: the outage and recovery cost each program a few warnings, not hundreds.
      const perProc: Record<string, number> = {};
      for (const p of procs) perProc[p.name] = warnings(p, outageAt).length;
      for (const p of procs) expect(perProc[p.name], `${p.name}: ${JSON.stringify(warnings(p, outageAt).map((o) => o['msg']))}`).toBeLessThanOrEqual(MAX_WARNINGS);
      report({
        row: 9,
        title: 'Redis SIGKILL + restart without persistence (empty), 2 s down',
        figures: {
          'answered after the restart': `${after.length - t.errors.length}/${after.length}`,
          'all answered (ms after the restart)': servedMs,
          'warn/error lines per program over the outage': JSON.stringify(perProc),
        },
      });
    });
  });
});
