/**
 * The parts the bridge's intake is built from, on a real Redis: a batch and its ack, and the
 * requests held for lack of a node (expiry, cancellation, keeping siblings off their entries).
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/lib/logger.js';
import { ROUTER_GROUP, names, type Names } from '../../src/lib/names.js';
import { Serial } from '../../src/lib/serial.js';
import { Batch, ConsumerGroup, GroupReader } from '../../src/router/consumer.js';
import { HeldRequests, type Held } from '../../src/router/held.js';
import { RouterMetrics } from '../../src/router/metrics.js';
import type { Snapshot } from '../../src/router/registry.js';
import { BridgeStats } from '../../src/router/stats.js';
import { testPrefix } from '../helpers/redis.js';
import { redisForFile } from '../helpers/redis-file.js';

const db = redisForFile();
const log = createLogger({ level: 'silent' });

/** A fresh prefix with its requests group and `count` entries read by consumer `c1` (pending there). */
async function scope(count: number): Promise<{ n: Names; group: ConsumerGroup; ids: string[] }> {
  const n = names(testPrefix('held'));
  const group = new ConsumerGroup({ cmd: db.client, stream: n.requests, group: ROUTER_GROUP, consumer: 'c1', log });
  await group.ensure();
  for (let i = 0; i < count; i++) await db.client.xadd(n.requests, '*', 'data', `{"i":${i}}`);
  const read = (await db.client.xreadgroup('GROUP', ROUTER_GROUP, 'c1', 'COUNT', 100, 'STREAMS', n.requests, '>')) as [string, [string, string[]][]][];
  return { n, group, ids: read[0]![1].map(([id]) => id) };
}

async function pendingIds(n: Names): Promise<string[]> {
  const rows = (await db.client.xpending(n.requests, ROUTER_GROUP, '-', '+', 100)) as [string, string, number, number][];
  return rows.map(([id]) => id);
}

async function docs(key: string): Promise<Record<string, unknown>[]> {
  return (await db.client.xrange(key, '-', '+')).map(([, f]) => JSON.parse(f[1]!) as Record<string, unknown>);
}

describe('a batch', () => {
  it('acks in one go what is finished, once, and leaves the rest pending', async () => {
    const { n, group, ids } = await scope(3);
    const batch = new Batch(group, ids.map((id) => ({ id, fields: null })));
    batch.finish(ids[0]!);
    batch.finish(ids[2]!);
    batch.finish(ids[2]!);
    await batch.ack(2000);
    expect(await pendingIds(n)).toEqual([ids[1]]);
    // Handled again from the start (a retry after a failure): nothing is acked twice, the last one now.
    batch.finish(ids[1]!);
    await batch.ack(2000);
    expect(await pendingIds(n)).toEqual([]);
  });
});

/** Held requests over `count` entries read, with the stats and metrics they count into. */
async function setup(count: number) {
  const s = await scope(count);
  const metrics = new RouterMetrics({ snapshot: () => ({ views: new Map(), at: Date.now() }) as unknown as Snapshot, depths: async () => new Map() });
  const stats = new BridgeStats(s.n, 'c1', metrics);
  const held = new HeldRequests({ redis: db.client, n: s.n, log, stats, group: s.group, lane: new Serial() });
  const hold = (i: number, deadline: number, reason: Held['reason'] = 'no_node'): Held => {
    const h: Held = { entryId: s.ids[i]!, request: { request_id: `r${i}`, model: 'llama3', timeout_ms: 1000 }, deadline, seenAt: Date.now(), reason };
    held.hold(h);
    return h;
  };
  const gauge = async (): Promise<string | undefined> => (await metrics.registry.metrics()).split('\n').find((l) => l.startsWith('orion_router_waiting_requests '));
  return { ...s, stats, held, hold, gauge };
}

