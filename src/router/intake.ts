/**
 * What the bridge does with each batch of `{p}:requests` entries (SPEC.md sections 3, 6, 7).
 *
 *   not usable         invalid_request answer on its reply stream (when it has a usable id)
 *                      and a dead-letter entry; acked
 *   claim 'new'        routed from the snapshot and placed on the node's queue, then acked
 *   claim 'same'       (an entry read again after a crash) placed again where the record says
 *                      it went (a no-op when the job is there), or routed if it never was
 *   claim 'done'       the stored final answer goes to this entry's reply stream; acked
 *   claim 'waiting'    the running job's final answer will also go to this reply stream; acked
 *   model_not_found    answered at once (dead-lettered, acked)
 *   cancelled          its `{p}:cancel:{id}` key is set (SPEC.md section 9): answered
 *                      `cancelled`, never placed, not dead-lettered, acked; a held request
 *                      cancelled later is answered so at the next deadline sweep
 *   no eligible node   held here, not acked, tried again after every registry refresh, kept
 *                      from siblings by XCLAIM (idle reset), answered `no_healthy_node` at its
 *                      deadline
 *
 * One XACK per batch, after the batch's jobs are in their queues. Batches, retries of held
 * requests and deadline expiry run one at a time.
 */
import type { Redis } from 'ioredis';
import { parseRequestEntry } from '../contracts/index.js';
import { traceStep } from '../lib/trace.js';
import { failRequest } from '../lib/failures.js';
import type { InferenceRequest } from '../contracts/types.js';
import {
  DEFAULT_TIMEOUT_MS,
  claimRequests,
  deadLetter,
  deliver,
  deliveryOf,
  misdelivery,
  replyStreamOf,
  type ClaimItem,
  type ClaimResult,
  type InferenceJobData,
} from '../lib/bus.js';
import type { ErrorCode } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { isValidNodeId, type Names } from '../lib/names.js';
import { arrivalMs, sleep } from '../lib/time.js';
import type { GroupReader, StreamEntry } from './consumer.js';
import type { DecisionFeed } from './decisions.js';
import { withTimeout } from '../lib/time.js';
import type { Dispatcher, PlaceResult, Placement } from './dispatcher.js';
import type { PlacementFlags, Placer } from './placer.js';
import { choose, type Registry } from './registry.js';
import type { BridgeStats } from './stats.js';

/** A request held for lack of a node (or because its add failed). */
interface Held {
  entryId: string;
  request: InferenceRequest;
  deadline: number;
  seenAt: number;
  bytes?: number;
  /** no_node / no_model: nothing eligible can serve it; retry: its add failed. */
  reason: 'no_node' | 'no_model' | 'retry';
}

interface Pending {
  entryId: string;
  request: InferenceRequest;
  deadline: number;
  seenAt: number;
  /** The size of its `data` text (SPEC.md section 3), carried to the worker. */
  bytes?: number;
  /** Its sender cancelled it before this bridge placed it. */
  cancelled?: boolean;
}

/** A request this bridge answers with an error instead of placing it. */
interface Refusal {
  p: Pending;
  code: ErrorCode;
  message: string;
}

/** What `route` decided and sent, for `settle` to finish. */
interface Routed {
  /** The placements' adds; resolves with those that failed. */
  placing: Promise<PlaceResult>;
  placements: readonly Placement[];
  /** Requests placed for the first time (counted as routed), with what the balanced rule did. */
  firstTime: ReadonlyMap<string, PlacementFlags>;
  hold: Held[];
  errors: Refusal[];
  ack: string[];
  now: number;
}

/** A batch whose request ids are claimed: `claims[i]` is the claim of `valid[i]`. */
interface Claimed {
  now: number;
  /** Entries finished already (unusable ones, refused). */
  ack: string[];
  valid: Pending[];
  claims: ClaimResult[];
}

/** Record field marking a request that has waited for a node (any bridge answers it `no_healthy_node`). */
export const WAITING_FIELD = 'waiting';

