import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { publishHealth } from '../../src/lib/health-registry.js';
import { silentLogger } from '../../src/lib/logger.js';
import { names } from '../../src/lib/names.js';
import { Registry } from '../../src/router/registry.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

// The bridge's registry with a thousand nodes: a refresh reads and parses only the health
// documents written since the one before, with several bridges, vanishing nodes and writes
// that bypass the versions. What Redis was asked is seen through MONITOR, not taken on trust.
const NODES = 1000;
const prefix = testPrefix('regver');
const n = names(prefix);
const id = (i: number): string => `node-${String(i).padStart(4, '0')}`;
const thresholds = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };

function doc(i: number, ram: number): NodeHealth {
  return {
    node_id: id(i),
    cpu_percent: 5,
    ram_percent: ram,
    temp_celsius: 50,
    models: ['gemma3:1b'],
    available: true,
    last_seen: new Date().toISOString(),
    installed_models: ['gemma3:1b'],
  };
}
const publish = (redis: Redis, i: number, ram: number, ttlMs: number | null = 60_000): Promise<string | null> =>
  publishHealth(redis, n, id(i), JSON.stringify(doc(i, ram)), ttlMs);

let server: RedisServer;
let admin: Redis;
const clients: Redis[] = [];
const client = (): Redis => {
  const c = new Redis(server.port, '127.0.0.1');
  clients.push(c);
  return c;
};

beforeAll(async () => {
  server = await startRedis();
  admin = client();
  await Promise.all(Array.from({ length: NODES }, (_, i) => publish(admin, i, 20 + (i % 50))));
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await server.stop();
});

/** Every command Redis runs while `fn` runs (scripts' commands included), as argument lists. */
async function commandsDuring(fn: () => Promise<unknown>): Promise<string[][]> {
  const seen: string[][] = [];
  const monitor = await client().monitor();
  monitor.on('monitor', (_time: string, args: string[]) => seen.push(args));
  // A marker through the monitored server tells when MONITOR is live, and when it has caught up.
  const marker = async (tag: string): Promise<void> => {
    await admin.echo(tag);
    for (let i = 0; i < 200 && !seen.some((a) => a[0]?.toLowerCase() === 'echo' && a[1] === tag); i++) await new Promise((r) => setTimeout(r, 10));
  };
  await marker('start');
  const from = seen.length;
  await fn();
  await marker('end');
  monitor.disconnect();
  return seen.slice(from).filter((a) => a[0]?.toLowerCase() !== 'echo');
}

const named = (cmds: string[][], name: string): string[][] => cmds.filter((a) => a[0]?.toLowerCase() === name);

