import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireBuilt, report, sleep, someRunning, tally, waitFor, withDump, World, type Proc } from './harness.js';
import { startSentinelCluster, type SentinelCluster } from './sentinels.js';

requireBuilt();

const NODES = ['pi-a', 'pi-b'];

/**
 * The Brain sending through the Sentinels: one flow plain (XADD acknowledged by the master),
 * one that also waits for a replica (`WAIT 1 500` after each XADD; a send counts as accepted
 * only when a replica has it).
 */
function brain(c: Redis, prefix: string, stream: string, waitReplica: boolean) {
  const accepted: string[] = [];
  const sends: Promise<void>[] = [];
  let sending = true;
  const unconfirmed: string[] = [];
  const one = async (id: string): Promise<void> => {
    try {
      const doc = JSON.stringify({ request_id: id, model: 'gemma3:1b', prompt: `question ${id}`, options: { num_predict: 16 } });
      if (!waitReplica) {
        await c.xadd(stream, '*', 'data', doc);
        accepted.push(id);
        return;
      }
      const res = await c.multi().xadd(stream, '*', 'data', doc).exec();
      if (res?.[0]?.[0]) return;
      const replicas = (await c.call('WAIT', '1', '500')) as number;
      if (replicas >= 1) accepted.push(id);
      else unconfirmed.push(id);
    } catch {
      /* refused: not accepted */
    }
  };
  const loop = (async () => {
    for (let i = 0; sending && c.status !== 'end'; i++) {
      sends.push(one(`${prefix}-${i}`));
      await sleep(150);
    }
  })();
  return {
    accepted,
    unconfirmed,
    async stop() {
      sending = false;
      await loop;
      await Promise.all(sends);
    },
  };
}

describe('row 33: Redis master SIGKILLed under load; a replica and three Sentinels fail over', () => {
  let w: World;
  let s: SentinelCluster;
  let procs: Proc[];
  beforeAll(async () => {
    w = await new World({ nodes: NODES.map((id) => ({ id })), speed: 10, label: 'row33' }).start();
    s = await startSentinelCluster(w.redis.port);
    // Everything the test reads and sends goes through the Sentinels too.
    w.admin.disconnect();
    w.admin = s.client();
    // --routing guide: these rows test Redis faults, not the balanced router's job moves.
    procs = [...NODES.map((id) => w.startWorker(id, s.flags)), w.startBridge('bridge-a', [...s.flags, '--routing', 'guide'])];
    for (const id of NODES) await w.healthy(id, 45_000);
  });
  afterAll(async () => {
    await w?.close();
    await s?.stop();
  });

  it('answers again within seconds of the kill, and loses nothing it had accepted', async () => {
    await withDump(w, async () => {
      for (const p of procs) await waitFor(`${p.name} found the master through the Sentinels`, () => p.logs(/^(worker|bridge) started$/).some((l) => /sentinel master/.test(String(l['redis']))), 30_000);
      const sender = s.client();
      const waiter = s.client();
      const plain = brain(sender, 'r33', w.n.requests, false);
      const safe = brain(waiter, 'r33w', w.n.requests, true);
      await waitFor('10 answers before the kill', async () => (await w.answers()).size >= 10, 45_000);
      const runningAtKill = await someRunning(w, NODES);
      const oldMaster = await s.masterAddr();
      await w.redis.stop('SIGKILL');
      const killedAt = Date.now();
      await waitFor('a new master', async () => (await s.masterAddr()) !== oldMaster, 30_000, 100);
      const failoverMs = Date.now() - killedAt;
      // The first answer written by the new master after the kill.
      const firstAnswerMs = await waitFor('an answer after the failover', async () => {
        const [last] = await w.admin.xrevrange(w.n.responses, '+', '-', 'COUNT', 1);
        const at = last ? Number(last[0].split('-')[0]) : 0;
        return at >= killedAt ? at - killedAt : undefined;
      }, 60_000, 50);
      await sleep(3000);
      await Promise.all([plain.stop(), safe.stop()]);
      const ids = [...plain.accepted, ...safe.accepted];

      // Everything accepted is answered, except what the old master acknowledged and never
      // passed on to the replica: such a request is on the new master nowhere.
      let answers = await w.answers();
      await waitFor('every accepted request answered or known lost', async () => {
        answers = await w.answers();
        const open = ids.filter((id) => !answers.has(id));
        const known = await Promise.all(open.map((id) => w.admin.exists(w.n.requestKey(id))));
        return known.every((k) => k === 0) && open.length < ids.length;
      }, 60_000, 500);
      await sleep(3000);
      answers = await w.answers();
      const unanswered = ids.filter((id) => !answers.has(id));
      const inStream = new Set<string>();
      for (const [, f] of await w.admin.xrange(w.n.requests, '-', '+')) inStream.add((JSON.parse(f[1] ?? '{}') as { request_id?: string }).request_id ?? '');
      const knownUnanswered = [];
      for (const id of unanswered) if (inStream.has(id) || (await w.admin.exists(w.n.requestKey(id)))) knownUnanswered.push(id);
      // ORION loses nothing the new master has.
      expect(knownUnanswered).toEqual([]);
      const t = tally(answers, ids);
      expect(t.errors).toEqual([]);
      // A replica-confirmed request is never lost.
      const lostSafe = safe.accepted.filter((id) => !answers.has(id));
      expect(lostSafe).toEqual([]);
      const lostPlain = plain.accepted.filter((id) => !answers.has(id));
      expect(procs.filter((p) => !p.running).map((p) => p.name)).toEqual([]);
      report({
        row: 33,
        title: 'Redis master SIGKILLed under load; 1 replica, 3 Sentinels (quorum 2, down-after 1 s); programs on --redis-sentinels',
        figures: {
          'accepted (plain XADD)': plain.accepted.length,
          'lost of those (acknowledged by the old master, not replicated)': lostPlain.length,
          'accepted (XADD + WAIT 1 500)': safe.accepted.length,
          'lost of those': lostSafe.length,
          'not confirmed by WAIT (no replica left after the failover)': safe.unconfirmed.length,
          'of those, answered all the same': safe.unconfirmed.filter((id) => answers.has(id)).length,
          'answered twice': t.twice.length,
          'error answers': t.errors.length,
          'jobs running at the kill': runningAtKill,
          'new master named by the Sentinels after (ms)': failoverMs,
          'first answer after the kill (ms)': firstAnswerMs,
          'processes running': `${procs.filter((p) => p.running).length}/${procs.length}`,
        },
      });
    });
  });
});
