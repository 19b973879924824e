/**
 * The worker against a real Redis and the Ollama simulator over HTTP (instant profile, answers
 * scripted per test): jobs added as the bridge adds them, answers read from the reply streams.
 */
import type { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { validateHealth, validateResponse } from '../../src/contracts/index.js';
import type { InferenceRequest } from '../../src/contracts/types.js';
import { deadlinesKey, type InferenceJobData } from '../../src/lib/bus.js';
import { jobIdFor, names, type Names } from '../../src/lib/names.js';
import { createLogger } from '../../src/lib/logger.js';
import { JobIntake } from '../../src/worker/job-intake.js';
import { createWorkerMetrics } from '../../src/worker/metrics.js';
import { OutageLog } from '../../src/worker/outage-log.js';
import { createWorker, type WorkerHandle } from '../../src/worker/worker.js';
import type { ScriptRule, SimulatorHandle } from '../../src/simulator/index.js';
import { testPrefix } from '../helpers/redis.js';
import {
  answerWith,
  enqueue,
  finalOn,
  generations,
  jobState,
  nodeQueue,
  requestTo,
  startStandIn,
  streamDocs,
  until,
  useWorkerEnv,
  workerConfig,
} from '../helpers/worker-harness.js';

const env = useWorkerEnv();

interface Setup {
  n: Names;
  worker: WorkerHandle;
  queue: Queue<InferenceJobData>;
  fake: SimulatorHandle;
}

async function setup(o: { flags?: Record<string, string>; fake?: SimulatorHandle; nodeId?: string } = {}): Promise<Setup> {
  const prefix = testPrefix('worker');
  const n = names(prefix);
  const fake = o.fake ?? env.ollama;
  const nodeId = o.nodeId ?? 'pi-8g';
  const worker = await createWorker(workerConfig({ redisAddr: env.server.addr, ollamaUrl: fake.url, prefix, nodeId, flags: o.flags ?? {} }));
  env.cleanups.push(() => worker.close());
  const queue = nodeQueue(env.server.addr, n, nodeId);
  env.cleanups.push(() => queue.close());
  return { n, worker, queue, fake };
}

let seq = 0;
const rid = (label: string): string => `${label}-${process.pid}-${++seq}`;
const prompt = (id: string, extra: Partial<InferenceRequest> = {}): InferenceRequest => ({ request_id: id, model: 'gemma3:1b', prompt: 'Why is the sky blue?', ...extra });
/** The requests naming `id` get this answer; the rest the plain one. */
const answerFor = (id: string, rule: ScriptRule): void => answerWith(env.ollama, { ...rule, match: id });

describe('answering a job', () => {
  it('answers a prompt on {p}:responses with every final field, and returns the answer as the job result', async () => {
    const { n, queue } = await setup();
    const id = rid('prompt');
    const job = await enqueue(env.redis, queue, n, prompt(id, { options: { temperature: 0 }, keep_alive: '5m', metadata: { trace: 'abc' } }), { routing: 'sticky', seenAt: Date.now() - 50 });
    const final = await finalOn(env.redis, n.responses, id);
    expect(final).toMatchObject({
      request_id: id,
      model: 'gemma3:1b',
      node_id: 'pi-8g',
      done: true,
      response: 'Hello world',
      done_reason: 'stop',
      total_duration_ms: 1500,
      load_duration_ms: 250,
      prompt_eval_duration_ms: 100,
      eval_duration_ms: 1000,
      prompt_eval_count: 12,
      eval_count: 2,
      routing: 'sticky',
      attempt: 1,
      metadata: { trace: 'abc' },
    });
    expect(final['queue_ms']).toBeGreaterThanOrEqual(50);
    expect(final['created_at']).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(validateResponse(final).ok).toBe(true);
    expect(await jobState(queue, job.id!, ['completed'])).toBe('completed');
    expect((await queue.getJob(job.id!))!.returnvalue).toEqual(final);
    const call = generations(env.ollama).find((r) => r.body?.['prompt'] === 'Why is the sky blue?' && JSON.stringify(r.body).includes('"temperature":0'));
    expect(call).toMatchObject({ path: '/api/generate', body: { model: 'gemma3:1b', stream: true, keep_alive: '5m', options: { temperature: 0 } } });
    expect(await env.redis.hget(n.requestKey(id), 'final')).toBe(JSON.stringify(final));
    expect(await env.redis.zscore(deadlinesKey(n), n.requestKey(id))).toBeNull();
    expect(await env.redis.xlen(n.deadletter)).toBe(0);
  });

  it('answers chat messages with a message, not a response', async () => {
    const { n, queue } = await setup();
    const id = rid('chat');
    await enqueue(env.redis, queue, n, { request_id: id, model: 'llama3.2:3b', messages: [{ role: 'user', content: `hi ${id}` }] }, { routing: 'fallback' });
    const final = await finalOn(env.redis, n.responses, id);
    expect(final).toMatchObject({ message: { role: 'assistant', content: 'Hello world' }, routing: 'fallback', done: true });
    expect(final).not.toHaveProperty('response');
    expect(final).not.toHaveProperty('metadata');
    expect(generations(env.ollama).find((r) => JSON.stringify(r.body).includes(id))?.path).toBe('/api/chat');
  });

  it('streams partials in order and then exactly one final whose text is the partials joined', async () => {
    const { n, queue } = await setup();
    const id = rid('stream');
    const chunks = ['The', ' sky', ' is', ' blue', ' because', ' of', ' Rayleigh', ' scattering', '.'];
    answerFor(id, { chunks, chunkDelayMs: 5 });
    await enqueue(env.redis, queue, n, prompt(id, { stream: true, prompt: id }));
    const final = await finalOn(env.redis, n.responses, id);
    const docs = (await streamDocs(env.redis, n.responses)).filter((d) => d['request_id'] === id);
    const partials = docs.filter((d) => d['done'] === false);
    expect(docs.filter((d) => d['done'] === true)).toHaveLength(1);
    expect(docs.at(-1)).toEqual(final);
    expect(partials.length).toBeGreaterThanOrEqual(2);
    for (const p of partials) {
      expect(p).toMatchObject({ request_id: id, model: 'gemma3:1b', node_id: 'pi-8g', done: false });
      expect(validateResponse(p).ok).toBe(true);
    }
    expect(partials.map((p) => p['response']).join('')).toBe(chunks.join(''));
    expect(final['response']).toBe(chunks.join(''));
  });

  it('streams chat partials as assistant messages', async () => {
    const { n, queue } = await setup();
    const id = rid('stream-chat');
    answerFor(id, { chunks: ['a', 'b', 'c'], chunkDelayMs: 5 });
    await enqueue(env.redis, queue, n, { request_id: id, model: 'gemma3:1b', messages: [{ role: 'user', content: id }], stream: true });
    const final = await finalOn(env.redis, n.responses, id);
    const partials = (await streamDocs(env.redis, n.responses)).filter((d) => d['request_id'] === id && d['done'] === false);
    expect(partials.map((p) => (p['message'] as { content: string }).content).join('')).toBe('abc');
    expect(partials[0]!['message']).toMatchObject({ role: 'assistant' });
    expect(final['message']).toEqual({ role: 'assistant', content: 'abc' });
  });

  it('answers on the reply_to stream the request names, and only there', async () => {
    const { n, queue } = await setup();
    const id = rid('reply');
    const replyTo = `${n.responses}:brain-7`;
    await enqueue(env.redis, queue, n, prompt(id, { reply_to: replyTo }));
    expect(await finalOn(env.redis, replyTo, id)).toMatchObject({ request_id: id, response: 'Hello world' });
    expect((await streamDocs(env.redis, n.responses)).filter((d) => d['request_id'] === id)).toHaveLength(0);
  });
});

describe('failures', () => {
  it('404 answers model_not_found with a dead letter, and is not retried anywhere', async () => {
    const { n, queue } = await setup();
    const id = rid('nf');
    // The stand-in has no nope:1b and answers 404 for it, as Ollama does.
    const job = await enqueue(env.redis, queue, n, prompt(id, { model: 'nope:1b', prompt: id, metadata: { k: 1 } }), { routing: 'fallback' });
    const final = await finalOn(env.redis, n.responses, id);
    expect(final).toMatchObject({
      request_id: id,
      model: 'nope:1b',
      node_id: 'pi-8g',
      done: true,
      attempt: 1,
      routing: 'fallback',
      metadata: { k: 1 },
      error: { code: 'model_not_found', message: expect.stringContaining("model 'nope:1b' not found") },
    });
    expect(validateResponse(final).ok).toBe(true);
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    const dl = await streamDocs(env.redis, n.deadletter);
    expect(dl).toEqual([
      expect.objectContaining({ error_code: 'model_not_found', request_id: id, node_id: 'pi-8g', attempt: 1, entry_id: job.data.entry_id, request: job.data.request }),
    ]);
    expect(await env.redis.xlen(n.reroute)).toBe(0);
    expect(generations(env.ollama).filter((r) => r.body?.['prompt'] === id)).toHaveLength(1);
  });

  it('500 with attempts left hands the job back: a reroute notice that counts, the job failed, no answer yet', async () => {
    const { n, queue } = await setup();
    const id = rid('e500');
    answerFor(id, { status: 500, error: 'llama runner process has terminated' });
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id }), { attempt: 0, maxAttempts: 3 });
    const notice = await until(async () => (await streamDocs(env.redis, n.reroute))[0], 5000, 'reroute notice');
    expect(notice).toEqual({
      request_id: id,
      node_id: 'pi-8g',
      code: 'backend_error',
      message: expect.stringContaining('llama runner process has terminated'),
      counts: true,
    });
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    expect((await queue.getJob(job.id!))!.data.attempt).toBe(1);
    expect(await env.redis.hget(n.requestKey(id), 'final')).toBeNull();
    expect(await env.redis.xlen(n.deadletter)).toBe(0);
  });

  it('503 is overloaded and handed back too', async () => {
    const { n, queue } = await setup();
    const id = rid('e503');
    answerFor(id, { status: 503, error: 'server busy' });
    await enqueue(env.redis, queue, n, prompt(id, { prompt: id }));
    expect(await until(async () => (await streamDocs(env.redis, n.reroute))[0])).toMatchObject({ code: 'overloaded', counts: true });
  });

  it('500 on the last attempt answers backend_error with a dead letter', async () => {
    const { n, queue } = await setup();
    const id = rid('e500-last');
    answerFor(id, { status: 500, error: 'boom' });
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id }), { attempt: 2, maxAttempts: 3 });
    const final = await finalOn(env.redis, n.responses, id);
    expect(final).toMatchObject({ attempt: 3, error: { code: 'backend_error' } });
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    expect(await streamDocs(env.redis, n.deadletter)).toEqual([expect.objectContaining({ error_code: 'backend_error', attempt: 3, request_id: id })]);
    expect(await env.redis.xlen(n.reroute)).toBe(0);
  });

  it('a job back with its attempts used up (its worker died during each) is answered backend_error without another start', async () => {
    const { n, queue } = await setup();
    const id = rid('stalled-out');
    // As BullMQ's stalled check returns it: started 3 times of 3, never finished.
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id }), { attempt: 3, maxAttempts: 3 });
    const final = await finalOn(env.redis, n.responses, id);
    expect(final).toMatchObject({ attempt: 3, node_id: 'pi-8g', error: { code: 'backend_error', message: 'node pi-8g stopped during attempt 3 of 3' } });
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    expect(await streamDocs(env.redis, n.deadletter)).toEqual([expect.objectContaining({ error_code: 'backend_error', attempt: 3, request_id: id })]);
    expect(generations(env.ollama).filter((r) => r.body?.['prompt'] === id)).toHaveLength(0);
    expect(await env.redis.xlen(n.reroute)).toBe(0);
  });

  it('a stream that ends without done is a backend_error', async () => {
    const { n, queue } = await setup();
    const id = rid('cut');
    answerFor(id, { chunks: ['par'], endWithoutDone: true });
    await enqueue(env.redis, queue, n, prompt(id, { prompt: id }), { attempt: 0, maxAttempts: 1 });
    expect(await finalOn(env.redis, n.responses, id)).toMatchObject({ error: { code: 'backend_error' } });
  });

  it('an Ollama call with no first byte within --ollama-timeout is aborted and handed back as a counted backend_error', async () => {
    const { n, queue } = await setup({ flags: { 'ollama-timeout': '1s' } });
    const id = rid('hang');
    answerFor(id, { firstByteDelayMs: 5000, chunks: ['late'] });
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id }), { attempt: 0, maxAttempts: 3 });
    const notice = await until(async () => (await streamDocs(env.redis, n.reroute))[0], 5000, 'reroute notice');
    expect(notice).toMatchObject({ request_id: id, code: 'backend_error', counts: true, message: expect.stringMatching(/no answer from ollama for 1000 ms/) });
    expect((await requestTo(env.ollama, (r) => r.body?.['prompt'] === id && r.clientClosed, 2000)).finished).toBe(false);
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    expect(await env.redis.hget(n.requestKey(id), 'final')).toBeNull();
  });

  it('a stream that stops making progress for --ollama-timeout is given up; a slow but steady one is not', async () => {
    const { n, queue } = await setup({ flags: { 'ollama-timeout': '1s' } });
    const stuck = rid('stuck');
    const steady = rid('steady');
    env.ollama.node.setScript([
      { match: stuck, chunks: ['a', 'b'], chunkDelayMs: 3000 },
      { chunks: ['s', 'l', 'o', 'w'], chunkDelayMs: 400 },
    ]);
    await enqueue(env.redis, queue, n, prompt(stuck, { prompt: stuck }), { attempt: 2, maxAttempts: 3 });
    await enqueue(env.redis, queue, n, prompt(steady, { prompt: steady }));
    // Last attempt: answered with the error (and dead-lettered) rather than handed back.
    expect(await finalOn(env.redis, n.responses, stuck)).toMatchObject({ attempt: 3, error: { code: 'backend_error', message: expect.stringMatching(/no answer from ollama/) } });
    expect(await finalOn(env.redis, n.responses, steady)).toMatchObject({ response: 'slow' });
  });

  it('Ollama down: the attempt is given back (counts false), the node reports itself unavailable and stops taking jobs until Ollama answers', async () => {
    const fake = await startStandIn();
    env.cleanups.push(() => fake.close());
    // A long beat: only the failing job can notice Ollama is gone.
    const { n, queue, worker } = await setup({ fake, nodeId: 'pi-down', flags: { 'heartbeat-interval': '60s' } });
    // The first scheduled beat runs at once: let it probe Ollama up before Ollama goes, or it
    // would be the beat, not the job, that finds Ollama gone.
    await until(async () => ((await worker.metrics.healthPublished.get()).values.find((v) => v.labels.result === 'ok')?.value ?? 0) >= 2, 5000, 'the first scheduled beat');
    // Stop listening (connections refused) on the same port.
    fake.node.setFaults({ refuseConnections: true });
    await fake.node.settled();
    const id = rid('down');
    const job = await enqueue(env.redis, queue, n, prompt(id), { attempt: 2, maxAttempts: 3 });
    const notice = await until(async () => (await streamDocs(env.redis, n.reroute))[0], 5000, 'reroute notice');
    expect(notice).toMatchObject({ request_id: id, node_id: 'pi-down', code: 'backend_error', counts: false });
    expect(notice['message']).toMatch(/unreachable.*ECONNREFUSED/);
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    const health = await until(async () => {
      const raw = await env.redis.hget(n.health, 'pi-down');
      const doc = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
      return doc && doc['available'] === false ? doc : undefined;
    });
    expect(health['reason']).toMatch(/ollama unreachable/);
    // Still on its disk: the bridge keeps requests for them waiting instead of refusing them.
    expect(health['installed_models']).toEqual(fake.node.state().installed);
    expect(validateHealth(health).ok).toBe(true);
    expect(await env.redis.hget(n.requestKey(id), 'final')).toBeNull();

    // Not taking jobs while Ollama is away.
    const id2 = rid('down-wait');
    const job2 = await enqueue(env.redis, queue, n, prompt(id2));
    // The worker's own report (Ollama probed again, still away) counts the job waiting and none running.
    expect(await until(async () => {
      const h = await worker.publishHealth();
      return h?.waiting === 1 ? h : undefined;
    }, 5000, 'a health report counting the waiting job')).toMatchObject({ available: false, active: 0, waiting: 1 });
    expect(['waiting', 'prioritized']).toContain(await queue.getJobState(job2.id!));

    // Ollama back: the next beat says available and the waiting job runs.
    fake.node.setFaults({ refuseConnections: false });
    await fake.node.settled();
    const back = await worker.publishHealth();
    expect(back).toMatchObject({ available: true });
    expect(await finalOn(env.redis, n.responses, id2)).toMatchObject({ response: 'Hello world' });
  });
});