export interface IntakeOptions {
  redis: Redis;
  /**
   * Connection for the claims of batches: one of their own, so that they do not wait behind
   * the adds of the batch before (Redis answers one connection's commands in order).
   * @defaultValue redis
   */
  claims?: Redis;
  n: Names;
  log: Logger;
  registry: Registry;
  placer: Placer;
  dispatcher: Dispatcher;
  stats: BridgeStats;
  maxAttempts: number;
  /** Where held and refused requests are told (the live page), when anyone listens. */
  decisions?: DecisionFeed;
  now?: () => number;
}

export class Intake {
  private readonly held = new Map<string, Held>();
  private chain: Promise<unknown> = Promise.resolve();
  private stopping = false;
  reader: GroupReader | undefined;

  constructor(private readonly o: IntakeOptions) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** Run `fn` after everything queued before it. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  heldCount(): number {
    return this.held.size;
  }

  isHeld(requestId: string): boolean {
    return this.held.has(requestId);
  }

  /** Stop retrying a failing batch (the process is closing; its entries stay pending). */
  stop(): void {
    this.stopping = true;
  }

  /**
   * Handle a batch from the reader; a batch that fails (Redis down) is retried with backoff,
   * starting again from the claims. Three stages, so that the bridge works on one batch while
   * Redis works on another (the reader hands the next batch over early):
   *   1. at once: the batch's claims go out;
   *   2. in order, one batch at a time, after everything queued before it: duplicates
   *      answered, routing, the owners and adds sent;
   *   3. while the next batches go through 2: waiting for the adds, holding what could not be
   *      placed, answering what cannot be, the ack.
   */
  handle(entries: StreamEntry[]): Promise<void> {
    const early = this.claim(entries);
    early.catch(() => undefined);
    return this.run(entries, early);
  }

  private async run(entries: StreamEntry[], early: Promise<Claimed>): Promise<void> {
    for (let failures = 0; ; failures++) {
      try {
        const claimed = failures === 0 ? early : undefined;
        const finish = await this.serial(async () => this.place(await (claimed ?? this.claim(entries))));
        await finish();
        return;
      } catch (err) {
        if (this.stopping) return;
        if (failures === 0) this.o.log.warn({ err: (err as Error).message, count: entries.length }, 'batch failed; retrying');
        await sleep(Math.min(200 * 2 ** Math.min(failures, 5), 5000));
      }
    }
  }

  /** Parse the entries, refuse the unusable ones and claim the request ids of the rest. */
  private async claim(entries: StreamEntry[]): Promise<Claimed> {
    const { n, dispatcher } = this.o;
    const redis = this.o.claims ?? this.o.redis;
    const now = this.now();
    const ack: string[] = [];
    // Answers and dead letters of unusable entries, sent at once.
    const refusals: Promise<unknown>[] = [];
    const valid: Pending[] = [];
    const items: ClaimItem[] = [];
    for (const e of entries) {
      if (e.fields === null) {
        ack.push(e.id);
        continue;
      }
      const p = parseRequestEntry(e.fields, n);
      if (p.ok) traceStep(p.request.request_id, 'bridge read');
      if (!p.ok) {
        refusals.push(this.refuse(redis, e.id, p.reason, p.original, p.requestId, p.replyTo));
        ack.push(e.id);
        continue;
      }
      // Still held here (our own idle entry came back through XAUTOCLAIM): nothing new.
      if (this.held.get(p.request.request_id)?.entryId === e.id) continue;
      const timeoutMs = p.request.timeout_ms ?? DEFAULT_TIMEOUT_MS;
      const deadline = arrivalMs(e.id, now) + timeoutMs;
      valid.push({ entryId: e.id, request: p.request, deadline, seenAt: now, bytes: p.bytes });
      items.push({ requestId: p.request.request_id, entryId: e.id, replyTo: replyStreamOf(n, p.request), deadline, timeoutMs });
    }
    // Both go out before either is awaited (one round trip); either failing fails the batch.
    const refused = Promise.all(refusals);
    const claimed = items.length > 0 ? claimRequests(redis, n, items) : Promise.resolve([]);
    const cancels = items.length > 0 ? redis.mget(items.map((it) => n.cancelKey(it.requestId))) : Promise.resolve([]);
    const [claims, , cancelled] = await withTimeout(Promise.all([claimed, refused, cancels]), dispatcher.timeoutMs, 'claiming requests');
    cancelled.forEach((c, i) => {
      if (c !== null) valid[i]!.cancelled = true;
    });
    return { now, ack, valid, claims };
  }

