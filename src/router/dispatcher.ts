/**
 * Placing jobs on node queues. Every placement records the owner first (`setOwners`), then adds
 * the job under its fixed id (`req_<request id>`; adding an id a queue already holds is a
 * no-op), and a move removes the old copy last. So a crash at any step leaves either nothing
 * placed (the stream entry is not acked and is read again) or a copy on a node that no longer
 * owns the request, which its worker drops and whose answer the owner guard would refuse.
 */
import { Job, Queue, type JobsOptions } from 'bullmq';
import type { ChainableCommander, Redis } from 'ioredis';
import type { InferenceRequest } from '../contracts/types.js';
import { HeldConnection, JOB_RETENTION } from '../lib/bull.js';
import { BatchAdds } from '../lib/bull-batch.js';
import { withTimeout } from '../lib/time.js';
import { bullPriority, setOwners, type InferenceJobData } from '../lib/bus.js';
import type { Logger } from '../lib/logger.js';
import { isValidNodeId, jobIdFor, type Names } from '../lib/names.js';
import type { DecisionFeed } from './decisions.js';
import type { QueueDepth } from './metrics.js';

export const JOB_NAME = 'inference';

export interface Placement {
  nodeId: string;
  data: InferenceJobData;
}

export interface DispatcherOptions {
  /** Command connection, shared by every node queue. */
  redis: Redis;
  n: Names;
  log: Logger;
  /** Bound on one Redis write (adds wait while Redis is down). @defaultValue 5000 */
  addTimeoutMs?: number;
  /** How long job counts are cached for /metrics and /stats. @defaultValue 2000 */
  depthCacheMs?: number;
  /** Where placements and moves are told as they happen (the live page), when anyone listens. */
  decisions?: DecisionFeed;
  /**
   * Add a batch's jobs with one call of BullMQ's add script run per job, whatever their node
   * queues (bull-batch.ts), rather than one command per job.
   * @defaultValue true (job by job when the installed BullMQ's scripts are not as expected)
   */
  batchAdds?: boolean;
}

/** A hash field set in the same pipeline as a batch's placements. */
export interface HashMark {
  key: string;
  field: string;
  value: string;
}

/** A placement and its node's queue. */
interface QueuedPlacement {
  it: Placement;
  q: Queue<InferenceJobData>;
}

/** Adds queued on a pipeline: the reply at `at` answers `jobs` (one wrapped call, or one job). */
interface SentAdd {
  at: number;
  jobs: QueuedPlacement[];
  batch: boolean;
}

/** Job ids that BullMQ's own checks would pass as they are (see SPEC section 3's request ids). */
const PLAIN_JOB_ID = /^req_[A-Za-z0-9._-]+$/;

/** What BullMQ's `Job.addJob` writes through (a client or one of its pipelines). */
type BullClient = Parameters<Job['addJob']>[0];

/** A placement that can never be added (its job cannot be serialised or Redis refuses it). */
export interface Refused {
  placement: Placement;
  reason: string;
}

/** What became of a set of placements that did not all go in. */
export interface PlaceResult {
  /** Adds that failed for a passing reason (Redis slow or away): try again. */
  retry: Placement[];
  /** Adds that failed because of the job itself: answer the request, do not try again. */
  refused: Refused[];
}

/**
 * Whether an add failed because of the job itself rather than Redis being away: a job BullMQ
 * cannot serialise (RangeError, TypeError from JSON.stringify) or a Redis error reply to the
 * add of that one job. Timeouts and connection errors are not.
 */
export function isJobFault(err: unknown): boolean {
  if (err instanceof RangeError || err instanceof TypeError || err instanceof SyntaxError) return true;
  return err instanceof Error && err.name === 'ReplyError' && !/^(OOM|LOADING|READONLY|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|NOSCRIPT|NOREPLICAS)\b/.test(err.message);
}

export function jobOptions(request: InferenceRequest): JobsOptions {
  return jobOptionsFor(jobIdFor(request.request_id), bullPriority(request.priority));
}

/** The options of a job of this id and BullMQ priority. */
function jobOptionsFor(jobId: string, priority: number): JobsOptions {
  return { jobId, priority, ...JOB_RETENTION };
}

export class Dispatcher {
  private readonly queues = new Map<string, Queue<InferenceJobData>>();
  private readonly newQueueListeners: ((nodeId: string, q: Queue<InferenceJobData>) => void)[] = [];
  private depthCache: { at: number; value: Promise<Map<string, QueueDepth>> } | undefined;
  private queueErrorLogged = false;
  /** Queues whose client is ready (each is awaited once), and that client: every queue shares it. */
  private readonly ready = new WeakSet<Queue<InferenceJobData>>();
  private client: Awaited<Queue['client']> | undefined;
  /** The wrapped add scripts, defined on the shared connection; undefined: job by job. */
  private readonly batch: BatchAdds | undefined;

