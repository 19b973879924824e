/**
 * Placing jobs on node queues. Every placement records the owner first (`setOwners`), then adds
 * the job under its fixed id (`req_<request id>`; adding an id a queue already holds is a
 * no-op), and a move removes the old copy last. So a crash at any step leaves either nothing
 * placed (the stream entry is not acked and is read again) or a copy on a node that no longer
 * owns the request, which its worker drops and whose answer the owner guard would refuse.
 */
import { Job, Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { InferenceRequest } from '../contracts/types.js';
import { HeldConnection, JOB_RETENTION } from '../lib/bull.js';
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
}

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
  return {
    jobId: jobIdFor(request.request_id),
    priority: bullPriority(request.priority),
    ...JOB_RETENTION,
  };
}

export class Dispatcher {
  private readonly queues = new Map<string, Queue<InferenceJobData>>();
  private readonly newQueueListeners: ((nodeId: string, q: Queue<InferenceJobData>) => void)[] = [];
  private depthCache: { at: number; value: Promise<Map<string, QueueDepth>> } | undefined;
  private queueErrorLogged = false;

  constructor(private readonly o: DispatcherOptions) {}

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
   * Place new jobs: the owners in one script call (in one pipeline with `extra`, if given),
   * then one addBulk per node queue. The adds go out right behind the owners on the same
   * connection, without waiting for their reply: Redis runs one connection's commands in order,
   * so the owners are recorded before the jobs are added, in one round trip instead of two.
   * Throws when the owners could not be recorded (the batch is tried again: adding a job id
   * again is a no-op, and a copy on a node that turns out not to own it is dropped by its
   * worker). Returns the placements whose adds failed or timed out, to be tried again, and
   * those that can never be added (see `addAll`).
   */
  async placeNew(items: readonly Placement[], extra?: (pipe: ReturnType<Redis['pipeline']>) => void): Promise<PlaceResult> {
    const result: PlaceResult = { retry: [], refused: [] };
    if (items.length === 0 && !extra) return result;
    const owners = items.map((it) => ({ requestId: it.data.request.request_id, nodeId: it.nodeId }));
    let owned: Promise<unknown>;
    if (extra) {
      const pipe = this.o.redis.pipeline();
      void setOwners(pipe, this.o.n, owners);
      extra(pipe);
      owned = pipe.exec().then((res) => {
        const bad = res?.find(([e]) => e);
        if (bad) throw bad[0];
      });
    } else {
      // No pipeline for a single command (building one costs more than the command).
      owned = setOwners(this.o.redis, this.o.n, owners);
    }
    owned.catch(() => undefined);
    const byNode = new Map<string, Placement[]>();
    for (const it of items) {
      const list = byNode.get(it.nodeId) ?? [];
      list.push(it);
      byNode.set(it.nodeId, list);
    }
    await Promise.all([...byNode].map(([nodeId, list]) => this.addAll(nodeId, list, result)));
    await withTimeout(owned, this.timeoutMs, 'recording owners');
    return result;
  }

  /**
   * One addBulk for a node's placements. When it fails because of a job (not because Redis is
   * away), each job is added alone, so that one request that cannot be queued fails alone and
   * the rest of the batch goes in.
   */
  private async addAll(nodeId: string, list: readonly Placement[], result: PlaceResult): Promise<void> {
    let q: Queue<InferenceJobData>;
    try {
      q = this.queue(nodeId);
    } catch (err) {
      for (const it of list) result.refused.push({ placement: it, reason: (err as Error).message });
      return;
    }
    try {
      const jobs = list.map((it) => ({ name: JOB_NAME, data: it.data, opts: jobOptions(it.data.request) }));
      await withTimeout(q.addBulk(jobs), this.timeoutMs, `adding ${list.length} jobs to ${nodeId}`);
      this.tell(list, 'placed');
      return;
    } catch (err) {
      if (list.length === 1 || !isJobFault(err)) {
        if (isJobFault(err)) result.refused.push({ placement: list[0]!, reason: (err as Error).message });
        else {
          this.o.log.warn({ node: nodeId, count: list.length, err: (err as Error).message }, 'could not add jobs; they will be tried again');
          result.retry.push(...list);
        }
        return;
      }
      this.o.log.warn({ node: nodeId, count: list.length, err: (err as Error).message }, 'adding a batch of jobs failed because of a job; adding them one by one');
    }
    await Promise.all(
      list.map(async (it) => {
        try {
          await withTimeout(q.add(JOB_NAME, it.data, jobOptions(it.data.request)), this.timeoutMs, `adding a job to ${nodeId}`);
          this.tell([it], 'placed');
        } catch (err) {
          if (isJobFault(err)) result.refused.push({ placement: it, reason: (err as Error).message });
          else result.retry.push(it);
        }
      }),
    );
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
