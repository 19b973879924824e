/**
 * For worker tests: a test Redis and Ollama stand-in (the project's simulator, instant profile,
 * scripted answers) shared by a test file, a worker configuration for them, and jobs added to a
 * node queue exactly as the bridge adds them (request record claimed, owner set, job id
 * `req_{id}`, BullMQ priority from the ORION priority).
 */
import { fileURLToPath } from 'node:url';
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { Flags } from '../../src/config/options.js';
import { loadWorkerConfig, type WorkerConfig } from '../../src/config/worker.js';
import type { InferenceRequest, Routing } from '../../src/contracts/types.js';
import { bullPriority, claimRequests, defineBusCommands, replyStreamOf, setOwners, DEFAULT_TIMEOUT_MS, type InferenceJobData } from '../../src/lib/bus.js';
import { jobIdFor, type Names } from '../../src/lib/names.js';
import { startSimulator, type RecordedRequest, type ScriptRule, type SimulatorHandle } from '../../src/simulator/index.js';
import { startRedis, type RedisServer } from './redis.js';

/**
 * The stand-in's plain answer to every generation no other rule takes: "Hello" " world", with
 * fixed figures in the done object (1.5 s in all, a 250 ms load, 12 prompt tokens in 100 ms,
 * 1 s of generation).
 */
export const PLAIN_ANSWER: ScriptRule = {
  chunks: ['Hello', ' world'],
  report: { totalMs: 1500, loadMs: 250, promptEvalCount: 12, promptEvalMs: 100, evalMs: 1000 },
};

/**
 * An Ollama stand-in for worker tests: the simulator with no waits, gemma3:1b and llama3.2:3b
 * installed (gemma3:1b loaded), version 0.6.4, every request recorded, and each generation
 * answered with PLAIN_ANSWER until a test scripts otherwise (`answerWith`).
 */
export function startStandIn(): Promise<SimulatorHandle> {
  return startSimulator({
    id: 'stand-in',
    profile: 'instant',
    installed: ['gemma3:1b', 'llama3.2:3b'],
    loaded: ['gemma3:1b'],
    version: '0.6.4',
    recordRequests: true,
    script: [PLAIN_ANSWER],
  });
}

/** Answer generations with the first of these rules that matches, else with PLAIN_ANSWER. */
export function answerWith(sim: SimulatorHandle, ...rules: ScriptRule[]): void {
  sim.node.setScript([...rules, PLAIN_ANSWER]);
}

/** The generate and chat requests the stand-in received, oldest first. */
export function generations(sim: SimulatorHandle): RecordedRequest[] {
  return sim.node.requests().filter((r) => r.path === '/api/generate' || r.path === '/api/chat');
}

/** Resolves with the first recorded request that matches, once there is one. */
export function requestTo(sim: SimulatorHandle, pred: (r: RecordedRequest) => boolean, timeoutMs = 5000): Promise<RecordedRequest> {
  return until(async () => sim.node.requests().find(pred), timeoutMs, 'a matching request to the stand-in');
}

/**
 * What the tests of one file share: a throwaway Redis, a client on it and an Ollama stand-in.
 * Set once the file's `beforeAll` has run.
 */
export class WorkerEnv {
  server!: RedisServer;
  redis!: Redis;
  ollama!: SimulatorHandle;
  /** Run after each test, last added first; failures are ignored. */
  readonly cleanups: (() => Promise<unknown>)[] = [];
}

/**
 * A WorkerEnv for the calling test file, through its hooks: started before the tests, stopped
 * after them; after each test the cleanups run and the stand-in's answers are reset to the
 * plain one. Call it at the top level of the file.
 */
export function useWorkerEnv(): WorkerEnv {
  const env = new WorkerEnv();
  beforeAll(async () => {
    env.server = await startRedis();
    env.redis = new Redis(env.server.port, '127.0.0.1');
    env.ollama = await startStandIn();
  });
  afterEach(async () => {
    while (env.cleanups.length) await env.cleanups.pop()!().catch(() => undefined);
    answerWith(env.ollama);
  });
  afterAll(async () => {
    env.redis.disconnect();
    await env.ollama.close();
    await env.server.stop();
  });
  return env;
}

