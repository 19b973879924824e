import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRouterConfig } from '../../src/config/router.js';
import { loadWorkerConfig } from '../../src/config/worker.js';
import { aclLine, aclRules } from '../../src/lib/acl.js';
import { publishHealth } from '../../src/lib/health-registry.js';
import { silentLogger } from '../../src/lib/logger.js';
import { names } from '../../src/lib/names.js';
import { createBridge } from '../../src/router/bridge.js';
import { Registry } from '../../src/router/registry.js';
import { startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';
import { createWorker } from '../../src/worker/worker.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

let server: RedisServer;
let admin: Redis;
const prefix = testPrefix('acl');
const n = names(prefix);

beforeAll(async () => {
  server = await startRedis();
  admin = new Redis(server.port, '127.0.0.1');
  await admin.call('ACL', 'SETUSER', 'orion-bridge', ...aclRules(n, { role: 'bridge' }, 'bridge-secret'));
  await admin.call('ACL', 'SETUSER', 'orion-worker-pi-8g', ...aclRules(n, { role: 'worker', nodeId: 'pi-8g' }, 'worker-secret'));
  await admin.call('ACL', 'SETUSER', 'orion-brain', ...aclRules(n, { role: 'brain' }, 'brain-secret'));
  await admin.call('ACL', 'SETUSER', 'orion-gateway', ...aclRules(n, { role: 'gateway' }, 'gateway-secret'));
});
afterAll(async () => {
  admin.disconnect();
  await server.stop();
});

/** What `ACL DRYRUN` says: 'OK', or the reason it would be refused. */
async function dryrun(user: string, ...command: string[]): Promise<string> {
  return String(await admin.call('ACL', 'DRYRUN', user, ...command));
}

describe('least-privilege Redis users', () => {
  it('let a worker touch its own queue and health, and nothing of another node or the server', async () => {
    const w = 'orion-worker-pi-8g';
    expect(await dryrun(w, 'LPUSH', `${prefix}:requests:pi-8g:wait`, 'x')).toBe('OK');
    expect(await dryrun(w, 'HSET', n.health, 'pi-8g', '{}')).toBe('OK');
    expect(await dryrun(w, 'SET', n.healthKey('pi-8g'), '{}', 'PX', '15000')).toBe('OK');
    expect(await dryrun(w, 'ZADD', n.healthVersions, '1', 'pi-8g')).toBe('OK');
    expect(await dryrun(w, 'XADD', `${n.responses}:brain`, '*', 'data', '{}')).toBe('OK');
    expect(await dryrun(w, 'XADD', n.deadletter, '*', 'data', '{}')).toBe('OK');
    expect(await dryrun(w, 'LPUSH', `${prefix}:requests:pi-16g:wait`, 'x')).not.toBe('OK');
    expect(await dryrun(w, 'SET', n.healthKey('pi-16g'), '{}')).not.toBe('OK');
    expect(await dryrun(w, 'XADD', n.requests, '*', 'data', '{}')).not.toBe('OK');
    expect(await dryrun(w, 'XREAD', 'STREAMS', n.deadletter, '0')).not.toBe('OK');
    expect(await dryrun(w, 'FLUSHALL')).not.toBe('OK');
    expect(await dryrun(w, 'CONFIG', 'SET', 'maxmemory', '1')).not.toBe('OK');
    expect(await dryrun(w, 'KEYS', '*')).not.toBe('OK');
  });

  it('let the Brain add requests and read answers, and nothing else', async () => {
    const b = 'orion-brain';
    expect(await dryrun(b, 'XADD', n.requests, '*', 'data', '{}')).toBe('OK');
    expect(await dryrun(b, 'XREAD', 'BLOCK', '10', 'STREAMS', n.responses, '0')).toBe('OK');
    expect(await dryrun(b, 'XREAD', 'STREAMS', `${n.responses}:brain`, '0')).toBe('OK');
    expect(await dryrun(b, 'XREAD', 'STREAMS', n.requests, '0')).not.toBe('OK');
    expect(await dryrun(b, 'HSET', n.health, 'pi-8g', '{}')).not.toBe('OK');
    expect(await dryrun(b, 'LPUSH', `${prefix}:requests:pi-8g:wait`, 'x')).not.toBe('OK');
    expect(await dryrun(b, 'DEL', n.health)).not.toBe('OK');
    expect(await dryrun(b, 'ZADD', n.healthVersions, '1', 'pi-8g')).not.toBe('OK');
    expect(await dryrun(b, 'FLUSHALL')).not.toBe('OK');
  });

  it('let the bridge reach every queue under the prefix, but no key outside it and no server command', async () => {
    const r = 'orion-bridge';
    expect(await dryrun(r, 'LPUSH', `${prefix}:requests:pi-16g:wait`, 'x')).toBe('OK');
    expect(await dryrun(r, 'XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', n.requests, '>')).toBe('OK');
    // Trimming what the group acknowledged (src/router/trim.ts), from a script.
    for (const cmd of [['XINFO', 'GROUPS', n.requests], ['XPENDING', n.requests, 'g'], ['XTRIM', n.requests, 'MINID', '~', '0-1'], ['EVAL', 'return 1', '1', n.reroute]]) {
      expect(await dryrun(r, ...cmd), cmd.join(' ')).toBe('OK');
    }
    expect(await dryrun(r, 'SET', 'elsewhere:key', 'x')).not.toBe('OK');
    expect(await dryrun(r, 'FLUSHALL')).not.toBe('OK');
    expect(await dryrun(r, 'CONFIG', 'GET', 'requirepass')).not.toBe('OK');
    expect(await dryrun(r, 'SHUTDOWN')).not.toBe('OK');
  });

  it('let the gateway read the registry (all of it, then what changed) and write none of it', async () => {
    const g = 'orion-gateway';
    expect(await dryrun(g, 'ZADD', n.healthVersions, '1', 'pi-8g')).not.toBe('OK');
    expect(await dryrun(g, 'HSET', n.health, 'pi-8g', '{}')).not.toBe('OK');
    await admin.call('ACL', 'LOG', 'RESET');
    const doc = (ram: number): string =>
      JSON.stringify({ node_id: 'pi-gw', cpu_percent: 1, ram_percent: ram, temp_celsius: null, models: [], available: true, last_seen: new Date().toISOString() });
    await publishHealth(admin, n, 'pi-gw', doc(10), 60_000);
    const redis = new Redis({ port: server.port, host: '127.0.0.1', username: g, password: 'gateway-secret' });
    try {
      const registry = new Registry({ redis, n, thresholds: { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 }, log: silentLogger, dropAfterMs: Number.MAX_SAFE_INTEGER });
      await registry.refresh();
      await publishHealth(admin, n, 'pi-gw', doc(20), 60_000);
      const s = await registry.refresh();
      expect(registry.reads()).toMatchObject({ full: 1, delta: 1 });
      expect(s.views.get('pi-gw')?.health.ram_percent).toBe(20);
      expect(((await admin.call('ACL', 'LOG')) as unknown[][]).map((e) => e.map(String).join(' '))).toEqual([]);
    } finally {
      redis.disconnect();
      await admin.multi().hdel(n.health, 'pi-gw').zrem(n.healthVersions, 'pi-gw').srem(n.nodes, 'pi-gw').del(n.healthKey('pi-gw')).exec();
    }
  });

  it('are enough to run the whole system: a request sent by the Brain user is answered', async () => {
    let sim: SimulatorHandle | undefined;
    const closers: Array<() => Promise<void>> = [];
    try {
      sim = await startSimulator({ profile: 'pi5-8g', loaded: ['gemma3:1b'], speed: 50 });
      const worker = await createWorker(
        loadWorkerConfig({
          flags: {
            'node-id': 'pi-8g', 'redis-addr': server.addr, 'redis-username': 'orion-worker-pi-8g', 'redis-password': 'worker-secret',
            'stream-prefix': prefix, 'ollama-host': sim.url, 'http-port': '0', concurrency: '1', 'heartbeat-interval': '200ms',
          },
          env: {},
        }),
        { log: silentLogger },
      );
      closers.push(() => worker.close());
      const bridge = await createBridge(
        loadRouterConfig({
          flags: { 'redis-addr': server.addr, 'redis-username': 'orion-bridge', 'redis-password': 'bridge-secret', 'stream-prefix': prefix, 'http-port': '0', 'consumer-name': 'acl-bridge' },
          env: {},
        }),
        { log: silentLogger, refreshMs: 200 },
      );
      closers.push(() => bridge.close());
      const brain = new Redis({ port: server.port, host: '127.0.0.1', username: 'orion-brain', password: 'brain-secret' });
      closers.push(async () => brain.disconnect());
      await brain.xadd(n.requests, '*', 'data', JSON.stringify({ request_id: 'acl-1', model: 'gemma3:1b', prompt: 'hello', reply_to: `${n.responses}:brain` }));
      const res = (await brain.xread('BLOCK', 15_000, 'STREAMS', `${n.responses}:brain`, '0')) as [string, [string, string[]][]][] | null;
      const doc = JSON.parse(res?.[0]?.[1][0]?.[1][1] ?? '{}') as Record<string, unknown>;
      // What was refused, if anything: the rules must cover every command the programs send.
      const refused = ((await admin.call('ACL', 'LOG')) as unknown[][]).map((e) => e.map(String).join(' '));
      expect(refused).toEqual([]);
      expect(doc).toMatchObject({ request_id: 'acl-1', node_id: 'pi-8g', done: true, routing: 'sticky' });
      expect(typeof doc['response']).toBe('string');
      expect(await admin.xlen(n.deadletter)).toBe(0);
    } finally {
      for (const c of closers.reverse()) await c().catch(() => undefined);
      await sim?.close();
    }
  });

  it('print as ACL SETUSER lines and ACL file lines', () => {
    const line = aclLine('orion-worker-pi-8g', aclRules(n, { role: 'worker', nodeId: 'pi-8g' }, 's3cret'), 'file');
    expect(line.startsWith('user orion-worker-pi-8g reset on >s3cret')).toBe(true);
    expect(line).toContain(`~${prefix}:requests:pi-8g:*`);
  });
});
