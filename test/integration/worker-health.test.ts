/** The worker's heartbeat, endpoints, shutdown and start-up refusals. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { beforeAll, describe, expect, it } from 'vitest';
import { validateHealth } from '../../src/contracts/index.js';
import { names } from '../../src/lib/names.js';
import { createWorker } from '../../src/worker/worker.js';
import { requireBuilt } from '../helpers/built.js';
import { freePort, startRedis, testPrefix } from '../helpers/redis.js';
import { enqueue, finalOn, fixtureNode, jobState, nodeQueue, requestTo, until, useWorkerEnv, workerConfig } from '../helpers/worker-harness.js';

const env = useWorkerEnv();

async function start(flags: Record<string, string> = {}, nodeId = 'pi-8g') {
  const prefix = testPrefix('health');
  const n = names(prefix);
  const worker = await createWorker(workerConfig({ redisAddr: env.server.addr, ollamaUrl: env.ollama.url, prefix, nodeId, flags }));
  env.cleanups.push(() => worker.close());
  return { n, worker };
}

const healthOf = async (n: ReturnType<typeof names>, nodeId: string): Promise<Record<string, unknown> | undefined> => {
  const raw = await env.redis.hget(n.health, nodeId);
  return raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
};

describe('heartbeat', () => {
  it('publishes at start, then on every beat: the registry hash, the TTL key (<= 15 s) and the node set', async () => {
    const began = Date.now();
    const { n } = await start({ 'heartbeat-interval': '200ms' });
    // Published before createWorker resolved.
    const first = await healthOf(n, 'pi-8g');
    expect(first).toBeDefined();
    expect(validateHealth(first).ok).toBe(true);
    expect(first).toMatchObject({
      node_id: 'pi-8g',
      ram_percent: 62.1,
      temp_celsius: 55,
      models: ['gemma3:1b'],
      installed_models: ['gemma3:1b', 'llama3.2:3b'],
      available: true,
      concurrency: 1,
      active: 0,
      waiting: 0,
      worker_version: '0.1.0',
      ollama_version: '0.6.4',
    });
    // When Ollama (/api/ps) says the loaded model goes, on Redis's clock like last_seen.
    const expires = (first as { models_expire_at?: Record<string, string> }).models_expire_at ?? {};
    expect(Object.keys(expires)).toEqual(['gemma3:1b']);
    expect(Date.parse(expires['gemma3:1b']!)).toBeGreaterThan(Date.parse(String(first!['last_seen'])));
    expect(await env.redis.get(n.healthKey('pi-8g'))).toBe(JSON.stringify(first));
    expect(await env.redis.smembers(n.nodes)).toEqual(['pi-8g']);
    const ttl = await env.redis.pttl(n.healthKey('pi-8g'));
    // Set to 15 s by the last write, which came after `began`: at most this much has run off
    // (a beat may have renewed it since), however slow the machine.
    expect(ttl).toBeGreaterThanOrEqual(15_000 - (Date.now() - began));
    expect(ttl).toBeLessThanOrEqual(15_000);

    // Beats keep coming: each beat probes Ollama again (ps, tags, version) and refreshes the TTL.
    const probes = (): number => env.ollama.node.requests().filter((r) => r.path === '/api/ps').length;
    const before = probes();
    await until(async () => probes() - before >= 2, 10_000, 'two more beats probing Ollama');
    expect(probes() - before).toBeGreaterThanOrEqual(2);
    expect(await env.redis.pttl(n.healthKey('pi-8g'))).toBeGreaterThan(14_500);
    expect(validateHealth(await healthOf(n, 'pi-8g')).ok).toBe(true);
    // The scheduler lives in the node's heartbeat queue.
    expect(await env.redis.exists(`${n.heartbeatQueuePrefix}:pi-8g:repeat`)).toBe(1);
  });

  it('honours --health-ttl and reports a node without a thermal sensor as null', async () => {
    const { n } = await start({ 'health-ttl': '3s', 'proc-root': fixtureNode('pi-16g'), 'sys-root': fixtureNode('no-sensor') }, 'pi-16g');
    const h = await healthOf(n, 'pi-16g');
    expect(h).toMatchObject({ temp_celsius: null, concurrency: 2, available: true });
    expect(await env.redis.pttl(n.healthKey('pi-16g'))).toBeLessThanOrEqual(3000);
  });

  it('reports unavailable with the reason when Ollama does not answer at start, and takes no jobs', async () => {
    const port = await freePort();
    const prefix = testPrefix('health');
    const n = names(prefix);
    const worker = await createWorker(workerConfig({ redisAddr: env.server.addr, ollamaUrl: `http://127.0.0.1:${port}`, prefix }));
    env.cleanups.push(() => worker.close());
    const h = await healthOf(n, 'pi-8g');
    expect(h).toMatchObject({ available: false, models: [], ollama_version: null, reason: expect.stringMatching(/ollama unreachable/) });
    expect(validateHealth(h).ok).toBe(true);
    const queue = nodeQueue(env.server.addr, n, 'pi-8g');
    env.cleanups.push(() => queue.close());
    const job = await enqueue(env.redis, queue, n, { request_id: 'idle', model: 'm', prompt: 'p' });
    // Two beats of the worker's own that see the job waiting: it stayed untaken a whole beat.
    const beats = new Set<unknown>();
    await until(async () => {
      const doc = await healthOf(n, 'pi-8g');
      if (doc?.['waiting'] === 1 && doc['active'] === 0) beats.add(doc['last_seen']);
      return beats.size >= 2;
    }, 10_000, 'two beats counting the job as waiting');
    expect(['waiting', 'prioritized']).toContain(await queue.getJobState(job.id!));
  });
});

describe('Redis going away', () => {
  it('does not stop the worker: health is published again once Redis is back, even with its data lost', async () => {
    const own = await startRedis();
    env.cleanups.push(() => own.stop());
    const prefix = testPrefix('health');
    const n = names(prefix);
    const worker = await createWorker(workerConfig({ redisAddr: own.addr, ollamaUrl: env.ollama.url, prefix, flags: { 'heartbeat-interval': '200ms' } }));
    env.cleanups.push(() => worker.close());
    const client = new Redis(own.port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => 50 });
    client.on('error', () => undefined);
    env.cleanups.push(async () => client.disconnect());
    await client.connect();
    expect(await client.hexists(n.health, 'pi-8g')).toBe(1);
    await own.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 800));
    // Restarted empty (no persistence): the heartbeat scheduler is gone too.
    await own.start();
    const doc = await until(async () => {
      const raw = await client.hget(n.health, 'pi-8g').catch(() => null);
      return raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
    }, 8000, 'health after the Redis restart');
    expect(doc).toMatchObject({ node_id: 'pi-8g', available: true });
    // And jobs are served again.
    const queue = nodeQueue(own.addr, n, 'pi-8g');
    env.cleanups.push(() => queue.close());
    await enqueue(client, queue, n, { request_id: 'after-restart', model: 'gemma3:1b', prompt: 'p' });
    expect(await finalOn(client, n.responses, 'after-restart', 8000)).toMatchObject({ response: 'Hello world' });
  });
});

describe('Redis gone at shutdown', () => {
  it('close() still returns promptly, and http is closed', async () => {
    const own = await startRedis();
    env.cleanups.push(() => own.stop());
    const prefix = testPrefix('health');
    const worker = await createWorker(workerConfig({ redisAddr: own.addr, ollamaUrl: env.ollama.url, prefix }));
    await own.stop('SIGKILL');
    const t0 = Date.now();
    await worker.close();
    expect(Date.now() - t0).toBeLessThan(5_000);
    await expect(fetch(`http://127.0.0.1:${worker.httpPort}/health`)).rejects.toThrow();
  }, 20_000);
});

describe('HTTP', () => {
  it('GET /health answers the guide\'s document, keys in the guide\'s order', async () => {
    const { worker } = await start();
    const res = await fetch(`http://127.0.0.1:${worker.httpPort}/health`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text.startsWith(`{"status":"ok","service":"orion-inference-worker","node_id":"pi-8g","version":"0.1.0","ollama":"${env.ollama.url}"`)).toBe(true);
    expect(JSON.parse(text)).toMatchObject({ concurrency: 1, active: 0, available: true });
  });

  it('GET /metrics is Prometheus text with the worker metrics', async () => {
    const prefix = testPrefix('health');
    const n = names(prefix);
    const { worker } = await (async () => {
      const w = await createWorker(workerConfig({ redisAddr: env.server.addr, ollamaUrl: env.ollama.url, prefix }));
      env.cleanups.push(() => w.close());
      return { worker: w };
    })();
    const queue = nodeQueue(env.server.addr, n, 'pi-8g');
    env.cleanups.push(() => queue.close());
    await enqueue(env.redis, queue, n, { request_id: 'm1', model: 'gemma3:1b', prompt: 'p' });
    await finalOn(env.redis, n.responses, 'm1');
    const res = await fetch(`http://127.0.0.1:${worker.httpPort}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    for (const name of [
      'orion_worker_jobs_total',
      'orion_worker_job_duration_seconds',
      'orion_worker_ollama_load_duration_seconds',
      'orion_worker_tokens_generated_total',
      'orion_worker_active_jobs',
      'orion_worker_node_cpu_percent',
      'orion_worker_node_ram_percent',
      'orion_worker_node_temp_celsius',
      'orion_worker_process_cpu_seconds_total',
    ]) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/orion_worker_jobs_total\{outcome="ok",code="",node="pi-8g"\} 1/);
    expect(text).toMatch(/orion_worker_tokens_generated_total\{model="gemma3:1b",node="pi-8g"\} 2/);
    expect(text).toMatch(/orion_worker_node_ram_percent\{node="pi-8g"\} 62.1/);
  });
});

describe('shutdown', () => {
  it('close() lets the running job finish, then reports the node unavailable; safe to call twice', async () => {
    const prefix = testPrefix('health');
    const n = names(prefix);
    const worker = await createWorker(workerConfig({ redisAddr: env.server.addr, ollamaUrl: env.ollama.url, prefix }));
    const queue = nodeQueue(env.server.addr, n, 'pi-8g');
    env.cleanups.push(() => queue.close());
    env.ollama.node.setScript([{ chunks: ['slow', ' but', ' sure'], chunkDelayMs: 150 }]);
    const job = await enqueue(env.redis, queue, n, { request_id: 'drain', model: 'gemma3:1b', prompt: 'p' });
    await jobState(queue, job.id!, ['active']);
    await until(async () => worker.active() === 1);
    const closing = worker.close();
    expect(worker.close()).toBe(closing);
    // While draining the node already says it is going away.
    await until(async () => (await healthOf(n, 'pi-8g'))?.['available'] === false, 10_000, 'unavailable while draining');
    await closing;
    expect(await finalOn(env.redis, n.responses, 'drain', 100)).toMatchObject({ response: 'slow but sure' });
    expect(await queue.getJobState(job.id!)).toBe('completed');
    const h = await healthOf(n, 'pi-8g');
    expect(h).toMatchObject({ available: false, reason: 'shutting down', active: 0 });
    expect(validateHealth(h).ok).toBe(true);
    await expect(fetch(`http://127.0.0.1:${worker.httpPort}/health`)).rejects.toThrow();
    await worker.close();
  });

  it('close({force}) aborts the running generation and hands the job back without counting the attempt', async () => {
    const prefix = testPrefix('health');
    const n = names(prefix);
    const worker = await createWorker(workerConfig({ redisAddr: env.server.addr, ollamaUrl: env.ollama.url, prefix }));
    const queue = nodeQueue(env.server.addr, n, 'pi-8g');
    env.cleanups.push(() => queue.close());
    env.ollama.node.setScript([{ chunks: Array.from({ length: 50 }, () => 'x'), chunkDelayMs: 100 }]);
    const job = await enqueue(env.redis, queue, n, { request_id: 'forced', model: 'gemma3:1b', prompt: 'forced' });
    await requestTo(env.ollama, (r) => r.body?.['prompt'] === 'forced');
    await worker.close({ force: true });
    const notice = await until(async () => (await env.redis.xrange(n.reroute, '-', '+'))[0]);
    expect(JSON.parse(notice[1][1]!)).toMatchObject({ request_id: 'forced', counts: false, code: 'backend_error' });
    expect(await queue.getJobState(job.id!)).toBe('failed');
    expect((await requestTo(env.ollama, (r) => r.body?.['prompt'] === 'forced' && r.clientClosed)).finished).toBe(false);
  });
});

describe('start-up refusals', () => {
  it('refuses a node under 6 GiB without --concurrency before connecting anywhere, and runs with it', async () => {
    const prefix = testPrefix('health');
    await expect(
      createWorker(workerConfig({ redisAddr: env.server.addr, ollamaUrl: env.ollama.url, prefix, flags: { 'proc-root': fixtureNode('pi-4g') } })),
    ).rejects.toThrow(/4 GB Pi is kinematics only/);
    expect(await env.redis.hlen(names(prefix).health)).toBe(0);
    const { worker } = await start({ 'proc-root': fixtureNode('pi-4g'), concurrency: '1' });
    expect(worker.concurrency).toBe(1);
  });

  describe('the built program', () => {
    const root = fileURLToPath(new URL('../../', import.meta.url));
    const bin = join(root, 'dist', 'src', 'bin', 'worker.js');
    beforeAll(() => requireBuilt(bin));

    const run = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
      new Promise((resolve) => {
        const child = spawn(process.execPath, [bin, ...args], { cwd: root, env: { PATH: process.env['PATH'] ?? '' } });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('exit', (code) => resolve({ code, stderr }));
      });

    it('refuses a node id with ":" with a clear message and exit code 2', async () => {
      const r = await run(['--node-id', 'a:b']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--node-id 'a:b': a node id is 1-64 characters of \[A-Za-z0-9._-\] \(no ":"/);
    });

    it('refuses a 4 GB node without --concurrency, saying why', async () => {
      const r = await run(['--node-id', 'pi-4g', '--proc-root', fixtureNode('pi-4g'), '--redis-addr', env.server.addr]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/kinematics only/);
    });
  });
});
