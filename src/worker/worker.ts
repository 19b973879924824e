/**
 * `orion-inference-worker`: runs its node's BullMQ queue on the local Ollama and publishes the
 * node's health from a job scheduler of its own.
 *
 *   {p}:requests:{nodeID}   the job queue, `concurrency` jobs at once (RAM tier or --concurrency)
 *   {p}:heartbeat:{nodeID}  a job scheduler every --heartbeat-interval, run by a second Worker
 *                           with concurrency 1, so a long generation never delays a beat
 *
 * While Ollama does not answer, the node reports itself unavailable and takes no jobs; the next
 * beat that reaches Ollama takes jobs again.
 *
 * Made of parts that each own their timers and close themselves: the HTTP server (http.ts), the
 * health publisher (health-publisher.ts), the job intake with its BullMQ Worker
 * (job-intake.ts), the heartbeat (heartbeat.ts) and the watch on Redis's clock and policy
 * (lib/redis-watch.ts). This file starts them in order and closes them in order.
 */
import type { ConnectionOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { WorkerConfig } from '../config/worker.js';
import type { NodeHealth } from '../contracts/types.js';
import { defineBusCommands } from '../lib/bus.js';
import type { HttpServerHandle } from '../lib/http.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { names, type Names } from '../lib/names.js';
import { connectRedis, describeRedis, redisOptionsFor } from '../lib/redis.js';
import { RedisWatch } from '../lib/redis-watch.js';
import { waitUpTo } from '../lib/time.js';
import { VERSION } from '../lib/version.js';
import { readMemInfo } from './health.js';
import { HealthPublisher } from './health-publisher.js';
import { Heartbeat } from './heartbeat.js';
import { startWorkerHttp } from './http.js';
import { JobIntake } from './job-intake.js';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.js';
import { OutageLog } from './outage-log.js';
import { CANCEL_SHUTDOWN, processJob } from './processor.js';
import { chooseConcurrency, formatGiB } from './tiers.js';

/** How long close() waits for a health write or a Redis quit before moving on. */
const CLOSE_STEP_TIMEOUT_MS = 2000;

export interface WorkerDeps {
  log?: Logger;
}

export interface CloseOptions {
  /** Abort running generations instead of waiting for them; they are handed back to the bridge. */
  force?: boolean;
}

export interface WorkerHandle {
  readonly nodeId: string;
  readonly httpPort: number;
  readonly concurrency: number;
  readonly metrics: WorkerMetrics;
  /** Jobs running now. */
  active(): number;
  /** Collect and write the health document now; resolves with what was written. */
  publishHealth(): Promise<NodeHealth | undefined>;
  /** Stop: report unavailable, stop taking jobs, let running ones finish, disconnect. Safe twice. */
  close(opts?: CloseOptions): Promise<void>;
}

/** What a running worker is made of; each part owns its timers and closes itself. */
interface Parts {
  redis: Redis;
  redisWatch: RedisWatch;
  http: HttpServerHandle;
  health: HealthPublisher;
  intake: JobIntake;
  heartbeat: Heartbeat;
}

/** What every part is given. */
interface Context {
  config: WorkerConfig;
  log: Logger;
  n: Names;
  redis: Redis;
  connection: ConnectionOptions;
  concurrency: number;
  metrics: WorkerMetrics;
  errors: OutageLog;
  /** Set once close() has begun. */
  state: { closing: boolean };
}

export async function createWorker(config: WorkerConfig, deps: WorkerDeps = {}): Promise<WorkerHandle> {
  const nodeId = config.nodeId;
  const log = (deps.log ?? createLogger({ level: config.logLevel })).child({ component: 'worker', node: nodeId });
  // Refuse a node too small for LLM work before touching anything (ConfigError says why).
  const mem = await readMemInfo(config.procRoot);
  const choice = chooseConcurrency(mem.totalBytes, config.concurrency);
  const redisOpts = redisOptionsFor(config);
  const redis = connectRedis(redisOpts, log, `orion-worker:${nodeId}`);
  defineBusCommands(redis);
  const cx: Context = {
    config,
    log,
    n: names(config.streamPrefix),
    redis,
    connection: { ...redisOpts, connectionName: `orion-worker-bull:${nodeId}` },
    concurrency: choice.concurrency,
    metrics: createWorkerMetrics(nodeId),
    errors: new OutageLog(log),
    state: { closing: false },
  };
  const parts = await startParts(cx);
  log.info(
    {
      version: VERSION,
      redis: describeRedis(config),
      ollama: config.ollamaHost,
      prefix: cx.n.prefix,
      concurrency: cx.concurrency,
      concurrency_from: choice.source,
      ram_total: formatGiB(mem.totalBytes),
      http_port: parts.http.port,
      heartbeat_ms: config.heartbeatInterval,
      lock_ms: config.lockDuration,
    },
    'worker started',
  );
  return handleOf(cx, parts);
}

/**
 * Start the parts in order: HTTP (a port in use fails before anything connects), health and
 * job intake, Redis's clock and policy, a first health document (which starts taking jobs when
 * Ollama answers and the policy allows), then the heartbeat. Resolves once every BullMQ
 * connection has settled: a close() from then on never meets one still connecting.
 */
async function startParts(cx: Context): Promise<Parts> {
  const { config, log, redis, state } = cx;
  const redisWatch = new RedisWatch(redis, log, config.heartbeatInterval, () => void health.publish());
  const http = await startWorkerHttp({
    host: config.httpAddr,
    port: config.httpPort,
    log,
    registry: cx.metrics.registry,
    status: () => ({
      nodeId: config.nodeId,
      ollamaHost: config.ollamaHost,
      concurrency: cx.concurrency,
      active: intake.active,
      available: health.available(),
      redis: redisWatch.view(),
    }),
  }).catch((err: unknown) => {
    redis.disconnect();
    throw err;
  });
  // Built in the same turn as the server started: no request reaches `status` before them.
  const health = new HealthPublisher({
    ...cx,
    redisWatch,
    active: () => intake.active,
    closing: () => state.closing,
    onVerdict: (take, reason) => intake.take(take, reason),
  });
  const intake = jobIntake(cx, health, redisWatch);
  await redisWatch.start();
  await health.publish();
  const heartbeat = await Heartbeat.start({
    ...cx,
    nodeId: config.nodeId,
    prefix: cx.n.heartbeatQueuePrefix,
    everyMs: config.heartbeatInterval,
    beat: () => health.publish(),
    lastBeatAt: () => health.lastPublishedAt,
    beating: () => health.publishing,
  });
  await Promise.all([health.ready(), intake.ready()]);
  return { redis, redisWatch, http, health, intake, heartbeat };
}

/** The job intake, running each job through the processor. */
function jobIntake(cx: Context, health: HealthPublisher, redisWatch: RedisWatch): JobIntake {
  const { config, n, redis, log, metrics } = cx;
  const intake: JobIntake = new JobIntake({
    ...cx,
    nodeId: config.nodeId,
    prefix: n.nodeQueuePrefix,
    lockDuration: config.lockDuration,
    checkEveryMs: config.heartbeatInterval,
    closing: () => cx.state.closing,
    process: (job, signal) =>
      processJob(
        {
          redis,
          n,
          nodeId: config.nodeId,
          ollamaHost: config.ollamaHost,
          ollamaTimeoutMs: config.ollamaTimeout,
          jobKey: (jobId) => intake.jobKey(jobId),
          log,
          metrics,
          onOllamaUnreachable: (reason) => health.ollamaUnreachable(reason),
          now: () => redisWatch.clock.now(),
        },
        job,
        signal,
      ),
  });
  return intake;
}

function handleOf(cx: Context, parts: Parts): WorkerHandle {
  let closed: Promise<void> | undefined;
  return {
    nodeId: cx.config.nodeId,
    httpPort: parts.http.port,
    concurrency: cx.concurrency,
    metrics: cx.metrics,
    active: () => parts.intake.active,
    publishHealth: () => parts.health.publish(),
    close(opts: CloseOptions = {}) {
      if (opts.force && closed) parts.intake.cancelAll(CANCEL_SHUTDOWN);
      closed ??= shutdown(cx, parts, opts);
      return closed;
    },
  };
}

/** A signal that aborts once `redis` is not connected (at once when it is not now). */
function redisGone(redis: Redis): AbortSignal {
  const gone = new AbortController();
  const abort = (): void => gone.abort();
  if (redis.status !== 'ready') abort();
  else for (const event of ['close', 'end']) redis.once(event, abort);
  return gone.signal;
}

/**
 * Close the parts in order: report unavailable and stop beating, answer 503 on HTTP, stop
 * taking jobs and wait for the running ones, report the node idle, then disconnect. With Redis
 * gone, nothing that needs it is waited for: BullMQ's objects are left to finish on their own.
 */
async function shutdown(cx: Context, p: Parts, opts: CloseOptions): Promise<void> {
  const { log } = cx;
  cx.state.closing = true;
  p.redisWatch.stop();
  log.info({ active: p.intake.active, force: !!opts.force }, 'shutting down: finishing running jobs');
  if (opts.force) p.intake.cancelAll(CANCEL_SHUTDOWN);
  const gone = redisGone(p.redis);
  const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
    log.debug({ step: what }, 'shutdown step');
    await fn().catch((err: unknown) => log.warn({ err, step: what }, 'shutdown step failed'));
  };
  // Each write waits for Redis at most CLOSE_STEP_TIMEOUT_MS, and is not even tried once it is gone.
  const onRedis = (fn: () => Promise<unknown>) => async (): Promise<unknown> => (gone.aborted ? undefined : waitUpTo(fn(), CLOSE_STEP_TIMEOUT_MS, gone));
  const finalHealth = onRedis(() => p.health.publish());
  await Promise.all([step('heartbeat', () => p.heartbeat.close(gone)), step('health', finalHealth)]);
  p.http.markClosing();
  await step('job intake', () => p.intake.close(gone));
  await step('health', finalHealth);
  await step('node queue', () => p.health.close(gone));
  await step('http', () => p.http.close());
  await step('redis', onRedis(() => p.redis.quit()));
  p.redis.disconnect();
  log.info({}, 'worker stopped');
}