  /**
   * Answer duplicates, re-place entries read again, route the new requests and send their
   * adds; the function returned finishes the batch (see `route`).
   */
  private async place({ now, ack, valid, claims }: Claimed): Promise<() => Promise<void>> {
    const { redis, n, dispatcher, stats } = this.o;
    const same: Pending[] = [];
    const toRoute: Pending[] = [];
    let replies: ReturnType<Redis['pipeline']> | undefined;
    const answered: Pending[] = [];
    valid.forEach((v, i) => {
      const c = claims[i]!;
      if (c.kind === 'new') toRoute.push(v);
      else if (c.kind === 'same') same.push(v);
      else {
        stats.duplicate();
        if (c.kind === 'done') {
          void deliver((replies ??= redis.pipeline()), n, replyStreamOf(n, v.request), c.final);
          answered.push(v);
        }
        ack.push(v.entryId);
      }
    });
    if (replies) await this.checkDeliveries(answered, (await withTimeout(replies.exec(), dispatcher.timeoutMs, 'answering duplicates')) ?? []);

    const placements: Placement[] = [];
    if (same.length > 0) {
      const look = redis.pipeline();
      for (const v of same) look.hmget(n.requestKey(v.request.request_id), 'final', 'node');
      const rows = (await withTimeout(look.exec(), dispatcher.timeoutMs, 'reading request records')) ?? [];
      same.forEach((v, i) => {
        const [final, node] = (rows[i]?.[1] ?? [null, null]) as [string | null, string | null];
        if (final !== null) ack.push(v.entryId);
        else if (node !== null && isValidNodeId(node)) placements.push({ nodeId: node, data: this.jobData(v, this.routingOn(node, v.request.model)) });
        else toRoute.push(v);
      });
    }
    return this.route(toRoute, placements, ack, now);
  }

  /** Dead-letter the stored answers of duplicates that could not go to their own reply stream. */
  private async checkDeliveries(list: readonly Pending[], res: [Error | null, unknown][]): Promise<void> {
    const { redis, n } = this.o;
    for (let i = 0; i < list.length; i++) {
      const [err, reply] = res[i] ?? [null, 1];
      const p = list[i]!;
      const why = err ? `stored answer not sent to reply_to: ${err.message}` : misdelivery(n, replyStreamOf(n, p.request), deliveryOf(reply));
      if (why !== undefined) await deadLetter(redis, n, { reason: why, request_id: p.request.request_id, entry_id: p.entryId, request: p.request });
    }
  }

  /** What kind of pass would have chosen `node` for `model` now (for a re-placed job). */
  private routingOn(node: string, model: string): 'sticky' | 'fallback' {
    const c = choose(this.o.registry.current(), model);
    return c.kind === 'routed' && c.node.health.node_id === node ? c.routing : 'fallback';
  }

  private jobData(p: Pending, routing: 'sticky' | 'fallback'): InferenceJobData {
    const data: InferenceJobData = {
      request: p.request,
      entry_id: p.entryId,
      seen_at: p.seenAt,
      deadline: p.deadline,
      attempt: 0,
      max_attempts: this.o.maxAttempts,
      routing,
      tried: [],
    };
    if (p.bytes !== undefined) data.request_bytes = p.bytes;
    return data;
  }