describe('registry refresh with 1,000 nodes', () => {
  const a = (): Registry => bridges[0]!;
  const bridges: Registry[] = [];

  it('reads every document once, then only those written since, on each of two bridges', async () => {
    for (let b = 0; b < 2; b++) bridges.push(new Registry({ redis: client(), n, thresholds, log: silentLogger }));
    for (const r of bridges) {
      const s = await r.refresh();
      expect(s.eligible).toHaveLength(NODES);
      expect(r.reads()).toMatchObject({ full: 1, delta: 0, docsRead: NODES, docsParsed: NODES });
    }

    // Nothing written: nothing read, nothing parsed.
    const idle = await commandsDuring(() => Promise.all(bridges.map((r) => r.refresh())));
    expect(named(idle, 'hgetall')).toEqual([]);
    expect(named(idle, 'hmget')).toEqual([]);
    for (const r of bridges) expect(r.reads()).toMatchObject({ full: 1, delta: 1, docsRead: NODES, docsParsed: NODES });

    // Seven nodes report (a heartbeat's worth is 200 a second at this size): each bridge
    // fetches those seven documents and no other.
    const changed = [3, 141, 500, 501, 777, 998, 999];
    for (const i of changed) await publish(admin, i, 89.5);
    const cmds = await commandsDuring(() => Promise.all(bridges.map((r) => r.refresh())));
    expect(named(cmds, 'hgetall')).toEqual([]);
    const fetched = named(cmds, 'hmget').map((args) => args.slice(2).sort());
    expect(fetched).toEqual([changed.map(id), changed.map(id)]);
    for (const r of bridges) {
      expect(r.reads()).toMatchObject({ full: 1, delta: 2, docsRead: NODES + changed.length, docsParsed: NODES + changed.length });
      const s = r.current();
      for (const i of changed) expect(s.views.get(id(i))?.health.ram_percent).toBe(89.5);
      expect(s.views.get(id(4))?.health.ram_percent).toBe(20 + 4);
      // Routing order follows: the changed nodes (most RAM used) go last.
      expect(s.eligible.slice(-changed.length).map((v) => v.health.node_id).sort()).toEqual(changed.map(id));
    }
  });

  it('sees a node vanish (its TTL key expires) without reading any document', async () => {
    await publish(admin, 42, 30, 300);
    await a().refresh();
    expect(a().current().views.get(id(42))?.eligible).toBe(true);
    const before = a().reads();
    await new Promise((r) => setTimeout(r, 400));
    expect(await admin.exists(n.healthKey(id(42)))).toBe(0);
    const s = await a().refresh();
    expect(s.dead).toContain(id(42));
    expect(s.views.get(id(42))?.eligible).toBe(false);
    expect(a().reads()).toMatchObject({ full: before.full, docsRead: before.docsRead, docsParsed: before.docsParsed });
  });

  it('reads the whole hash when a field comes or goes without a version, and keeps skipping junk', async () => {
    const before = a().reads();
    // Junk written straight into the hash (a worker's ACL user may write any field).
    await admin.hset(n.health, 'evil:node', 'garbage');
    let s = await a().refresh();
    expect(a().reads().full).toBe(before.full + 1);
    expect(s.views.has('evil:node')).toBe(false);
    expect(s.known).not.toContain('evil:node');
    expect(s.eligible.length).toBe(NODES - 1);
    // Parsed again: only the documents that differ from those held (none; junk is no node id).
    expect(a().reads().docsParsed).toBe(before.docsParsed);
    // A node forgotten (`orion forget`: HDEL and ZREM) is gone at the next refresh.
    await admin.multi().hdel(n.health, id(7)).zrem(n.healthVersions, id(7)).srem(n.nodes, id(7)).del(n.healthKey(id(7))).exec();
    s = await a().refresh();
    expect(a().reads().full).toBe(before.full + 2);
    expect(s.views.has(id(7))).toBe(false);
    await admin.hdel(n.health, 'evil:node');
  });

  it('reads the whole hash when the versions go back (Redis restarted from an older state)', async () => {
    const before = a().reads();
    const cursor = (await admin.zrevrange(n.healthVersions, 0, 0, 'WITHSCORES'))[1]!;
    await admin.flushall();
    const json = JSON.stringify(doc(1, 33));
    await admin.multi().hset(n.health, id(1), json).set(n.healthKey(id(1)), json, 'PX', 60_000).sadd(n.nodes, id(1)).zadd(n.healthVersions, String(Number(cursor) - 1e9), id(1)).exec();
    const s = await a().refresh();
    expect(a().reads().full).toBe(before.full + 1);
    expect([...s.views.keys()]).toEqual([id(1)]);
    expect(s.views.get(id(1))?.health.ram_percent).toBe(33);
    // New writes get versions above every older one: the next refresh reads only them.
    const afterFull = a().reads();
    await publish(admin, 2, 34);
    const next = await a().refresh();
    expect(a().reads()).toMatchObject({ full: afterFull.full, delta: afterFull.delta + 1, docsRead: afterFull.docsRead + 1 });
    expect(next.views.get(id(2))?.health.ram_percent).toBe(34);
  });

  it('gives versions that only grow, one write after another, whatever the node', async () => {
    await publish(admin, 10, 40);
    await publish(admin, 11, 40);
    await publish(admin, 10, 41);
    const v = await admin.zrange(n.healthVersions, 0, -1, 'WITHSCORES');
    const byNode = new Map<string, number>();
    for (let i = 0; i < v.length; i += 2) byNode.set(v[i]!, Number(v[i + 1]));
    expect(byNode.get(id(11))!).toBeGreaterThan(byNode.get(id(2))!);
    expect(byNode.get(id(10))!).toBeGreaterThan(byNode.get(id(11))!);
    expect(Number.isInteger(byNode.get(id(10)))).toBe(true);
  });
});
