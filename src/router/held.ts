/**
 * Requests the bridge holds while no node is eligible for them (SPEC.md section 7), or whose
 * add failed for a passing reason. A held request's entry stays pending in `{p}:requests`:
 *
 *   retry    after every registry refresh, the intake routes those before their deadline again
 *            (`due`); placed or answered, they are released and their entries acked
 *   expire   at every deadline sweep: answered `cancelled` when their sender cancelled them,
 *            `no_healthy_node` (or `timeout` when an add kept failing) past their deadline;
 *            dead-lettered (but a cancelled one) and acked
 *   touch    now and then their entries' idle time is reset (XCLAIM), so no sibling bridge
 *            takes them over
 *
 * Expiry runs in the intake's lane, one at a time with its batches and retries.
 */
import type { Redis } from 'ioredis';
import type { InferenceRequest } from '../contracts/types.js';
import { DEFAULT_TIMEOUT_MS, replyStreamOf } from '../lib/bus.js';
import type { ErrorCode } from '../lib/errors.js';
import { failRequest } from '../lib/failures.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import type { Serial } from '../lib/serial.js';
import type { Acks } from './consumer.js';
import type { DecisionFeed } from './decisions.js';
import type { BridgeStats } from './stats.js';

/** Record field marking a request that has waited for a node (any bridge answers it `no_healthy_node`). */
export const WAITING_FIELD = 'waiting';

/** A request read from the stream and not placed yet. */
export interface Unplaced {
  entryId: string;
  request: InferenceRequest;
  deadline: number;
  seenAt: number;
  /** The size of its `data` text (SPEC.md section 3), carried to the worker. */
  bytes?: number;
}

/** A request held for lack of a node (or because its add failed). */
export interface Held extends Unplaced {
  /** no_node / no_model: nothing eligible can serve it; retry: its add failed. */
  reason: 'no_node' | 'no_model' | 'retry';
}

/** What the deadline sweep needs of the held requests. */
export interface HeldExpiry {
  /** Answer those cancelled or past their deadline. */
  expire(): Promise<void>;
  has(requestId: string): boolean;
}

export interface AnswerOptions {
  redis: Redis;
  n: Names;
  log: Logger;
  stats: BridgeStats;
}

/**
 * Answer a request this bridge did not place with an error, and dead-letter it (unless its
 * sender cancelled it); counted when published. Returns whether it was.
 */
export async function answerUnplaced(o: AnswerOptions, p: Unplaced, code: ErrorCode, message: string): Promise<boolean> {
  const { redis, n, log, stats } = o;
  const r = p.request;
  const answer = r.metadata !== undefined ? { model: r.model, metadata: r.metadata } : { model: r.model };
  const failure = { requestId: r.request_id, replyTo: replyStreamOf(n, r), code, message, answer, letter: { entry_id: p.entryId, request: r } };
  const ok = await failRequest(redis, n, failure);
  if (!ok) return false;
  if (code === 'cancelled') {
    log.info({ request_id: r.request_id }, 'request cancelled before placement');
    return true;
  }
  log.warn({ request_id: r.request_id, code, err: message }, 'request refused');
  stats.error(code);
  if (code === 'timeout') stats.timeout();
  return true;
}

export interface HeldOptions extends AnswerOptions {
  /** The requests stream's group, where held entries are acked and kept. */
  group: Acks;
  /** The intake's lane: expiry never overlaps a batch or a retry. */
  lane: Serial;
  /** Where newly held requests are told (the live page), when anyone listens. */
  decisions?: DecisionFeed;
  now?: () => number;
}

export class HeldRequests implements HeldExpiry {
  private readonly held = new Map<string, Held>();

  constructor(private readonly o: HeldOptions) {}

  get count(): number {
    return this.held.size;
  }

  has(requestId: string): boolean {
    return this.held.has(requestId);
  }

  /** Whether this entry is held here already (our own idle entry came back through XAUTOCLAIM). */
  holdsEntry(requestId: string, entryId: string): boolean {
    return this.held.get(requestId)?.entryId === entryId;
  }

  /** Hold a request (again); a newly held one is logged and told. */
  hold(h: Held): void {
    const id = h.request.request_id;
    if (!this.held.has(id)) {
      this.o.log.info({ request_id: id, model: h.request.model, reason: h.reason }, 'no eligible node: request held');
      if (this.o.decisions?.active) {
        this.o.decisions.push({ t: Date.now(), kind: 'held', request_id: id, model: h.request.model, priority: h.request.priority ?? 5, reason: h.reason });
      }
    }
    this.held.set(id, h);
    this.o.stats.holding(this.held.size);
  }

  /** It is placed or answered: no longer held (its entry is acked by whoever finished it). */
  release(requestId: string): void {
    if (this.held.delete(requestId)) this.o.stats.holding(this.held.size);
  }

  /** The held requests still before their deadline, to route again. */
  due(now: number): Held[] {
    return [...this.held.values()].filter((h) => h.deadline > now);
  }

  expire(): Promise<void> {
    return this.o.lane.run(async () => {
      const done: string[] = [];
      await this.answerCancelled(done);
      await this.answerExpired(done);
      await this.o.group.ack(done);
    });
  }

  /** Reset the idle time of held entries so no sibling bridge claims them. */
  async touch(): Promise<void> {
    const ids = [...this.held.values()].map((h) => h.entryId);
    if (ids.length > 0) await this.o.group.touch(ids);
  }

  /** Answer `cancelled` to held requests whose sender cancelled them (one MGET for all held). */
  private async answerCancelled(done: string[]): Promise<void> {
    const list = [...this.held.values()];
    if (list.length === 0) return;
    const flags = await this.o.redis.mget(list.map((h) => this.o.n.cancelKey(h.request.request_id)));
    for (const [i, h] of list.entries()) {
      if (flags[i] === null || flags[i] === undefined) continue;
      await answerUnplaced(this.o, h, 'cancelled', 'cancelled by its sender while waiting for an eligible node');
      this.release(h.request.request_id);
      done.push(h.entryId);
    }
  }

  /** Answer held requests past their deadline: `no_healthy_node`, or `timeout` when their add kept failing. */
  private async answerExpired(done: string[]): Promise<void> {
    const now = this.o.now?.() ?? Date.now();
    for (const h of [...this.held.values()]) {
      if (h.deadline > now) continue;
      const limit = h.request.timeout_ms ?? DEFAULT_TIMEOUT_MS;
      const [code, message]: [ErrorCode, string] =
        h.reason === 'retry'
          ? ['timeout', `not placed on a node within timeout_ms (${limit} ms)`]
          : ['no_healthy_node', `no eligible node for model '${h.request.model}' within timeout_ms (${limit} ms)`];
      try {
        await answerUnplaced(this.o, h, code, message);
      } catch (err) {
        // This one is tried again next tick; the others are not held up by it.
        this.o.log.warn({ request_id: h.request.request_id, err: (err as Error).message }, 'could not answer a held request past its deadline');
        continue;
      }
      this.release(h.request.request_id);
      done.push(h.entryId);
    }
  }
}