describe('deadlines', () => {
  it('a job past its deadline before it starts is answered timeout without calling Ollama', async () => {
    const { n, queue } = await setup();
    const id = rid('late');
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id, timeout_ms: 1000 }), { deadline: Date.now() - 1 });
    const final = await finalOn(env.redis, n.responses, id);
    expect(final).toMatchObject({ error: { code: 'timeout' }, node_id: 'pi-8g' });
    expect(final).not.toHaveProperty('attempt');
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    expect(await streamDocs(env.redis, n.deadletter)).toEqual([expect.objectContaining({ error_code: 'timeout', request_id: id })]);
    expect(generations(env.ollama).filter((r) => r.body?.['prompt'] === id)).toHaveLength(0);
  });

  it('the deadline during a generation aborts the Ollama call (the connection closes) and answers timeout', async () => {
    const { n, queue } = await setup();
    const id = rid('slow');
    answerFor(id, { chunks: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], chunkDelayMs: 200 });
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id, stream: true, timeout_ms: 400 }), { deadline: Date.now() + 400 });
    const final = await finalOn(env.redis, n.responses, id);
    expect(final).toMatchObject({ error: { code: 'timeout', message: expect.stringMatching(/aborted/) }, attempt: 1 });
    const call = await requestTo(env.ollama, (r) => r.body?.['prompt'] === id && r.clientClosed, 2000);
    expect(call.finished).toBe(false);
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    // The partials sent before the deadline came before the timeout, none after.
    const docs = (await streamDocs(env.redis, n.responses)).filter((d) => d['request_id'] === id);
    expect(docs.at(-1)).toEqual(final);
  });

  it('the deadline also cuts off a model that is still loading (no byte sent yet)', async () => {
    const { n, queue } = await setup();
    const id = rid('loading');
    answerFor(id, { firstByteDelayMs: 2000, chunks: ['x'] });
    await enqueue(env.redis, queue, n, prompt(id, { prompt: id }), { deadline: Date.now() + 300 });
    expect(await finalOn(env.redis, n.responses, id)).toMatchObject({ error: { code: 'timeout' } });
    expect((await requestTo(env.ollama, (r) => r.body?.['prompt'] === id && r.clientClosed, 2000)).finished).toBe(false);
  });
});