describe('held requests', () => {
  it('answers those past their deadline (no_healthy_node, or timeout after failed adds), dead-letters and acks them, and keeps the rest', async () => {
    const { n, held, hold, stats, ids, gauge } = await setup(3);
    const past = Date.now() - 1;
    hold(0, past);
    hold(1, past, 'retry');
    hold(2, Date.now() + 60_000);
    expect(held.count).toBe(3);
    expect(await gauge()).toBe('orion_router_waiting_requests 3');
    expect(held.due(Date.now()).map((h) => h.request.request_id)).toEqual(['r2']);
    await held.expire();
    expect(held.count).toBe(1);
    expect(held.has('r2') && held.holdsEntry('r2', ids[2]!)).toBe(true);
    expect(held.has('r0') || held.has('r1')).toBe(false);
    expect(await gauge()).toBe('orion_router_waiting_requests 1');
    const answers = await docs(n.responses);
    expect(answers.map((d) => [d['request_id'], (d['error'] as { code: string }).code])).toEqual([
      ['r0', 'no_healthy_node'],
      ['r1', 'timeout'],
    ]);
    expect(answers[0]).toMatchObject({ model: 'llama3', done: true });
    const letters = await docs(n.deadletter);
    expect(letters.map((d) => [d['request_id'], d['error_code'], d['entry_id']])).toEqual([
      ['r0', 'no_healthy_node', ids[0]],
      ['r1', 'timeout', ids[1]],
    ]);
    expect(await pendingIds(n)).toEqual([ids[2]]);
    expect(stats.snapshot()).toMatchObject({ errors: 2, timeouts: 1 });
  });

  it('answers a cancelled one before its deadline, without a dead letter', async () => {
    const { n, held, hold, ids } = await setup(2);
    hold(0, Date.now() + 60_000);
    hold(1, Date.now() + 60_000);
    await db.client.set(n.cancelKey('r1'), '1', 'PX', 60_000);
    await held.expire();
    expect(held.has('r0')).toBe(true);
    expect(held.has('r1')).toBe(false);
    expect((await docs(n.responses)).map((d) => [d['request_id'], (d['error'] as { code: string }).code])).toEqual([['r1', 'cancelled']]);
    expect(await docs(n.deadletter)).toEqual([]);
    expect(await pendingIds(n)).toEqual([ids[0]]);
  });

  it('resets the idle time of its entries, so no sibling takes them over', async () => {
    const { n, held, hold, ids } = await setup(2);
    hold(0, Date.now() + 60_000);
    const idle = async (id: string): Promise<number> => {
      const rows = (await db.client.xpending(n.requests, ROUTER_GROUP, id, id, 1)) as [string, string, number, number][];
      return rows[0]![2];
    };
    let before = 0;
    const until = Date.now() + 10_000;
    while ((before = await idle(ids[0]!)) < 200 && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(before).toBeGreaterThanOrEqual(200);
    await held.touch();
    expect(await idle(ids[0]!)).toBeLessThan(before);
    // The entry not held is left alone: it keeps growing idle.
    expect(await idle(ids[1]!)).toBeGreaterThanOrEqual(before);
    held.release('r0');
    expect(held.count).toBe(0);
  });
});

describe('a group reader paused while a read blocks', () => {
  it('holds what the read returns, unhandled and pending, until the pause ends', async () => {
    const n = names(testPrefix('paused'));
    const group = new ConsumerGroup({ cmd: db.client, stream: n.requests, group: ROUTER_GROUP, consumer: 'c1', log });
    const blocking = new Redis(db.server.port, '127.0.0.1');
    let paused = false;
    let pauseChecks = 0;
    const handled: string[] = [];
    const reader = new GroupReader({
      group,
      blocking,
      batchSize: 10,
      blockMs: 5000,
      claimIdleMs: 60_000,
      log,
      paused: () => {
        pauseChecks += 1;
        return paused;
      },
      handle: async (b) => {
        handled.push(...b.entries.map((e) => e.id));
        for (const e of b.entries) b.finish(e.id);
        await b.ack(2000);
      },
    });
    const until = async (what: string, ok: () => Promise<boolean> | boolean): Promise<void> => {
      const end = Date.now() + 10_000;
      while (!(await ok())) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    try {
      reader.start();
      // The reader's connection is blocked in XREADGROUP ... BLOCK 5000 when the pause begins.
      await until('a blocking read', async () => /blocked_clients:[1-9]/.test(await db.client.info('clients')));
      paused = true;
      const id = await db.client.xadd(n.requests, '*', 'data', '{}');
      // Redis served the read: the entry is pending at c1, in the reader's hands.
      await until('the entry delivered', async () => (await pendingIds(n)).includes(id!));
      // The reader has since asked twice whether it is paused, and handed nothing over.
      const checks = pauseChecks;
      await until('two more pause checks', () => pauseChecks >= checks + 2);
      expect(handled).toEqual([]);
      expect(await pendingIds(n)).toEqual([id]);
      paused = false;
      await until('the entry handled', () => handled.length > 0);
      expect(handled).toEqual([id]);
      await until('the entry acked', async () => (await pendingIds(n)).length === 0);
    } finally {
      await reader.stop();
      blocking.disconnect();
    }
  });
});
