/**
 * The group reader under a backlog: reads sent ahead while a batch is handled (`readAhead`),
 * every entry handed over once and in stream order, and what a stop leaves behind.
 */
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/lib/logger.js';
import { ROUTER_GROUP, names, type Names } from '../../src/lib/names.js';
import { ConsumerGroup, GroupReader, type Batch } from '../../src/router/consumer.js';
import { testPrefix } from '../helpers/redis.js';
import { redisForFile } from '../helpers/redis-file.js';

const db = redisForFile();
const log = createLogger({ level: 'silent' });

async function pendingCount(n: Names): Promise<number> {
  const summary = (await db.client.xpending(n.requests, ROUTER_GROUP)) as [number, ...unknown[]];
  return summary[0];
}

async function until(what: string, ok: () => Promise<boolean> | boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A backlog of `count` entries on a fresh prefix, its group created (nothing read yet). */
async function backlog(count: number): Promise<{ n: Names; group: ConsumerGroup; ids: string[] }> {
  const n = names(testPrefix('reader'));
  const group = new ConsumerGroup({ cmd: db.client, stream: n.requests, group: ROUTER_GROUP, consumer: 'c1', log });
  await group.ensure();
  const pipe = db.client.pipeline();
  for (let i = 0; i < count; i++) pipe.xadd(n.requests, '*', 'data', `{"i":${i}}`);
  const ids = ((await pipe.exec()) ?? []).map(([, id]) => id as string);
  return { n, group, ids };
}

/**
 * A reader whose handler records and acks each batch; the first batch it is given waits for
 * `release()` before it is handled.
 */
function gatedReader(group: ConsumerGroup, readAhead: number) {
  const blocking = new Redis(db.server.port, '127.0.0.1');
  const handled: string[] = [];
  const sizes: number[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  let first = true;
  let gated = false;
  const reader = new GroupReader({
    group,
    blocking,
    batchSize: 10,
    blockMs: 200,
    claimIdleMs: 60_000,
    readAhead,
    log,
    handle: async (b: Batch) => {
      if (first) {
        first = false;
        gated = true;
        await gate;
      }
      sizes.push(b.entries.length);
      handled.push(...b.entries.map((e) => e.id));
      for (const e of b.entries) b.finish(e.id);
      await b.ack(2000);
    },
  });
  return { reader, blocking, handled, sizes, release: () => open(), isGated: () => gated };
}

describe('a group reader under a backlog', () => {
  it('reads the next batches ahead while one is handled, and hands every entry over once, in order', async () => {
    const { n, group, ids } = await backlog(95);
    const r = gatedReader(group, 2);
    try {
      r.reader.start();
      await until('the first batch handed over', r.isGated);
      // The first batch is in the handler's hands, and the two reads sent ahead have been
      // answered: 10 + 2 x 10 entries delivered, none acked.
      await until('the reads ahead answered', async () => (await pendingCount(n)) === 30);
      await new Promise((res) => setTimeout(res, 100));
      expect(await pendingCount(n)).toBe(30);
      expect(r.handled).toEqual([]);
      r.release();
      await until('the backlog handled', () => r.handled.length === 95);
      expect(r.handled).toEqual(ids);
      expect(r.sizes).toEqual([10, 10, 10, 10, 10, 10, 10, 10, 10, 5]);
      await until('every entry acked', async () => (await pendingCount(n)) === 0);
      // After the backlog the reader blocks again: a new entry is handed over alone.
      const late = await db.client.xadd(n.requests, '*', 'data', '{}');
      await until('the late entry handled', () => r.handled.length === 96);
      expect(r.handled[95]).toBe(late);
    } finally {
      r.release();
      await r.reader.stop();
      r.blocking.disconnect();
    }
  });

  it('without a backlog reads nothing ahead', async () => {
    const { n, group } = await backlog(5);
    const r = gatedReader(group, 2);
    try {
      r.reader.start();
      await until('the first batch handed over', r.isGated);
      await db.client.xadd(n.requests, '*', 'data', '{}');
      // The read came back short (5 of 10): the next one blocks and takes the new entry only
      // once the handler is done, so only the first 5 are delivered meanwhile.
      await new Promise((res) => setTimeout(res, 150));
      expect(await pendingCount(n)).toBe(5);
      r.release();
      await until('all handled', () => r.handled.length === 6);
    } finally {
      r.release();
      await r.reader.stop();
      r.blocking.disconnect();
    }
  });

  it('leaves what it read ahead pending when it stops, and the next start hands it over', async () => {
    const { n, group, ids } = await backlog(40);
    const a = gatedReader(group, 2);
    a.reader.start();
    await until('the first batch handed over', a.isGated);
    await until('the reads ahead answered', async () => (await pendingCount(n)) === 30);
    const stopped = a.reader.stop();
    a.release();
    await stopped;
    a.blocking.disconnect();
    // The batch in hand was finished; the 20 read ahead were never handed over.
    expect(a.handled).toEqual(ids.slice(0, 10));
    expect(await pendingCount(n)).toBe(20);
    const b = gatedReader(group, 2);
    b.release();
    try {
      b.reader.start();
      await until('the rest handled', () => b.handled.length === 30);
      expect(b.handled).toEqual(ids.slice(10));
      await until('every entry acked', async () => (await pendingCount(n)) === 0);
    } finally {
      await b.reader.stop();
      b.blocking.disconnect();
    }
  });
});