describe('delivery guards', () => {
  it('a job whose request moved to another node ends quietly without answering (zombie guard)', async () => {
    const { n, queue } = await setup();
    const id = rid('moved');
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id }), { owner: 'pi-16g' });
    expect(await jobState(queue, job.id!, ['completed'])).toBe('completed');
    expect((await queue.getJob(job.id!))!.returnvalue).toEqual({ superseded: true });
    expect((await streamDocs(env.redis, n.responses)).filter((d) => d['request_id'] === id)).toHaveLength(0);
    expect(generations(env.ollama).filter((r) => r.body?.['prompt'] === id)).toHaveLength(0);
  });

  it('a job whose answer was already published returns it without running again', async () => {
    const { n, queue } = await setup();
    const id = rid('answered');
    const stored = { request_id: id, done: true, response: 'earlier', created_at: '2026-01-19T12:00:00Z' };
    await env.redis.hset(n.requestKey(id), 'final', JSON.stringify(stored));
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id }));
    await env.redis.hset(n.requestKey(id), 'final', JSON.stringify(stored));
    expect(await jobState(queue, job.id!, ['completed'])).toBe('completed');
    expect((await queue.getJob(job.id!))!.returnvalue).toEqual(stored);
    expect(generations(env.ollama).filter((r) => r.body?.['prompt'] === id)).toHaveLength(0);
    expect(await env.redis.xlen(n.responses)).toBe(0);
  });

  it('the owner moving away during a streamed generation stops it and publishes nothing more', async () => {
    const { n, queue } = await setup();
    const id = rid('moved-mid');
    answerFor(id, { chunks: Array.from({ length: 20 }, (_, i) => `t${i} `), chunkDelayMs: 50 });
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id, stream: true }));
    await until(async () => (await streamDocs(env.redis, n.responses)).some((d) => d['request_id'] === id), 10_000, 'a partial');
    await env.redis.hset(n.requestKey(id), 'node', 'pi-16g');
    expect(await jobState(queue, job.id!, ['completed'])).toBe('completed');
    expect((await queue.getJob(job.id!))!.returnvalue).toEqual({ superseded: true });
    expect((await streamDocs(env.redis, n.responses)).filter((d) => d['request_id'] === id && d['done'] === true)).toHaveLength(0);
    expect((await requestTo(env.ollama, (r) => r.body?.['prompt'] === id && r.clientClosed, 3000)).finished).toBe(false);
  });

  it('a retry from Bull Board is a fresh start: new deadline, attempt counted anew, answered again', async () => {
    const { n, queue } = await setup();
    const id = rid('retry');
    const job = await enqueue(env.redis, queue, n, prompt(id, { prompt: id, timeout_ms: 5000 }), { deadline: Date.now() - 1, attempt: 2 });
    expect(await finalOn(env.redis, n.responses, id)).toMatchObject({ error: { code: 'timeout' } });
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    const failed = (await queue.getJob(job.id!))!;
    const before = Date.now();
    await failed.retry();
    const answer = await until(async () => (await streamDocs(env.redis, n.responses)).find((d) => d['request_id'] === id && d['response'] === 'Hello world'));
    expect(answer).toMatchObject({ attempt: 1, done: true });
    expect(await jobState(queue, job.id!, ['completed'])).toBe('completed');
    const done = (await queue.getJob(job.id!))!;
    expect(done.data.deadline).toBeGreaterThanOrEqual(before + 5000);
    expect(done.data.attempt).toBe(1);
    expect(JSON.parse((await env.redis.hget(n.requestKey(id), 'final'))!)).toEqual(answer);
    expect(await env.redis.hget(n.requestKey(id), 'node')).toBe('pi-8g');
  });

  it('a job whose data does not validate is answered invalid_request and dead-lettered, and the worker carries on', async () => {
    const { n, queue } = await setup();
    const id = rid('bad');
    const bad = { request: { request_id: id, model: 'm', prompt: 'p', images: ['/etc/passwd'] } } as unknown as InferenceJobData;
    const job = await queue.add('m', bad, { jobId: jobIdFor(id) });
    expect(await finalOn(env.redis, n.responses, id)).toMatchObject({ error: { code: 'invalid_request', message: expect.stringMatching(/images/) } });
    expect(await jobState(queue, job.id!, ['failed'])).toBe('failed');
    expect(await streamDocs(env.redis, n.deadletter)).toEqual([expect.objectContaining({ error_code: 'invalid_request', request_id: id })]);
    const id2 = rid('after-bad');
    await enqueue(env.redis, queue, n, prompt(id2));
    expect(await finalOn(env.redis, n.responses, id2)).toMatchObject({ response: 'Hello world' });
  });

  it('keeps finished jobs for a while (retention set on the worker)', async () => {
    const { n, queue } = await setup();
    const id = rid('keep');
    const job = await enqueue(env.redis, queue, n, prompt(id));
    await jobState(queue, job.id!, ['completed']);
    expect(await queue.getJob(job.id!)).toBeDefined();
    expect(await env.redis.zscore(`${n.nodeQueuePrefix}:pi-8g:completed`, job.id!)).not.toBeNull();
  });
});