  constructor(private readonly o: DispatcherOptions) {
    this.batch = o.batchAdds === false ? undefined : BatchAdds.load();
    if (this.batch) this.batch.define(o.redis);
    else if (o.batchAdds !== false) o.log.warn({}, "the installed BullMQ's add scripts are not as expected: jobs are added one by one");
  }

  get timeoutMs(): number {
    return this.o.addTimeoutMs ?? 5000;
  }

  /** The node's job queue (`{p}:requests:{nodeId}`), created once. */
  queue(nodeId: string): Queue<InferenceJobData> {
    let q = this.queues.get(nodeId);
    if (!q) {
      if (!isValidNodeId(nodeId)) throw new Error(`'${nodeId.slice(0, 80)}' is not a node id (1-64 of [A-Za-z0-9._-])`);
      q = new Queue<InferenceJobData>(nodeId, { prefix: this.o.n.nodeQueuePrefix, connection: this.o.redis }, HeldConnection);
      q.on('error', (err) => {
        if (!this.queueErrorLogged) this.o.log.warn({ node: nodeId, err: err.message }, 'node queue error');
        this.queueErrorLogged = true;
      });
      this.queues.set(nodeId, q);
      for (const fn of this.newQueueListeners) fn(nodeId, q);
    }
    return q;
  }

  onNewQueue(fn: (nodeId: string, q: Queue<InferenceJobData>) => void): void {
    this.newQueueListeners.push(fn);
  }

  /**
   * Place new jobs: the owners (one script call), `marks` (hash fields to set) and every job's
   * add, whatever its node queue, in one pipeline. Redis runs one connection's commands in
   * order, so the owners are recorded before any job is added, and the whole batch costs one
   * round trip. The adds go out as one call of BullMQ's own add script run per job, whatever
   * their queues (two when some jobs have no BullMQ priority: bull-batch.ts); where that is not
   * available, job by job through BullMQ's `Job`. Throws when the owners could not be recorded
   * or Redis did not answer (the batch is tried again: adding a job id again is a no-op, and a
   * copy on a node that turns out not to own it is dropped by its worker). Returns the placements whose adds failed for a passing reason, to
   * be tried again, and those that can never be added: a job that cannot be serialised, an
   * invalid node id or a Redis error reply to that one add fails alone, and the rest of the
   * batch goes in (a call for many jobs that Redis refuses is tried again job by job, to find
   * the one it refuses).
   */
  async placeNew(items: readonly Placement[], marks: readonly HashMark[] = []): Promise<PlaceResult> {
    const result: PlaceResult = { retry: [], refused: [] };
    if (items.length === 0 && marks.length === 0) return result;
    const jobs: QueuedPlacement[] = [];
    for (const it of items) {
      try {
        jobs.push({ it, q: this.queue(it.nodeId) });
      } catch (err) {
        result.refused.push({ placement: it, reason: (err as Error).message });
      }
    }
    const pipe = await withTimeout(this.pipeline(jobs.map((j) => j.q)), this.timeoutMs, 'waiting for the node queues to be ready');
    const owners = jobs.map(({ it }) => ({ requestId: it.data.request.request_id, nodeId: it.nodeId }));
    let at = 0;
    const ownersAt = owners.length > 0 ? at++ : -1;
    if (owners.length > 0) void setOwners(pipe, this.o.n, owners);
    for (const m of marks) {
      pipe.hset(m.key, { [m.field]: m.value });
      at++;
    }
    const sent = this.batch ? this.addBatches(pipe, jobs, at, result) : this.addEach(pipe, jobs, at, result);
    const res = (await withTimeout(pipe.exec(), this.timeoutMs, `placing ${items.length} jobs`)) ?? [];
    const ownersErr = ownersAt >= 0 ? res[ownersAt]?.[0] : null;
    if (ownersErr) throw ownersErr;
    const markErr = res.slice(ownersAt + 1, ownersAt + 1 + marks.length).find(([e]) => e);
    if (markErr) throw markErr[0];
    const placed: Placement[] = [];
    const oneByOne = this.replies(sent, res, result, placed);
    if (oneByOne.length > 0) {
      const again = await withTimeout(this.pipeline(oneByOne.map((j) => j.q)), this.timeoutMs, 'waiting for the node queues to be ready');
      const each = this.addEach(again, oneByOne, 0, result);
      this.replies(each, (await withTimeout(again.exec(), this.timeoutMs, `placing ${oneByOne.length} jobs one by one`)) ?? [], result, placed);
    }
    if (result.retry.length > 0) this.o.log.warn({ count: result.retry.length, err: res.find(([e]) => e && !isJobFault(e))?.[0]?.message }, 'could not add jobs; they will be tried again');
    this.tell(placed, 'placed');
    return result;
  }

