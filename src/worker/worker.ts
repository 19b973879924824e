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
 */
import { Ollama } from 'ollama';
import { Queue, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { WorkerConfig } from '../config/worker.js';
import type { NodeHealth } from '../contracts/types.js';
import { HeldConnection, settled } from '../lib/bull.js';
import { defineBusCommands, type InferenceJobData } from '../lib/bus.js';
import { startHttpServer, type HttpServerHandle } from '../lib/http.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { names } from '../lib/names.js';
import { connectRedis, describeRedis, redisOptionsFor } from '../lib/redis.js';
import { RedisWatch } from '../lib/redis-watch.js';
import { VERSION } from '../lib/version.js';
import {
  CpuMeter,
  buildHealth,
  probeOllama,
  readMemInfo,
  readSystem,
  writeHealth,
  type OllamaStatus,
} from './health.js';
import { DuplicateWatch } from './duplicates.js';
import { httpFetch } from './http-fetch.js';
import { healthHandler, metricsHandler } from './http.js';
import { createWorkerMetrics, type WorkerMetrics } from './metrics.js';
import { CANCEL_LOCK_LOST, CANCEL_SHUTDOWN, processJob, type JobResult } from './processor.js';
import { chooseConcurrency, formatGiB } from './tiers.js';

/** How long a health probe waits for Ollama before calling it unreachable. */
export const OLLAMA_PROBE_TIMEOUT_MS = 2000;
/** Stalls BullMQ allows before failing a job on its own: never, in practice (see the Worker). */
const MAX_STALLED_COUNT = 1_000_000;
/** How long close() waits for a health write or a Redis quit before moving on. */
const CLOSE_STEP_TIMEOUT_MS = 2000;

export const JOB_RETENTION = {
  removeOnComplete: { age: 3600, count: 1000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 5000 },
} as const;

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

/**
 * Wait for `p` at most `ms`, and no longer once `up()` says Redis is gone (nothing that waits on
 * it can finish then; checked now and every 50 ms). Resolves with p's value, or undefined.
 */
function whileRedisUp<T>(p: Promise<T>, ms: number, up: () => boolean): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  let poll: NodeJS.Timeout | undefined;
  const giveUp = new Promise<undefined>((resolve) => {
    if (!up()) return resolve(undefined);
    t = setTimeout(() => resolve(undefined), ms);
    poll = setInterval(() => {
      if (!up()) resolve(undefined);
    }, 50);
  });
  return Promise.race([p, giveUp]).finally(() => {
    clearTimeout(t);
    clearInterval(poll);
  });
}

/**
 * Wait for a BullMQ worker or queue to close, for as long as Redis is there to finish it; with
 * Redis gone, leave it to finish on its own should Redis come back. Its connections are never
 * dropped from here: a Worker whose client is cut while it retries a job scheduler's next
 * iteration retries again at once, forever, and starves the event loop.
 * Resolves with whether it closed.
 */
async function closeBull(closing: Promise<void>, redisUp: () => boolean): Promise<boolean> {
  const done = await whileRedisUp(
    closing.then(() => true),
    CLOSE_STEP_TIMEOUT_MS,
    redisUp,
  );
  return done === true;
}

