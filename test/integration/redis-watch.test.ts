import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/lib/logger.js';
import { RedisClock, clockWarning } from '../../src/lib/redis-clock.js';
import { PolicyWatch } from '../../src/lib/redis-policy.js';
import { whilePassing } from '../../src/lib/transient.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

/** The policy as the workers and the bridge read it: through a PolicyWatch. */
const readPolicyOf = (redis: Redis) => new PolicyWatch(redis, createLogger({ level: 'silent' })).check();

describe('what the programs watch on Redis itself', () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  const connect = (user?: string): Redis => {
    const c = new Redis({ port: server.port, host: '127.0.0.1', maxRetriesPerRequest: 1, enableReadyCheck: false, ...(user ? { username: user, password: 'pw' } : {}) });
    clients.push(c);
    return c;
  };
  beforeAll(async () => {
    server = await startRedis({ args: ['--maxmemory-policy', 'allkeys-lru'] });
    const admin = connect();
    await admin.call('ACL', 'SETUSER', 'nocfg', 'on', '>pw', '~*', '&*', '+@all', '-config');
    await admin.call('ACL', 'SETUSER', 'blind', 'on', '>pw', '~*', '&*', '+@all', '-config', '-info');
    await admin.call('ACL', 'SETUSER', 'noinfo', 'on', '>pw', '~*', '&*', '+@all', '-info');
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await server?.stop();
  });

  it('reads maxmemory-policy from INFO (nothing refused for an ACL user), with CONFIG when INFO is forbidden, unknown when both are', async () => {
    expect(await readPolicyOf(connect())).toEqual({ policy: 'allkeys-lru', evicting: true, source: 'info' });
    expect(await readPolicyOf(connect('nocfg'))).toEqual({ policy: 'allkeys-lru', evicting: true, source: 'info' });
    expect(await readPolicyOf(connect('noinfo'))).toEqual({ policy: 'allkeys-lru', evicting: true, source: 'config' });
    expect(await readPolicyOf(connect('blind'))).toEqual({ policy: 'unknown', evicting: false, source: 'none' });
    await connect().config('SET', 'maxmemory-policy', 'noeviction');
    expect(await readPolicyOf(connect('nocfg'))).toMatchObject({ policy: 'noeviction', evicting: false });
  });

  it("measures this machine's offset to Redis's clock (the same machine: about 0)", async () => {
    const clock = new RedisClock(connect(), createLogger({ level: 'silent' }));
    expect(clock.offsetMs()).toBeUndefined();
    await clock.sample();
    expect(Math.abs(clock.offsetMs()!)).toBeLessThan(50);
    expect(Math.abs(clock.now() - Date.now())).toBeLessThan(50);
    expect(clockWarning(60_000)).toBe("clock 60.0 s behind Redis's");
    expect(clockWarning(-60_000)).toBe("clock 60.0 s ahead of Redis's");
    expect(clockWarning(1500)).toBeUndefined();
  });

  it('tries a write again while Redis is out of memory, and only then', async () => {
    const admin = connect();
    await admin.config('SET', 'maxmemory', '1');
    const log = createLogger({ level: 'silent' });
    const refused = await admin.set('k', 'v').catch((e: unknown) => e);
    expect(String(refused)).toMatch(/OOM command not allowed/);
    const writing = whilePassing(() => admin.set('k', 'v'), { what: 'test', log, giveUpAt: Date.now() + 10_000, delayMs: 50 });
    await new Promise((r) => setTimeout(r, 400));
    await admin.config('SET', 'maxmemory', '0');
    expect(await writing).toBe('OK');
    await expect(whilePassing(() => admin.call('NOSUCHCOMMAND'), { what: 'test', log, giveUpAt: Date.now() + 10_000 })).rejects.toThrow(/unknown command/);
  });
});
