import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, pendingAt, report, routable, sleep, tally, withDump, World, type Proc } from './harness.js';

requireBuilt();

const N = 300;

// Row 4: the bridge is SIGKILLed while it holds entries of `{p}:requests` it has read and not
// acked (a batch in hand: some of its jobs may be placed already). Alone, it is restarted under
// the same consumer name and re-reads them; with a sibling running, the sibling takes them over
// (XAUTOCLAIM after --claim-idle 3s). Either way every request is answered, once.
describe('row 4: SIGKILL the bridge mid-batch', () => {
  let w: World;
  const nodes = ['pi-a', 'pi-b', 'pi-c'];
  const figures: Record<string, string | number> = {};
  beforeAll(async () => {
    w = await new World({ nodes: nodes.map((id) => ({ id })), speed: 200, label: 'row4' }).start();
    for (const id of nodes) w.startWorker(id);
    for (const id of nodes) await withDump(w, () => w.healthy(id, 30_000));
  });
  afterAll(async () => {
    await w?.close();
  });

  /** Entries of `{p}:requests` the group has delivered so far. */
  async function entriesRead(): Promise<number> {
    const groups = (await w.admin.xinfo('GROUPS', w.n.requests)) as unknown[][];
    const g = groups.find((x) => x[1] === 'orion-inference-router') ?? [];
    return Number(g[g.indexOf('entries-read') + 1] ?? 0);
  }

  /**
   * Send N requests and SIGKILL `bridge` in the middle of them: once a third are read, freeze
   * it (SIGSTOP) at a moment it holds entries it has read and not acked, and kill it there.
   */
  async function sendAndKill(tag: string, bridge: Proc): Promise<{ ids: string[]; pending: number; placed: number }> {
    const ids = Array.from({ length: N }, (_, i) => `r4-${tag}-${i}`);
    const consumer = bridge.name.replace('bridge ', '');
    const base = await entriesRead();
    await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 8, seed: i } })));
    const until = Date.now() + 15_000;
    for (;;) {
      if (Date.now() > until) throw new Error(`${bridge.name} was never caught holding unacked entries`);
      if ((await entriesRead()) - base >= N / 3) {
        bridge.signal('SIGSTOP');
        if ((await pendingAt(w, consumer)) > 0) break;
        bridge.signal('SIGCONT');
      }
      await sleep(1);
    }
    await bridge.kill('SIGKILL');
    const rows = (await w.admin.xpending(w.n.requests, 'orion-inference-router', '-', '+', 100_000, consumer)) as [string, ...unknown[]][];
    // Of the entries left unacked, how many already had their job placed (owner recorded).
    let placed = 0;
    const entryIds = new Set(rows.map((r) => r[0]));
    const byEntry = await w.admin.xrange(w.n.requests, '-', '+');
    const pipe = w.admin.pipeline();
    for (const [entryId, f] of byEntry) {
      if (!entryIds.has(entryId)) continue;
      const id = (JSON.parse(f[1] ?? '{}') as { request_id: string }).request_id;
      pipe.hget(w.n.requestKey(id), 'node');
    }
    for (const [, v] of (await pipe.exec()) ?? []) if (v !== null) placed++;
    return { ids, pending: rows.length, placed };
  }

  function check(ids: string[], answers: Awaited<ReturnType<World['allAnswered']>>): ReturnType<typeof tally> {
    const t = tally(answers, ids);
    const why = `\n${JSON.stringify(t)}\n${w.dump()}`;
    expect(t.twice, why).toEqual([]);
    expect(t.errors, why).toEqual([]);
    return t;
  }

  it('alone: restarted under the same name, it re-reads what it held', async () => {
    const a = w.startBridge('bridge-a', ['--batch-size', '20']);
    await withDump(w, async () => {
      await routable(a, nodes);
      const { ids, pending, placed } = await sendAndKill('alone', a);
      expect(pending, w.dump()).toBeGreaterThan(0);
      const restartedAt = Date.now();
      w.startBridge('bridge-a', ['--batch-size', '20']);
      const answers = await w.allAnswered(ids, 60_000);
      const seconds = (Date.now() - restartedAt) / 1000;
      check(ids, answers);
      expect(await pendingAt(w, 'bridge-a')).toBe(0);
      figures['alone: unacked at kill (jobs placed)'] = `${pending} (${placed})`;
      figures['alone: restart to last answer (s)'] = seconds.toFixed(1);
      figures['alone: answered'] = `${N}/${N}, none twice`;
    });
  });

  it('with a sibling: the sibling takes over the entries the dead bridge held', async () => {
    // bridge-a (restarted in the case before) is running; bridge-b joins the group.
    const a = [...w.procs].filter((p) => p.name === 'bridge bridge-a' && p.running)[0]!;
    const b = w.startBridge('bridge-b', ['--batch-size', '20']);
    await withDump(w, async () => {
      await routable(b, nodes);
      // Wait until bridge-b reads the stream too (its consumer exists in the group).
      const until = Date.now() + 15_000;
      for (;;) {
        const consumers = (await w.admin.xinfo('CONSUMERS', w.n.requests, 'orion-inference-router')) as unknown[][];
        if (consumers.some((c) => c.includes('bridge-b'))) break;
        if (Date.now() > until) throw new Error('bridge-b never joined the group');
        await sleep(50);
      }
      const { ids, pending, placed } = await sendAndKill('sibling', a);
      expect(pending).toBeGreaterThan(0);
      const killedAt = Date.now();
      const answers = await w.allAnswered(ids, 60_000);
      const seconds = (Date.now() - killedAt) / 1000;
      check(ids, answers);
      expect(await pendingAt(w, 'bridge-a')).toBe(0);
      expect(b.logs(/took over entries left idle/).length).toBeGreaterThan(0);
      figures['sibling: unacked at kill (jobs placed)'] = `${pending} (${placed})`;
      figures['sibling: kill to last answer (s)'] = seconds.toFixed(1);
      figures['sibling: answered'] = `${N}/${N}, none twice`;
    });
    expect(await w.deadLetters()).toEqual([]);
    report({ row: 4, title: `SIGKILL the bridge mid-batch (${N} requests, batches of 20), alone and with a sibling`, figures });
  });
});