  /** Queue the adds through BullMQ's own `Job`, one command each (see `placeNew`). */
  private addEach(pipe: ChainableCommander, jobs: readonly QueuedPlacement[], at: number, result: PlaceResult): SentAdd[] {
    const sent: SentAdd[] = [];
    for (const { it, q } of jobs) {
      const opts = jobOptions(it.data.request);
      try {
        // Serialises the job and queues BullMQ's add script on the pipeline; throws when the
        // job cannot be serialised, before anything is queued.
        new Job<InferenceJobData>(q, JOB_NAME, it.data, opts, opts.jobId).addJob(pipe as unknown as BullClient).catch(() => undefined);
        sent.push({ at: at++, jobs: [{ it, q }], batch: false });
      } catch (err) {
        result.refused.push({ placement: it, reason: (err as Error).message });
      }
    }
    return sent;
  }

  /** Queue the adds as at most two wrapped calls, whatever their queues (see bull-batch.ts). */
  private addBatches(pipe: ChainableCommander, jobs: readonly QueuedPlacement[], at: number, result: PlaceResult): SentAdd[] {
    const batch: { queue: Queue; id: string; priority: number; data: string; p: QueuedPlacement }[] = [];
    const odd: QueuedPlacement[] = [];
    for (const p of jobs) {
      const request = p.it.data.request;
      const id = jobIdFor(request.request_id);
      // An id BullMQ might refuse goes through its own checks, job by job.
      if (!PLAIN_JOB_ID.test(id)) {
        odd.push(p);
        continue;
      }
      let data: string;
      try {
        data = JSON.stringify(p.it.data);
      } catch (err) {
        result.refused.push({ placement: p.it, reason: (err as Error).message });
        continue;
      }
      batch.push({ queue: p.q, id, priority: bullPriority(request.priority), data, p });
    }
    const sent: SentAdd[] = [];
    for (const call of this.batch!.add(pipe, batch, JOB_NAME, (job) => jobOptionsFor(job.id, job.priority), at)) {
      sent.push({ at: call.at, jobs: call.jobs.map((j) => j.p), batch: true });
      at = call.at + 1;
    }
    return sent.concat(this.addEach(pipe, odd, at, result));
  }

  /**
   * Sort the pipeline's replies to the adds: placed, to be tried again, refused. Returns the
   * jobs of wrapped calls that Redis refused as a whole, to be added one by one.
   */
  private replies(sent: readonly SentAdd[], res: [Error | null, unknown][], result: PlaceResult, placed: Placement[]): QueuedPlacement[] {
    const oneByOne: QueuedPlacement[] = [];
    for (const s of sent) {
      const [err, reply] = res[s.at] ?? [new Error('no reply'), undefined];
      if (err) {
        if (!isJobFault(err)) result.retry.push(...s.jobs.map((j) => j.it));
        else if (s.batch) oneByOne.push(...s.jobs);
        else result.refused.push({ placement: s.jobs[0]!.it, reason: err.message });
        continue;
      }
      const answers = s.batch ? (Array.isArray(reply) ? (reply as unknown[]) : []) : [reply];
      s.jobs.forEach(({ it }, i) => {
        const answer = answers[i];
        if (typeof answer === 'string') placed.push(it);
        else if (typeof answer === 'number' && answer < 0) result.refused.push({ placement: it, reason: `BullMQ refused the job (its add script answered ${answer})` });
        else result.retry.push(it);
      });
    }
    return oneByOne;
  }

  /**
   * A pipeline on the connection every node queue shares. With jobs to add it is made through
   * a queue's client, once each queue is ready (BullMQ defines its scripts on the connection as
   * the first queue starts): BullMQ's pipeline, whose `runCommand` its add script calls, over
   * ioredis's own, which has the bus scripts too.
   */
  private async pipeline(queues: readonly Queue<InferenceJobData>[]): Promise<ChainableCommander> {
    if (queues.length === 0) return this.o.redis.pipeline();
    for (const q of queues) {
      if (this.ready.has(q)) continue;
      this.client = await q.client;
      this.ready.add(q);
    }
    return this.client!.pipeline() as unknown as ChainableCommander;
  }

