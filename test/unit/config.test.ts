import { describe, expect, it } from 'vitest';
import { defaultHostname } from '../../src/config/common.js';
import { helpText } from '../../src/config/options.js';
import { loadRouterConfig, routerOptions } from '../../src/config/router.js';
import { configLoader } from '../helpers/config.js';

const { load, problems } = configLoader(routerOptions, loadRouterConfig);

describe('router configuration', () => {
  it('has the guide\'s defaults, and SPEC.md\'s for the rest', () => {
    expect(load([])).toEqual({
      redisAddr: 'localhost:6379',
      redisPassword: '',
      redisUsername: '',
      redisTls: false,
      redisTlsCa: '',
      redisSentinels: [],
      redisMasterName: 'mymaster',
      redisSentinelPassword: '',
      streamPrefix: 'orion:inference',
      httpPort: 8080,
      httpAddr: '0.0.0.0',
      maxTemp: 75,
      maxRam: 90,
      routing: 'balanced',
      readmitTemp: 70,
      readmitRam: 85,
      defaultLoadTime: 24_000,
      defaultAnswerTime: 20_000,
      modelKeepAlive: 300_000,
      recordArrivals: '',
      staleAfter: 15_000,
      adminUser: '',
      adminPassword: '',
      consumerName: defaultHostname(),
      maxAttempts: 3,
      batchSize: 250,
      claimIdle: 30_000,
      logLevel: 'info',
    });
  });

  it('takes Sentinels as host:port,host:port and refuses anything else', () => {
    expect(load(['--redis-sentinels', '10.0.0.1:26379, sentinel-b:26380,[::1]:26381', '--redis-master-name', 'orion']).redisSentinels).toEqual(['10.0.0.1:26379', 'sentinel-b:26380', '[::1]:26381']);
    expect(problems(['--redis-sentinels', '10.0.0.1']).join('\n')).toMatch(/--redis-sentinels '10.0.0.1': '10.0.0.1' is not host:port/);
    expect(problems(['--redis-master-name', 'a b']).join('\n')).toMatch(/--redis-master-name 'a b'/);
  });

  it('knows only balanced and guide as --routing', () => {
    expect(load(['--routing', 'guide']).routing).toBe('guide');
    expect(problems(['--routing', 'fastest']).join('\n')).toMatch(/--routing 'fastest': must be balanced or guide/);
  });

  it('takes durations as 15s, 500ms, 2m or bare seconds', () => {
    expect(load(['--stale-after', '15s']).staleAfter).toBe(15_000);
    expect(load(['--stale-after', '500ms']).staleAfter).toBe(500);
    expect(load(['--claim-idle', '2m']).claimIdle).toBe(120_000);
    expect(load(['--stale-after', '20']).staleAfter).toBe(20_000);
  });

  it('takes --flag v and --flag=v alike', () => {
    expect(load(['--redis-addr', 'redis.orion.local:6379', '--http-port=9090'])).toMatchObject({ redisAddr: 'redis.orion.local:6379', httpPort: 9090 });
    expect(load(['--redis-addr=redis.orion.local:6379', '--http-port', '9090'])).toMatchObject({ redisAddr: 'redis.orion.local:6379', httpPort: 9090 });
  });

  it('reads each flag\'s ORION_* twin from the environment', () => {
    const cfg = load([], {
      ORION_REDIS_ADDR: 'r:6380',
      ORION_REDIS_PASSWORD: 'pw',
      ORION_HTTP_PORT: '8088',
      ORION_STREAM_PREFIX: 'lab:inference',
      ORION_MAX_TEMP: '70',
      ORION_MAX_RAM: '85.5',
      ORION_STALE_AFTER: '10s',
      ORION_CONSUMER_NAME: 'bridge-2',
      ORION_MAX_ATTEMPTS: '5',
      ORION_BATCH_SIZE: '50',
      ORION_CLAIM_IDLE: '45s',
      ORION_ADMIN_USER: 'ops',
      ORION_ADMIN_PASSWORD: 'secret',
      ORION_ROUTING: 'guide',
      ORION_READMIT_TEMP: '65',
      ORION_READMIT_RAM: '80',
      ORION_DEFAULT_LOAD_TIME: '3s',
      ORION_DEFAULT_ANSWER_TIME: '2s',
      ORION_MODEL_KEEP_ALIVE: '10m',
      ORION_RECORD_ARRIVALS: '/tmp/arrivals.jsonl',
    });
    expect(cfg).toMatchObject({
      redisAddr: 'r:6380',
      redisPassword: 'pw',
      httpPort: 8088,
      streamPrefix: 'lab:inference',
      maxTemp: 70,
      maxRam: 85.5,
      staleAfter: 10_000,
      consumerName: 'bridge-2',
      maxAttempts: 5,
      batchSize: 50,
      claimIdle: 45_000,
      routing: 'guide',
      readmitTemp: 65,
      readmitRam: 80,
      defaultLoadTime: 3000,
      defaultAnswerTime: 2000,
      modelKeepAlive: 600_000,
      recordArrivals: '/tmp/arrivals.jsonl',
      adminUser: 'ops',
      adminPassword: 'secret',
    });
  });

  it('lets a flag beat its environment twin', () => {
    expect(load(['--http-port', '7000'], { ORION_HTTP_PORT: '7001' }).httpPort).toBe(7000);
    expect(load(['--max-ram=80'], { ORION_MAX_RAM: '60' }).maxRam).toBe(80);
  });

  it('reports every problem at once', () => {
    const p = problems(['--http-port', '70000', '--max-temp', 'hot', '--stale-after', 'soon', '--consumer-name', 'a:b', '--bogus', '1']);
    expect(p).toHaveLength(5);
    expect(p.join('\n')).toMatch(/--http-port '70000'/);
    expect(p.join('\n')).toMatch(/--max-temp 'hot'/);
    expect(p.join('\n')).toMatch(/--stale-after 'soon'/);
    expect(p.join('\n')).toMatch(/--consumer-name 'a:b'/);
    expect(p.join('\n')).toMatch(/unknown flag --bogus/);
  });

  it('names the environment variable when the bad value came from there', () => {
    expect(problems([], { ORION_MAX_ATTEMPTS: '0' })[0]).toMatch(/^ORION_MAX_ATTEMPTS '0'/);
  });

  it('refuses an admin user without a password, and a password without a user', () => {
    expect(problems(['--admin-user', 'ops'])[0]).toMatch(/--admin-user and --admin-password go together/);
    expect(problems([], { ORION_ADMIN_PASSWORD: 'x' })[0]).toMatch(/go together/);
    expect(load(['--admin-user', 'ops', '--admin-password', 'pw'])).toMatchObject({ adminUser: 'ops', adminPassword: 'pw' });
  });

  it('lists the admin pair problem together with the other problems', () => {
    const p = problems(['--admin-user', 'ops', '--max-ram', '120']);
    expect(p).toHaveLength(2);
    expect(p.join('\n')).toMatch(/--max-ram '120'/);
    expect(p.join('\n')).toMatch(/go together/);
  });

  it('documents the guide\'s flags with their defaults in --help', () => {
    const text = helpText('orion-inference-router', 'routes', routerOptions);
    for (const line of [/--redis-addr <value>.*\(default localhost:6379\)/, /--redis-password <value>.*\(default ""\)/, /--http-port <value>.*\(default 8080\)/, /--stream-prefix <value>.*\(default orion:inference\)/]) {
      expect(text).toMatch(line);
    }
    expect(text).toContain('env ORION_REDIS_ADDR');
  });
});