export const fixtureNode = (name: string): string => fileURLToPath(new URL(`../fixtures/nodes/${name}`, import.meta.url));

export function workerConfig(opts: { redisAddr: string; ollamaUrl: string; prefix: string; nodeId?: string; flags?: Flags }): WorkerConfig {
  return loadWorkerConfig({
    flags: {
      'node-id': opts.nodeId ?? 'pi-8g',
      'redis-addr': opts.redisAddr,
      'ollama-host': opts.ollamaUrl,
      'stream-prefix': opts.prefix,
      'http-addr': '127.0.0.1',
      'http-port': '0',
      'proc-root': fixtureNode('pi-8g'),
      'sys-root': fixtureNode('pi-8g'),
      'heartbeat-interval': '200ms',
      'log-level': 'silent',
      ...opts.flags,
    },
    env: {},
  });
}

export interface EnqueueOptions {
  routing?: Routing;
  /** Times already started elsewhere. */
  attempt?: number;
  maxAttempts?: number;
  deadline?: number;
  seenAt?: number;
  entryId?: string;
  /** Owner recorded for the request (default: the node the job goes to). */
  owner?: string;
}

/** Add a job the way the bridge does; returns the BullMQ job. */
export async function enqueue(
  redis: Redis,
  queue: Queue<InferenceJobData>,
  n: Names,
  request: InferenceRequest,
  o: EnqueueOptions = {},
): Promise<Job<InferenceJobData>> {
  defineBusCommands(redis);
  const now = Date.now();
  const entryId = o.entryId ?? `${now}-0`;
  const deadline = o.deadline ?? now + (request.timeout_ms ?? DEFAULT_TIMEOUT_MS);
  await claimRequests(redis, n, [{ requestId: request.request_id, entryId, replyTo: replyStreamOf(n, request), deadline, timeoutMs: DEFAULT_TIMEOUT_MS }]);
  await setOwners(redis, n, [{ requestId: request.request_id, nodeId: o.owner ?? queue.name }]);
  const data: InferenceJobData = {
    request,
    entry_id: entryId,
    seen_at: o.seenAt ?? now,
    deadline,
    attempt: o.attempt ?? 0,
    max_attempts: o.maxAttempts ?? 3,
    routing: o.routing ?? 'sticky',
    tried: [],
  };
  return queue.add(request.model, data, { jobId: jobIdFor(request.request_id), priority: bullPriority(request.priority) });
}

export function nodeQueue(redisAddr: string, n: Names, nodeId: string): Queue<InferenceJobData> {
  const [host, port] = redisAddr.split(':');
  return new Queue<InferenceJobData>(nodeId, { connection: { host: host!, port: Number(port) }, prefix: n.nodeQueuePrefix });
}

/** The JSON documents of a stream, oldest first. */
export async function streamDocs(redis: Redis, key: string): Promise<Record<string, unknown>[]> {
  const entries = await redis.xrange(key, '-', '+');
  return entries.map(([, f]) => JSON.parse(f[1]!) as Record<string, unknown>);
}

export async function until<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Wait for the final answer of a request on a reply stream. */
export function finalOn(redis: Redis, key: string, requestId: string, timeoutMs = 5000): Promise<Record<string, unknown>> {
  return until(
    async () => (await streamDocs(redis, key)).find((d) => d['request_id'] === requestId && d['done'] === true),
    timeoutMs,
    `final answer of ${requestId} on ${key}`,
  );
}

/** Wait until a job is in one of the given states. */
export function jobState(queue: Queue<InferenceJobData>, jobId: string, states: string[], timeoutMs = 5000): Promise<string> {
  return until(
    async () => {
      const s = await queue.getJobState(jobId);
      return states.includes(s) ? s : undefined;
    },
    timeoutMs,
    `job ${jobId} in ${states.join('/')}`,
  );
}