export async function createWorker(config: WorkerConfig, deps: WorkerDeps = {}): Promise<WorkerHandle> {
  const nodeId = config.nodeId;
  const log = (deps.log ?? createLogger({ level: config.logLevel })).child({ component: 'worker', node: nodeId });
  const n = names(config.streamPrefix);

  // Refuse a node too small for LLM work before touching anything (ConfigError says why).
  const mem = await readMemInfo(config.procRoot);
  const choice = chooseConcurrency(mem.totalBytes, config.concurrency);
  const concurrency = choice.concurrency;
  const metrics = createWorkerMetrics(nodeId);

  let closing = false;
  let active = 0;
  let ollama: OllamaStatus | undefined;
  /** Installed models the last time Ollama answered. */
  let lastInstalled: string[] | undefined;

  const redisOpts = redisOptionsFor(config);
  const redis = connectRedis(redisOpts, log, `orion-worker:${nodeId}`);
  defineBusCommands(redis);
  // Redis's clock and maxmemory-policy, read at start and on every beat.
  const redisWatch = new RedisWatch(redis, log, config.heartbeatInterval, () => void publishHealth());
  const http: HttpServerHandle = await startHttpServer({
    host: config.httpAddr,
    port: config.httpPort,
    log,
    routes: {
      '/health': healthHandler(() => ({
        nodeId,
        ollamaHost: config.ollamaHost,
        concurrency,
        active,
        available: !closing && ollama?.ok === true && !redisWatch.policy.refusing(),
        redis: redisWatch.view(),
      })),
      '/metrics': metricsHandler(metrics.registry),
    },
  }).catch((err: unknown) => {
    redis.disconnect();
    throw err;
  });

  const connection: ConnectionOptions = { ...redisOpts, connectionName: `orion-worker-bull:${nodeId}` };
  const probeClient = new Ollama({
    host: config.ollamaHost,
    fetch: (input, init) => httpFetch(input, { ...init, signal: AbortSignal.timeout(OLLAMA_PROBE_TIMEOUT_MS) }),
  });

  // BullMQ reports connection trouble as 'error' events: log each source once per outage.
  const erroring = new Set<string>();
  const onBullError = (source: string) => (err: Error) => {
    if (erroring.has(source)) return;
    erroring.add(source);
    log.warn({ source, err: err.message }, 'queue error (Redis unreachable?); retrying');
    setTimeout(() => erroring.delete(source), 30_000).unref();
  };

  const nodeQueue = new Queue<InferenceJobData>(nodeId, { connection, prefix: n.nodeQueuePrefix }, HeldConnection);
  nodeQueue.on('error', onBullError('node-queue'));

  const lockDuration = config.lockDuration;
  const jobKey = (jobId: string): string => jobWorker.toKey(jobId);
  const jobWorker = new Worker<InferenceJobData, JobResult>(
    nodeId,
    async (job: Job<InferenceJobData>, _token?: string, signal?: AbortSignal) => {
      active++;
      metrics.active.set(active);
      try {
        return await processJob(
          {
            redis,
            n,
            nodeId,
            ollamaHost: config.ollamaHost,
            ollamaTimeoutMs: config.ollamaTimeout,
            jobKey,
            log,
            metrics,
            onOllamaUnreachable: ollamaUnreachable,
            now: () => redisWatch.clock.now(),
          },
          job,
          signal,
        );
      } finally {
        active--;
        metrics.active.set(active);
      }
    },
    {
      connection,
      prefix: n.nodeQueuePrefix,
      concurrency,
      lockDuration,
      // Check for stalled jobs often: a killed worker's jobs come back within about a lock.
      stalledInterval: Math.max(1000, Math.min(5000, Math.floor(lockDuration / 2))),
      // A stalled job always comes back to run: left to BullMQ (default 1), a job that stalls
      // twice (its worker killed twice while running it) is failed without an answer. The
      // processor bounds the starts with the request's max_attempts instead.
      maxStalledCount: MAX_STALLED_COUNT,
      autorun: false,
      ...JOB_RETENTION,
    },
    HeldConnection,
  );
  jobWorker.on('error', onBullError('job-worker'));
  // A lost lock means the job may be running elsewhere by now: stop this copy's generation.
  jobWorker.on('lockRenewalFailed', (ids: string[]) => {
    for (const id of ids) jobWorker.cancelJob(id, CANCEL_LOCK_LOST);
  });

  // ------------------------------------------------------------ health
  const cpu = new CpuMeter(config.procRoot);
  let healthChain: Promise<unknown> = Promise.resolve();
  let healthFailing = false;
  let lastHealthAt = 0;
  const duplicates = new DuplicateWatch();
  let healthPending = 0;
  let takingJobs = false;

  const setTakingJobs = (on: boolean, reason: string): void => {
    if (closing || on === takingJobs) return;
    takingJobs = on;
    if (on) {
      log.info({ reason }, 'taking jobs');
      // run() is called here, not through resume(), which would leave its promise unhandled.
      if (jobWorker.isPaused()) jobWorker.resume();
      else if (!jobWorker.isRunning()) jobWorker.run().catch(onBullError('job-worker'));
    } else {
      log.warn({ reason }, 'not taking jobs');
      void jobWorker.pause(true).catch(onBullError('job-worker'));
    }
  };

  async function collectAndWrite(): Promise<NodeHealth> {
    const [sys, status, counts] = await Promise.all([
      readSystem(cpu, config.procRoot, config.sysRoot),
      probeOllama(probeClient),
      nodeQueue.getJobCounts('wait', 'prioritized'),
    ]);
    if (ollama === undefined || ollama.ok !== status.ok) {
      if (status.ok) log.info({ ollama: config.ollamaHost, version: status.version }, 'ollama answers');
      else log.warn({ ollama: config.ollamaHost, reason: status.reason }, 'ollama does not answer');
    }
    ollama = status;
    if (status.ok) lastInstalled = status.installed;
    const doc = buildHealth({
      nodeId,
      ...sys,
      ollama: status,
      lastInstalled,
      concurrency,
      active,
      waiting: (counts['wait'] ?? 0) + (counts['prioritized'] ?? 0),
      ...unavailable(),
      now: redisWatch.clock.now(),
      clockOffsetMs: redisWatch.clock.offsetMs(),
      instanceId: duplicates.instanceId,
      duplicateInstances: duplicates.current(Date.now()),
    });
    duplicates.replaced(await writeHealth(redis, n, doc, config.healthTtl), Date.now(), nodeId, log);
    metrics.cpu.set(doc.cpu_percent);
    metrics.ram.set(doc.ram_percent);
    if (doc.temp_celsius === null) metrics.temp.reset();
    else metrics.temp.set(doc.temp_celsius);
    metrics.ollamaUp.set(status.ok ? 1 : 0);
    const refusing = redisWatch.policy.refusing();
    setTakingJobs(status.ok && !refusing, refusing ? evictingReason() : status.ok ? 'ollama answers' : status.reason);
    return doc;
  }

  function evictingReason(): string {
    return `redis maxmemory-policy ${redisWatch.policy.current().policy} evicts keys`;
  }

  /** Why the node reports itself unavailable whatever Ollama says, if it does. */
  function unavailable(): { unavailableReason?: string } {
    if (closing) return { unavailableReason: 'shutting down' };
    if (redisWatch.policy.refusing()) return { unavailableReason: evictingReason() };
    return {};
  }

  /** Health writes run one after another, so an older document never overwrites a newer one. */
  function publishHealth(): Promise<NodeHealth | undefined> {
    healthPending++;
    const next = healthChain.then(collectAndWrite).then(
      (doc) => {
        healthPending--;
        lastHealthAt = Date.now();
        metrics.healthPublished.inc({ result: 'ok' });
        if (healthFailing) log.info({}, 'health published again');
        healthFailing = false;
        return doc;
      },
      (err: unknown) => {
        healthPending--;
        metrics.healthPublished.inc({ result: 'error' });
        if (!healthFailing) log.warn({ err }, 'health not published; retrying on the next beat');
        healthFailing = true;
        return undefined;
      },
    );
    healthChain = next;
    return next;
  }

  function ollamaUnreachable(reason: string): void {
    ollama = { ok: false, reason };
    setTakingJobs(false, reason);
    void publishHealth();
  }

  // Read Redis's clock and policy, publish once now (and start taking jobs if Ollama answers
  // and the policy allows), then on every beat.
  await redisWatch.start();
  await publishHealth();
  const heartbeatQueue = new Queue(nodeId, { connection, prefix: n.heartbeatQueuePrefix }, HeldConnection);
  heartbeatQueue.on('error', onBullError('heartbeat-queue'));
  const schedule = (): Promise<unknown> =>
    heartbeatQueue.upsertJobScheduler(
      'heartbeat',
      { every: config.heartbeatInterval },
      { name: 'heartbeat', opts: { removeOnComplete: true, removeOnFail: 10 } },
    );
  await schedule();
  // Watchdog: the scheduler lives in Redis, and a Redis restarted without persistence forgets
  // it. When no beat has landed for three intervals (and none is stuck waiting on Redis),
  // schedule it again and publish directly, so the node does not look dead while it is not.
  const watchdog = setInterval(() => {
    reviveLoops();
    if (closing || healthPending > 0 || Date.now() - lastHealthAt < 3 * config.heartbeatInterval) return;
    log.warn({}, 'no heartbeat for three intervals: scheduling it again');
    void schedule().catch(onBullError('heartbeat-queue'));
    void publishHealth();
  }, config.heartbeatInterval);
  watchdog.unref();
  const heartbeatWorker = new Worker(
    nodeId,
    async () => {
      await publishHealth();
    },
    { connection, prefix: n.heartbeatQueuePrefix, concurrency: 1 },
    HeldConnection,
  );
  heartbeatWorker.on('error', onBullError('heartbeat-worker'));
  // Started means connected: a close() from here on never meets a connection still connecting.
  await settled([nodeQueue, jobWorker, heartbeatQueue, heartbeatWorker]);

  /**
   * A write that Redis refuses inside BullMQ (out of memory, a replica after a failover) ends a
   * BullMQ worker's loop for good: BullMQ retries only connection errors. The watchdog starts a
   * loop that ended so again, once per beat, while the node should be taking jobs.
   */
  function reviveLoops(): void {
    if (closing) return;
    const revive = (w: Worker, source: string): void => {
      log.warn({ source }, 'queue loop stopped (Redis refused a write inside BullMQ): starting it again');
      w.run().catch(onBullError(source));
    };
    if (takingJobs && !jobWorker.isRunning() && !jobWorker.isPaused()) revive(jobWorker, 'job-worker');
    if (!heartbeatWorker.isRunning() && !heartbeatWorker.isPaused()) revive(heartbeatWorker, 'heartbeat-worker');
  }

  log.info(
    {
      version: VERSION,
      redis: describeRedis(config),
      ollama: config.ollamaHost,
      prefix: n.prefix,
      concurrency,
      concurrency_from: choice.source,
      ram_total: formatGiB(mem.totalBytes),
      http_port: http.port,
      heartbeat_ms: config.heartbeatInterval,
      lock_ms: lockDuration,
    },
    'worker started',
  );

  // ------------------------------------------------------------ close
  const untilIdle = async (): Promise<void> => {
    while (active > 0) await new Promise((r) => setTimeout(r, 50));
  };
  let closed: Promise<void> | undefined;
  async function doClose(opts: CloseOptions): Promise<void> {
    closing = true;
    clearInterval(watchdog);
    redisWatch.stop();
    log.info({ active, force: !!opts.force }, 'shutting down: finishing running jobs');
    const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      log.debug({ step: what }, 'shutdown step');
      try {
        await fn();
      } catch (err) {
        log.warn({ err, step: what }, 'shutdown step failed');
      }
    };
    if (opts.force) jobWorker.cancelAllJobs(CANCEL_SHUTDOWN);
    // With Redis gone, nothing below can reach it: skip the writes and leave BullMQ to itself.
    const redisUp = (): boolean => redis.status === 'ready';
    // Each write waits for Redis at most CLOSE_STEP_TIMEOUT_MS, and is not even tried once it is gone.
    const onRedis =
      (fn: () => Promise<unknown>) =>
      async (): Promise<unknown> =>
        redisUp() ? whileRedisUp(fn(), CLOSE_STEP_TIMEOUT_MS, redisUp) : undefined;
    const finalHealth = onRedis(() => publishHealth());
    const bull = (what: string, closing: Promise<void>) => async (): Promise<void> => {
      if (!(await closeBull(closing, redisUp))) log.warn({ step: what }, 'left to close once Redis is back');
    };
    await Promise.all([step('heartbeat worker', bull('heartbeat worker', heartbeatWorker.close())), step('health', finalHealth)]);
    http.markClosing();
    // Stop taking jobs and wait, without a time limit, for the running ones to finish.
    const jobWorkerClosed = jobWorker.close();
    await step('drain', () => Promise.race([jobWorkerClosed, untilIdle()]));
    await step('job worker', bull('job worker', jobWorkerClosed));
    await step('health', finalHealth);
    await step('queues', () => Promise.all([nodeQueue, heartbeatQueue].map((q) => bull('queue', q.close())())));
    await step('http', () => http.close());
    await step('redis', onRedis(() => redis.quit()));
    redis.disconnect();
    log.info({}, 'worker stopped');
  }

  return {
    nodeId,
    httpPort: http.port,
    concurrency,
    metrics,
    active: () => active,
    publishHealth,
    close(opts: CloseOptions = {}) {
      if (opts.force && closed && closing) jobWorker.cancelAllJobs(CANCEL_SHUTDOWN);
      closed ??= doClose(opts);
      return closed;
    },
  };
}
