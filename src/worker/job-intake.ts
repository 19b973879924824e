/**
 * The node's job queue as the worker takes from it (`{p}:requests:{nodeID}`): the BullMQ Worker
 * running `concurrency` jobs at once, the switch that starts and stops taking jobs, the count
 * of jobs running, and a watchdog that starts the Worker's loop again when Redis ended it.
 * `close()` stops taking jobs and waits, without a time limit, for the running ones.
 */
import { WaitingError, Worker, type ConnectionOptions, type Job, type WorkerOptions } from 'bullmq';
import { HeldConnection, JOB_RETENTION, closeBull, settled } from '../lib/bull.js';
import type { InferenceJobData } from '../lib/bus.js';
import type { Logger } from '../lib/logger.js';
import { Periodic } from '../lib/periodic.js';
import type { WorkerMetrics } from './metrics.js';
import type { OutageLog } from './outage-log.js';
import { CANCEL_LOCK_LOST, type JobResult } from './processor.js';

/** Stalls BullMQ allows before failing a job on its own: never, in practice (see the Worker). */
const MAX_STALLED_COUNT = 1_000_000;

export interface JobIntakeOptions {
  nodeId: string;
  connection: ConnectionOptions;
  /** The node queues' BullMQ prefix. */
  prefix: string;
  concurrency: number;
  lockDuration: number;
  /** How often the watchdog looks at the Worker's loop. */
  checkEveryMs: number;
  log: Logger;
  metrics: WorkerMetrics;
  errors: OutageLog;
  /** Whether the worker is shutting down: from then on no switch starts taking jobs, no loop is revived. */
  closing: () => boolean;
  /** Runs one job; `signal` aborts when the job must stop (lock lost, forced shutdown). */
  process: (job: Job<InferenceJobData>, signal?: AbortSignal) => Promise<JobResult>;
}

export class JobIntake {
  private readonly worker: Worker<InferenceJobData, JobResult>;
  private readonly watchdog: Periodic;
  private running = 0;
  private taking = false;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly o: JobIntakeOptions) {
    this.worker = new Worker<InferenceJobData, JobResult>(o.nodeId, (job, token, signal) => this.run(job, token, signal), this.workerOptions(), HeldConnection);
    this.worker.on('error', o.errors.listener('job-worker'));
    // A lost lock means the job may be running elsewhere by now: stop this copy's generation.
    this.worker.on('lockRenewalFailed', (ids: string[]) => {
      for (const id of ids) this.worker.cancelJob(id, CANCEL_LOCK_LOST);
    });
    this.watchdog = new Periodic(o.checkEveryMs, async () => this.revive(), { unref: true });
    this.watchdog.start();
  }

  private workerOptions(): WorkerOptions {
    const { connection, prefix, concurrency, lockDuration } = this.o;
    return {
      connection,
      prefix,
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
    };
  }

  private async run(job: Job<InferenceJobData>, token: string | undefined, signal?: AbortSignal): Promise<JobResult> {
    // A fetch that was already blocking when the switch went off still hands BullMQ's loop the
    // job that arrives: it goes back to wait, unstarted, for when the node takes jobs again.
    if (!this.taking && !this.stopping() && token !== undefined) {
      await job.moveToWait(token);
      this.o.log.info({ job_id: job.id }, 'not taking jobs: job handed back to wait');
      throw new WaitingError();
    }
    this.setRunning(this.running + 1);
    try {
      return await this.o.process(job, signal);
    } finally {
      this.setRunning(this.running - 1);
    }
  }

  private setRunning(count: number): void {
    this.running = count;
    this.o.metrics.active.set(count);
    if (count === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Jobs running now. */
  get active(): number {
    return this.running;
  }

  /** The key of a job's hash in the node queue. */
  jobKey(jobId: string): string {
    return this.worker.toKey(jobId);
  }

  /** Start or stop taking jobs (running ones go on either way); `reason` is logged on a change. */
  take(on: boolean, reason: string): void {
    if (this.stopping() || on === this.taking) return;
    this.taking = on;
    const onError = this.o.errors.listener('job-worker');
    if (on) {
      this.o.log.info({ reason }, 'taking jobs');
      // run() is called here, not through resume(), which would leave its promise unhandled.
      if (this.worker.isPaused()) this.worker.resume();
      else if (!this.worker.isRunning()) this.worker.run().catch(onError);
    } else {
      this.o.log.warn({ reason }, 'not taking jobs');
      void this.worker.pause(true).catch(onError);
    }
  }

  /**
   * A write that Redis refuses inside BullMQ (out of memory, a replica after a failover) ends a
   * Worker's loop for good: BullMQ retries only connection errors. Start a loop that ended so
   * again while the node should be taking jobs.
   */
  private revive(): void {
    if (this.stopping() || !this.taking || this.worker.isRunning() || this.worker.isPaused()) return;
    this.o.log.warn({ source: 'job-worker' }, 'queue loop stopped (Redis refused a write inside BullMQ): starting it again');
    this.worker.run().catch(this.o.errors.listener('job-worker'));
  }

  private stopping(): boolean {
    return this.closed || this.o.closing();
  }

  /** Abort every running job's generation, with `reason` as its signal's reason. */
  cancelAll(reason: string): void {
    this.worker.cancelAllJobs(reason);
  }

  /** Resolves once the Worker's connections have finished connecting (or failed to). */
  ready(): Promise<void> {
    return settled([this.worker]);
  }

  private untilIdle(): Promise<void> {
    return this.running === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Take no more jobs, wait for the running ones to finish (no time limit), then for the Worker
   * to close while Redis is there (see `closeBull`).
   */
  async close(redisGone: AbortSignal): Promise<void> {
    this.closed = true;
    await this.watchdog.stop();
    const closed = this.worker.close();
    await Promise.race([closed, this.untilIdle()]);
    await closeBull('job worker', closed, redisGone, this.o.log);
  }
}