  /**
   * Route what needs a node and send the placements (`placements` may already hold
   * re-placements of entries read again). The function returned waits for them, holds what
   * could not be placed, answers what cannot be, and acks the rest.
   */
  private route(list: readonly Pending[], placements: Placement[], ack: string[], now: number): () => Promise<void> {
    const { placer, dispatcher, n } = this.o;
    const errors: Refusal[] = [];
    const hold: Held[] = [];
    const firstTime = new Map<string, PlacementFlags>();
    for (const p of list) {
      if (p.deadline <= now) {
        // Past its deadline already (the bridge was down): the deadline sweep answers it.
        ack.push(p.entryId);
        continue;
      }
      if (p.cancelled) {
        errors.push({ p, code: 'cancelled', message: 'cancelled by its sender before it was placed on a node' });
        continue;
      }
      const c = placer.choose(p.request.model);
      if (c.kind === 'routed') {
        const nodeId = c.node.health.node_id;
        placements.push({ nodeId, data: this.jobData(p, c.routing) });
        firstTime.set(p.request.request_id, c.flags);
        placer.placing(nodeId, p.request.model, c.routing);
      } else if (c.kind === 'model_not_found') {
        errors.push({ p, code: 'model_not_found', message: `no node has model '${p.request.model}' installed` });
      } else {
        hold.push({ ...p, reason: c.reason });
      }
    }
    const markWaiting = hold.filter((h) => !this.held.has(h.request.request_id));
    const mark =
      markWaiting.length > 0
        ? (pipe: ReturnType<Redis['pipeline']>) => {
            for (const h of markWaiting) pipe.hset(n.requestKey(h.request.request_id), WAITING_FIELD, '1');
          }
        : undefined;
    const placing = dispatcher.placeNew(placements, mark);
    placing.catch(() => undefined);
    return () => this.settle({ placing, placements, firstTime, hold, errors, ack, now });
  }

  /** Wait for the placements of `route`, then hold, answer and ack. */
  private async settle({ placing, placements, firstTime, hold, errors, ack, now }: Routed): Promise<void> {
    const { registry, dispatcher, stats, placer } = this.o;
    const { retry, refused } = await placing;
    const failedIds = new Set(retry.map((f) => f.data.request.request_id));
    const refusedIds = new Set(refused.map((f) => f.placement.data.request.request_id));
    for (const { placement: pl, reason } of refused) {
      if (firstTime.has(pl.data.request.request_id)) placer.left(pl.nodeId);
      const p: Pending = { entryId: pl.data.entry_id, request: pl.data.request, deadline: pl.data.deadline, seenAt: pl.data.seen_at };
      errors.push({ p, code: 'internal', message: `could not be queued on ${pl.nodeId}: ${reason}` });
    }
    for (const pl of placements) {
      const id = pl.data.request.request_id;
      if (refusedIds.has(id)) continue;
      if (failedIds.has(id)) {
        if (firstTime.has(id)) placer.left(pl.nodeId);
        hold.push({ entryId: pl.data.entry_id, request: pl.data.request, deadline: pl.data.deadline, seenAt: pl.data.seen_at, bytes: pl.data.request_bytes, reason: 'retry' });
        continue;
      }
      traceStep(id, 'job queued');
      ack.push(pl.data.entry_id);
      this.held.delete(id);
      const flags = firstTime.get(id);
      if (flags) {
        const anticipated = pl.data.routing === 'sticky' && !registry.reportsLoaded(pl.nodeId, pl.data.request.model);
        stats.routed(pl.nodeId, pl.data.routing, now - arrivalMs(pl.data.entry_id, now), anticipated);
        placer.count(pl.nodeId, flags);
      }
    }
    const feed = this.o.decisions?.active ? this.o.decisions : undefined;
    for (const h of hold) {
      if (!this.held.has(h.request.request_id)) {
        this.o.log.info({ request_id: h.request.request_id, model: h.request.model, reason: h.reason }, 'no eligible node: request held');
        feed?.push({ t: Date.now(), kind: 'held', request_id: h.request.request_id, model: h.request.model, priority: h.request.priority ?? 5, reason: h.reason });
      }
      this.held.set(h.request.request_id, h);
    }
    for (const e of errors) {
      feed?.push({ t: Date.now(), kind: 'refused', request_id: e.p.request.request_id, model: e.p.request.model, reason: e.code });
      if ((await this.answer(e.p, e.code, e.message)) && e.code !== 'cancelled') stats.error(e.code);
      ack.push(e.p.entryId);
      this.held.delete(e.p.request.request_id);
    }
    await withTimeout(this.reader!.ack(ack), dispatcher.timeoutMs, 'acking entries');
  }