  /** Tell the decision feed about placements, when anyone listens. */
  private tell(list: readonly Placement[], kind: 'placed' | 'moved', from?: string, reason?: string): void {
    const feed = this.o.decisions;
    if (!feed?.active) return;
    const t = Date.now();
    for (const { nodeId, data } of list) {
      const r = data.request;
      feed.push({ t, kind, request_id: r.request_id, model: r.model, node: nodeId, from, routing: data.routing, priority: r.priority ?? 5, reason });
    }
  }

  /**
   * Put one job on `to` and take the copy on `from` away: owner, add, remove. Returns false
   * when the old copy is still locked by a worker (the new copy is placed; call again later).
   * `reason` says why it moves (shown on the live page).
   */
  async move(placement: Placement, from: string, old: Job<InferenceJobData> | undefined, reason?: string): Promise<boolean> {
    const { redis, n } = this.o;
    const id = placement.data.request.request_id;
    await withTimeout(redis.hset(n.requestKey(id), 'node', placement.nodeId), this.timeoutMs, 'recording the owner');
    if (placement.nodeId !== from) {
      await this.addCopy(placement);
      this.tell([placement], 'moved', from, reason);
      if (old) return this.removeCopy(from, jobIdFor(id));
      return true;
    }
    // Same node again (the only one left): the old copy must go before the id can be reused.
    if (old && !(await this.removeCopy(from, jobIdFor(id)))) return false;
    await withTimeout(this.queue(placement.nodeId).add(JOB_NAME, placement.data, jobOptions(placement.data.request)), this.timeoutMs, 'adding a job');
    return true;
  }

  /**
   * Add one job copy under its fixed id: a no-op when the queue holds that id waiting or running
   * already. A finished copy there (one that gave way when the job moved or was handed back
   * earlier, kept for a while by the retention settings) is stale, since the caller has just made
   * this node the owner: it is removed first, or BullMQ would take the add for a duplicate and
   * the job would never run.
   */
  async addCopy(placement: Placement): Promise<void> {
    const { nodeId, data } = placement;
    const q = this.queue(nodeId);
    const jobId = jobIdFor(data.request.request_id);
    const old = await withTimeout(Job.fromId(q, jobId), this.timeoutMs, 'reading a job');
    if (old && (await old.isCompleted() || await old.isFailed())) await withTimeout(q.remove(jobId), this.timeoutMs, 'removing a finished copy');
    await withTimeout(q.add(JOB_NAME, data, jobOptions(data.request)), this.timeoutMs, `adding a job to ${nodeId}`);
  }

  /** Remove a job from a node queue unless a worker holds its lock; true when it is gone. */
  async removeCopy(nodeId: string, jobId: string): Promise<boolean> {
    const r = await withTimeout(this.queue(nodeId).remove(jobId), this.timeoutMs, 'removing a job');
    if (r === 1) return true;
    return (await Job.fromId(this.queue(nodeId), jobId)) === undefined;
  }

  /** Job counts of every given node queue, cached briefly. */
  depths(nodeIds: readonly string[]): Promise<Map<string, QueueDepth>> {
    const cacheMs = this.o.depthCacheMs ?? 2000;
    const now = Date.now();
    if (this.depthCache && now - this.depthCache.at < cacheMs) return this.depthCache.value;
    const value = (async () => {
      const out = new Map<string, QueueDepth>();
      // One queue that cannot be counted leaves the others' figures in place; only when none
      // can be (Redis away) is the whole answer an error.
      let firstError: unknown;
      await Promise.all(
        nodeIds.map(async (id) => {
          const c = await withTimeout(this.queue(id).getJobCounts('wait', 'prioritized', 'delayed', 'active', 'failed', 'completed'), this.timeoutMs, 'job counts').catch((err: unknown) => {
            firstError ??= err;
            return undefined;
          });
          if (!c) return;
          out.set(id, {
            waiting: (c['wait'] ?? 0) + (c['prioritized'] ?? 0),
            delayed: c['delayed'] ?? 0,
            active: c['active'] ?? 0,
            failed: c['failed'] ?? 0,
            completed: c['completed'] ?? 0,
          });
        }),
      );
      if (out.size === 0 && firstError !== undefined) throw firstError;
      return out;
    })();
    this.depthCache = { at: now, value };
    value.catch(() => {
      if (this.depthCache?.value === value) this.depthCache = undefined;
    });
    return value;
  }

  knownQueues(): ReadonlyMap<string, Queue<InferenceJobData>> {
    return this.queues;
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
  }
}
