import { describe, expect, it } from 'vitest';
import { helpText } from '../../src/config/options.js';
import { loadWorkerConfig, workerOptions } from '../../src/config/worker.js';
import { configLoader } from '../helpers/config.js';

const { load, problems } = configLoader(workerOptions, loadWorkerConfig);

describe('worker configuration', () => {
  it('has the guide\'s defaults', () => {
    const c = load(['--node-id', 'pi-8g']);
    expect(c).toMatchObject({
      nodeId: 'pi-8g',
      redisAddr: 'localhost:6379',
      redisPassword: '',
      ollamaHost: 'http://localhost:11434',
      ollamaTimeout: 300_000,
      httpPort: 8081,
      streamPrefix: 'orion:inference',
      procRoot: '/',
      sysRoot: '/',
      heartbeatInterval: 5000,
      healthTtl: 15000,
      lockDuration: 10000,
      logLevel: 'info',
    });
    expect(c.concurrency).toBeUndefined();
  });

  it('takes the guide\'s example flags, in both --flag v and --flag=v forms', () => {
    const c = load([
      '--node-id', 'pi-8g',
      '--redis-addr', 'redis.orion.local:6379',
      '--redis-password=your-password',
      '--ollama-host', 'http://localhost:11434',
      '--http-port=8082',
      '--concurrency', '3',
      '--heartbeat-interval', '200ms',
    ]);
    expect(c).toMatchObject({
      nodeId: 'pi-8g',
      redisAddr: 'redis.orion.local:6379',
      redisPassword: 'your-password',
      httpPort: 8082,
      concurrency: 3,
      heartbeatInterval: 200,
    });
  });

  it('reads every setting from its ORION_* twin, and a flag wins over it', () => {
    const env = {
      ORION_NODE_ID: 'pi-16g',
      ORION_REDIS_ADDR: 'redis.local:6380',
      ORION_OLLAMA_HOST: 'http://127.0.0.1:11435/',
      ORION_HTTP_PORT: '9000',
      ORION_STREAM_PREFIX: 'lab:inference',
      ORION_CONCURRENCY: '2',
      ORION_PROC_ROOT: '/host',
      ORION_SYS_ROOT: '/host',
      ORION_LOCK_DURATION: '20s',
      ORION_OLLAMA_TIMEOUT: '90s',
    };
    expect(load([], env)).toMatchObject({
      nodeId: 'pi-16g',
      redisAddr: 'redis.local:6380',
      ollamaHost: 'http://127.0.0.1:11435',
      httpPort: 9000,
      streamPrefix: 'lab:inference',
      concurrency: 2,
      procRoot: '/host',
      sysRoot: '/host',
      lockDuration: 20000,
      ollamaTimeout: 90_000,
    });
    expect(load(['--node-id', 'pi-8g', '--http-port', '8081'], env)).toMatchObject({ nodeId: 'pi-8g', httpPort: 8081 });
  });

  it('requires a node id', () => {
    expect(problems([]).join('\n')).toMatch(/--node-id \(or ORION_NODE_ID\) is required/);
  });

  it.each([
    ['a colon, which BullMQ forbids in queue names', 'a:b'],
    ['65 characters', 'x'.repeat(65)],
    ['a space', 'pi 8g'],
    ['a slash', 'pi/8g'],
  ])('refuses a node id with %s, clearly', (_name, id) => {
    const p = problems(['--node-id', id]).join('\n');
    expect(p).toContain('--node-id');
    expect(p).toMatch(/1-64 characters of \[A-Za-z0-9._-\]/);
  });

  it('accepts a node id of exactly 64 characters and the host-name forms', () => {
    expect(load(['--node-id', 'x'.repeat(64)]).nodeId).toHaveLength(64);
    expect(load(['--node-id', 'pi-16g.lab_1']).nodeId).toBe('pi-16g.lab_1');
  });

  it('refuses an unknown flag and reports every problem at once', () => {
    const p = problems(['--node-id', 'a:b', '--concurency', '2', '--http-port', '70000', '--ollama-host', 'ftp://x']);
    expect(p.some((x) => /unknown flag --concurency/.test(x))).toBe(true);
    expect(p.some((x) => x.startsWith('--node-id'))).toBe(true);
    expect(p.some((x) => x.startsWith('--http-port'))).toBe(true);
    expect(p.some((x) => x.startsWith('--ollama-host'))).toBe(true);
  });

  it('refuses a zero or negative concurrency', () => {
    expect(problems(['--node-id', 'n', '--concurrency', '0']).join('\n')).toMatch(/--concurrency/);
  });

  it('never echoes the Redis password in a problem', () => {
    const p = problems(['--node-id', 'a:b', '--redis-password']).join('\n');
    expect(p).toMatch(/--redis-password needs a value/);
    expect(problems(['--node-id', 'a:b'], { ORION_REDIS_PASSWORD: 's3cret' }).join('\n')).not.toContain('s3cret');
  });

  it('lists every flag with its environment twin in --help', () => {
    const text = helpText('orion-inference-worker', 'x', workerOptions);
    for (const spec of Object.values(workerOptions)) {
      expect(text).toContain(`--${spec.flag}`);
      expect(text).toContain(spec.env);
    }
  });
});