describe('the take-jobs switch', () => {
  it('a job fetched by a read already blocking when the switch went off goes back to wait, unstarted', async () => {
    const n = names(testPrefix('switch'));
    const nodeId = 'pi-switch';
    const [host, port] = env.server.addr.split(':');
    const log = createLogger({ level: 'silent' });
    const started: string[] = [];
    const intake = new JobIntake({
      nodeId,
      connection: { host: host!, port: Number(port) },
      prefix: n.nodeQueuePrefix,
      concurrency: 1,
      lockDuration: 30_000,
      checkEveryMs: 1000,
      log,
      metrics: createWorkerMetrics(nodeId),
      errors: new OutageLog(log),
      closing: () => false,
      process: async (job) => {
        started.push(job.id!);
        return { superseded: true };
      },
    });
    env.cleanups.push(() => intake.close(new AbortController().signal));
    const queue = nodeQueue(env.server.addr, n, nodeId);
    env.cleanups.push(() => queue.close());
    await intake.ready();
    intake.take(true, 'test');
    // BullMQ's loop waits for a job in a blocking read (up to its 5 s drain delay): switch off then.
    await until(async () => /blocked_clients:[1-9]/.test(await env.redis.info('clients')), 5000, 'a blocking fetch');
    intake.take(false, 'test');
    const id = rid('switch');
    const job = await enqueue(env.redis, queue, n, prompt(id));
    // The blocking read returned it and BullMQ made it active; the intake handed it back.
    await until(async () => ((await queue.getJob(job.id!))?.attemptsStarted ?? 0) >= 1, 5000, 'the job fetched');
    expect(await jobState(queue, job.id!, ['waiting', 'prioritized'])).toMatch(/waiting|prioritized/);
    expect(started).toEqual([]);
    expect(intake.active).toBe(0);
    // Switched on again: the job runs.
    intake.take(true, 'test');
    expect(await jobState(queue, job.id!, ['completed'])).toBe('completed');
    expect(started).toEqual([job.id]);
  });
});
