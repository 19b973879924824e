/**
 * Deadlines (SPEC.md section 7): a request past its deadline is answered within about a second,
 * wherever it waits. Every tick:
 *   1. requests held here are answered `no_healthy_node` (HeldRequests.expire);
 *   2. ZRANGEBYSCORE `{p}:deadlines` -inf now LIMIT 0 500: each record without a final answer
 *      gets one (`timeout`; `no_healthy_node` if it waited for a node and was never placed),
 *      and a dead-letter entry; a job still waiting in its owner's queue is removed (an active
 *      one is stopped by its worker's own timer).
 * Several bridges may sweep at once: the final script's HSETNX answers once, and only the bridge
 * whose answer was published dead-letters it.
 */
import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { InferenceResponse } from '../contracts/types.js';
import { DEFAULT_TIMEOUT_MS, deadlinesKey, type InferenceJobData } from '../lib/bus.js';
import { failRequest } from '../lib/failures.js';
import type { ErrorCode } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { isValidNodeId, jobIdFor, type Names } from '../lib/names.js';
import { Periodic } from '../lib/periodic.js';
import { withTimeout } from '../lib/time.js';
import type { Dispatcher } from './dispatcher.js';
import { WAITING_FIELD, type HeldExpiry } from './held.js';
import type { BridgeStats } from './stats.js';

export interface DeadlineOptions {
  redis: Redis;
  n: Names;
  log: Logger;
  dispatcher: Dispatcher;
  /** The requests this bridge holds for lack of a node: it answers those itself. */
  held: HeldExpiry;
  stats: BridgeStats;
  /** @defaultValue 500 */
  tickMs?: number;
  now?: () => number;
}

const LIMIT = 500;

/** A request past its deadline, as its record tells it. */
interface Expired {
  id: string;
  node: string | undefined;
  replyTo: string;
  entryId: string | undefined;
  waited: boolean;
  /** The request's timeout_ms as recorded at its arrival. */
  timeoutMs: number | undefined;
}

export class DeadlineSweeper {
  private readonly periodic: Periodic;
  private failures = 0;

  constructor(private readonly o: DeadlineOptions) {
    this.periodic = new Periodic(o.tickMs ?? 500, () => this.tickOnce());
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** One tick now, or the one in progress. */
  tick(): Promise<void> {
    return this.periodic.runNow();
  }

  private async tickOnce(): Promise<void> {
    try {
      await this.o.held.expire();
      await this.sweep();
      this.failures = 0;
    } catch (err) {
      this.failures += 1;
      if (this.failures === 1) this.o.log.warn({ err: (err as Error).message }, 'deadline sweep failed; retrying');
    }
  }

  /** One pass over the requests past their deadline; returns how many were answered here. */
  async sweep(): Promise<number> {
    const { redis, n, dispatcher } = this.o;
    const now = this.o.now?.() ?? Date.now();
    const zkey = deadlinesKey(n);
    const keys = await withTimeout(redis.zrangebyscore(zkey, '-inf', now, 'LIMIT', 0, LIMIT), dispatcher.timeoutMs, 'reading deadlines');
    if (keys.length === 0) return 0;
    const recordPrefix = n.requestKey('');
    const pipe = redis.pipeline();
    for (const k of keys) pipe.hmget(k, 'final', 'node', 'reply_to', 'entry', WAITING_FIELD, 'timeout_ms');
    const rows = (await pipe.exec()) ?? [];
    const stale: string[] = [];
    let answered = 0;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      const id = key.slice(recordPrefix.length);
      const [final, rawNode, replyTo, entry, waited, timeout] = (rows[i]?.[1] ?? []) as (string | null)[];
      // A node id that is none (the record was written by hand) has no queue to look in.
      const node = rawNode !== null && rawNode !== undefined && isValidNodeId(rawNode) ? rawNode : null;
      if (final != null || (node == null && replyTo == null) || !key.startsWith(recordPrefix)) {
        stale.push(key);
        continue;
      }
      // Held by this bridge: HeldRequests.expire answers it (with what it knows of the request).
      if (this.o.held.has(id)) continue;
      try {
        const timeoutMs = Number(timeout);
        const r = { id, node: node ?? undefined, replyTo: replyTo ?? n.responses, entryId: entry ?? undefined, waited: waited != null, timeoutMs: timeoutMs > 0 ? timeoutMs : undefined };
        if (await this.expire(r)) answered++;
      } catch (err) {
        this.o.log.warn({ request_id: id, err: (err as Error).message }, 'could not answer a request past its deadline');
      }
    }
    if (stale.length > 0) await redis.zrem(zkey, ...stale);
    return answered;
  }

  private async expire({ id, node, replyTo, entryId, waited, timeoutMs }: Expired): Promise<boolean> {
    const { redis, n, dispatcher, stats, log } = this.o;
    let job: Job<InferenceJobData> | undefined;
    let state: string | undefined;
    if (node !== undefined) {
      job = await Job.fromId<InferenceJobData>(dispatcher.queue(node), jobIdFor(id));
      state = job ? await job.getState() : undefined;
    }
    const request = job?.data.request;
    const placed = node !== undefined;
    const code: ErrorCode = !placed && waited ? 'no_healthy_node' : 'timeout';
    // The request's own timeout: from the job, else from the record (older records have none).
    const limit = request?.timeout_ms ?? timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const message =
      code === 'no_healthy_node'
        ? `no eligible node within timeout_ms (${limit} ms)`
        : `not finished within timeout_ms (${limit} ms)${state === 'active' ? '' : placed ? '; removed from the queue of ' + node : '; never placed on a node'}`;
    const extra: Partial<InferenceResponse> = {};
    if (request) extra.model = request.model;
    if (placed) extra.node_id = node;
    if (job && job.data.attempt >= 1) extra.attempt = job.data.attempt;
    if (request?.metadata !== undefined) extra.metadata = request.metadata;
    const letter = { entry_id: entryId, node_id: node, attempt: extra.attempt, request };
    const published = await failRequest(redis, n, { requestId: id, replyTo, code, message, answer: extra, letter });
    if (published) {
      if (code === 'timeout') stats.timeout();
      if (!placed) stats.error(code);
      log.info({ request_id: id, code, node, state }, 'request past its deadline answered');
    }
    if (job && node !== undefined && (state === 'waiting' || state === 'prioritized' || state === 'delayed')) {
      await dispatcher.removeCopy(node, jobIdFor(id)).catch(() => false);
    }
    return published;
  }
}
