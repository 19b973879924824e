import { describe, expect, it } from 'vitest';
import { describeRedis, redisOptionsFor, type RedisSettings } from '../../src/lib/redis.js';

const base: RedisSettings = { redisAddr: 'localhost:6379', redisPassword: '', redisUsername: '', redisTls: false, redisTlsCa: '' };

describe('Redis connection options', () => {
  it('reads host:port, and credentials from the flags', () => {
    expect(redisOptionsFor({ ...base, redisAddr: 'redis.orion.local:6380', redisUsername: 'orion-bridge', redisPassword: 'pw' })).toMatchObject({
      host: 'redis.orion.local',
      port: 6380,
      username: 'orion-bridge',
      password: 'pw',
      maxRetriesPerRequest: null,
    });
    expect(redisOptionsFor(base).tls).toBeUndefined();
  });

  it('reads a redis:// URL with its credentials and database, and never shows the password', () => {
    const s = { ...base, redisAddr: 'redis://orion-bridge:s%40cret@10.0.0.5:6390/2' };
    expect(redisOptionsFor(s)).toMatchObject({ host: '10.0.0.5', port: 6390, username: 'orion-bridge', password: 's@cret', db: 2 });
    expect(describeRedis(s)).not.toContain('cret');
  });

  it('turns TLS on for rediss:// or --redis-tls, and names the server only when it has a name', () => {
    expect(redisOptionsFor({ ...base, redisAddr: 'rediss://redis.orion.local:6380' }).tls).toEqual({ servername: 'redis.orion.local' });
    expect(redisOptionsFor({ ...base, redisAddr: 'redis.orion.local:6380', redisTls: true }).tls).toEqual({ servername: 'redis.orion.local' });
    // An IP address is not a server name (SNI): Node warns about it and will ignore it.
    expect(redisOptionsFor({ ...base, redisAddr: '127.0.0.1:6380', redisTls: true }).tls).toEqual({});
    expect(redisOptionsFor({ ...base, redisAddr: 'rediss://[::1]:6380' }).tls).toEqual({});
  });

  it('finds the master through Sentinels when they are given, and says so without secrets', () => {
    const s = { ...base, redisPassword: 'pw', redisSentinels: ['10.0.0.1:26379', '[::1]:26380'], redisMasterName: 'orion', redisSentinelPassword: 'spw' };
    const o = redisOptionsFor(s);
    expect(o).toMatchObject({ sentinels: [{ host: '10.0.0.1', port: 26379 }, { host: '::1', port: 26380 }], name: 'orion', sentinelPassword: 'spw', password: 'pw' });
    expect(o.host).toBeUndefined();
    expect(o.port).toBeUndefined();
    expect(describeRedis(s)).toBe('sentinel master orion via 10.0.0.1:26379,[::1]:26380');
    expect(redisOptionsFor({ ...base, redisSentinels: [] }).sentinels).toBeUndefined();
  });
});
