/**
 * A Redis that fails over, for fault row 33: the World's redis-server is the master, one more
 * redis-server replicates it, and three Sentinels (Debian's `redis-sentinel`, or
 * `redis-server --sentinel`) watch it with a quorum of 2 and a 1 s down-after.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedis, type RedisServer } from '../helpers/redis.js';
import { waitFor } from './harness.js';

export const MASTER_NAME = 'orion-master';

export interface SentinelCluster {
  replica: RedisServer;
  /** `host:port` of each Sentinel. */
  sentinels: string[];
  /** The flags every program gets. */
  flags: string[];
  /** The address the Sentinels give for the master now. */
  masterAddr(): Promise<string>;
  /** An ioredis client that finds the master through the Sentinels. */
  client(): Redis;
  stop(): Promise<void>;
}

function sentinelCommand(): { cmd: string; pre: string[] } {
  for (const dir of ['/usr/bin', '/usr/local/bin', '/usr/sbin']) if (existsSync(join(dir, 'redis-sentinel'))) return { cmd: join(dir, 'redis-sentinel'), pre: [] };
  return { cmd: 'redis-server', pre: ['--sentinel'] };
}

async function startSentinel(masterPort: number, dir: string, i: number): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const conf = join(dir, `sentinel-${i}.conf`);
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      'protected-mode no',
      `dir ${dir}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 5000`,
      `sentinel parallel-syncs ${MASTER_NAME} 1`,
      '',
    ].join('\n'),
  );
  const { cmd, pre } = sentinelCommand();
  // The config file is the first argument (Sentinel rewrites it: it must be writable).
  const child = spawn(cmd, [conf, ...pre], { stdio: ['ignore', 'ignore', 'ignore'] });
  return { port, child };
}

export async function startSentinelCluster(masterPort: number): Promise<SentinelCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'orion-sentinel-'));
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(masterPort), '--replica-announce-ip', '127.0.0.1'] });
  const admin = new Redis({ port: replica.port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 });
  await waitFor('the replica in sync', async () => /master_link_status:up/.test(await admin.info('replication')), 20_000);
  admin.disconnect();
  const started = await Promise.all([0, 1, 2].map((i) => startSentinel(masterPort, dir, i)));
  const sentinels = started.map((s) => `127.0.0.1:${s.port}`);
  const clients: Redis[] = [];
  const ask = async (port: number): Promise<string[]> => {
    const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
    c.on('error', () => undefined);
    try {
      return ((await c.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)) as string[] | null) ?? [];
    } finally {
      c.disconnect();
    }
  };
  // Every Sentinel knows the replica and the other two before the test kills anything.
  await waitFor('three sentinels that know the replica and each other', async () => {
    const views = await Promise.all(
      started.map(async (s) => {
        const c = new Redis({ port: s.port, host: '127.0.0.1', maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
        c.on('error', () => undefined);
        try {
          const master = (await c.call('SENTINEL', 'master', MASTER_NAME)) as string[];
          const f = (k: string): string => master[master.indexOf(k) + 1] ?? '';
          return Number(f('num-slaves')) >= 1 && Number(f('num-other-sentinels')) >= 2;
        } finally {
          c.disconnect();
        }
      }),
    );
    return views.every(Boolean);
  }, 30_000, 250);
  return {
    replica,
    sentinels,
    flags: ['--redis-sentinels', sentinels.join(','), '--redis-master-name', MASTER_NAME],
    async masterAddr() {
      const [host, port] = await ask(started[0]!.port);
      return `${host}:${port}`;
    },
    client() {
      const c = new Redis({
        sentinels: started.map((s) => ({ host: '127.0.0.1', port: s.port })),
        name: MASTER_NAME,
        maxRetriesPerRequest: null,
        retryStrategy: () => 100,
      });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.disconnect();
      for (const s of started) s.child.kill('SIGKILL');
      await replica.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