  /** Publish a final error for a request this bridge could not place, and dead-letter it (unless its sender cancelled it). */
  private async answer(p: Pending, code: ErrorCode, message: string): Promise<boolean> {
    const { redis, n, log } = this.o;
    const answer = p.request.metadata !== undefined ? { model: p.request.model, metadata: p.request.metadata } : { model: p.request.model };
    const failure = { requestId: p.request.request_id, replyTo: replyStreamOf(n, p.request), code, message, answer, letter: { entry_id: p.entryId, request: p.request } };
    const ok = await failRequest(redis, n, failure);
    if (ok && code === 'cancelled') log.info({ request_id: p.request.request_id }, 'request cancelled before placement');
    else if (ok) {
      log.warn({ request_id: p.request.request_id, code, err: message }, 'request refused');
    }
    return ok;
  }

  /** Answer and dead-letter an unusable entry (invalid answers do not claim the id). */
  private refuse(redis: Redis, entryId: string, reason: string, original: unknown, requestId?: string, replyTo?: string): Promise<boolean> {
    const { n, stats, log } = this.o;
    const model = typeof (original as { model?: unknown } | null)?.model === 'string' ? { model: (original as { model: string }).model } : {};
    const failure = { requestId, replyTo: replyTo ?? n.responses, code: 'invalid_request' as const, message: reason, answer: model, letter: { entry_id: entryId, request: original } };
    stats.error('invalid_request');
    log.warn({ entry_id: entryId, request_id: requestId, err: reason.slice(0, 300) }, 'invalid request');
    return failRequest(redis, n, failure, { as: 'refusal' });
  }

  /** Try held requests again (after a registry refresh). */
  retryHeld(): Promise<void> {
    return this.serial(async () => {
      if (this.held.size === 0 || this.o.registry.current().eligible.length === 0) return;
      const now = this.now();
      const list = [...this.held.values()].filter((h) => h.deadline > now);
      if (list.length === 0) return;
      await this.route(list, [], [], now)();
    });
  }

  /**
   * Answer held requests whose deadline has passed: `no_healthy_node` (or `timeout` when the
   * request had a node but could not be added), dead-letter, ack.
   */
  expireHeld(): Promise<void> {
    return this.serial(async () => {
      const now = this.now();
      const ack: string[] = [];
      await this.answerCancelledHeld(ack);
      for (const h of [...this.held.values()]) {
        if (h.deadline > now) continue;
        const code: ErrorCode = h.reason === 'retry' ? 'timeout' : 'no_healthy_node';
        const message =
          code === 'timeout'
            ? `not placed on a node within timeout_ms (${h.request.timeout_ms ?? DEFAULT_TIMEOUT_MS} ms)`
            : `no eligible node for model '${h.request.model}' within timeout_ms (${h.request.timeout_ms ?? DEFAULT_TIMEOUT_MS} ms)`;
        try {
          if (await this.answer(h, code, message)) {
            this.o.stats.error(code);
            if (code === 'timeout') this.o.stats.timeout();
          }
        } catch (err) {
          // This one is tried again next tick; the others are not held up by it.
          this.o.log.warn({ request_id: h.request.request_id, err: (err as Error).message }, 'could not answer a held request past its deadline');
          continue;
        }
        this.held.delete(h.request.request_id);
        ack.push(h.entryId);
      }
      await this.reader!.ack(ack);
    });
  }

  /** Answer `cancelled` to held requests whose sender cancelled them (one MGET for all held). */
  private async answerCancelledHeld(ack: string[]): Promise<void> {
    const list = [...this.held.values()];
    if (list.length === 0) return;
    const flags = await this.o.redis.mget(list.map((h) => this.o.n.cancelKey(h.request.request_id)));
    for (const [i, h] of list.entries()) {
      if (flags[i] === null || flags[i] === undefined) continue;
      await this.answer(h, 'cancelled', 'cancelled by its sender while waiting for an eligible node');
      this.held.delete(h.request.request_id);
      ack.push(h.entryId);
    }
  }

  /** Reset the idle time of held entries so no sibling bridge claims them. */
  async touchHeld(): Promise<void> {
    const ids = [...this.held.values()].map((h) => h.entryId);
    if (ids.length > 0) await this.reader!.touch(ids);
  }
}
