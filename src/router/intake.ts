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
 * A batch (`Batch`, the entries of one read) is acked by one XACK, after its jobs are in their
 * queues and the rest answered. Held requests are `HeldRequests`' (held.ts). Batches, retries
 * of held requests and their expiry run one at a time, in the lane they share.
 */
import type { Redis } from 'ioredis';
import { parseRequestEntry } from '../contracts/index.js';
import { traceStep } from '../lib/trace.js';
import { failRequest } from '../lib/failures.js';
import { DEFAULT_TIMEOUT_MS, claimRequests, deadLetter, deliver, deliveryOf, misdelivery, replyStreamOf, type ClaimItem, type ClaimResult, type InferenceJobData } from '../lib/bus.js';
import type { ErrorCode } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { isValidNodeId, type Names } from '../lib/names.js';
import type { Serial } from '../lib/serial.js';
import { arrivalMs, sleep, withTimeout } from '../lib/time.js';
import { Batch, type Acks } from './consumer.js';
import type { DecisionFeed } from './decisions.js';
import type { Dispatcher, PlaceResult, Placement } from './dispatcher.js';
import { WAITING_FIELD, answerUnplaced, type Held, type HeldRequests, type Unplaced } from './held.js';
import type { PlacementFlags, Placer } from './placer.js';
import { choose, type Registry } from './registry.js';
import type { BridgeStats } from './stats.js';

interface Pending extends Unplaced {
  /** Its sender cancelled it before this bridge placed it. */
  cancelled?: boolean;
}

/** A request this bridge answers with an error instead of placing it. */
interface Refusal {
  p: Unplaced;
  code: ErrorCode;
  message: string;
}

/** A batch whose request ids are claimed: `claims[i]` is the claim of `valid[i]`. */
interface Claimed {
  now: number;
  valid: Pending[];
  claims: ClaimResult[];
}

/** What `route` decided and sent, for `settle` to finish. */
interface Routed {
  batch: Batch;
  /** The placements' adds; resolves with those that failed. */
  placing: Promise<PlaceResult>;
  placements: readonly Placement[];
  /** Requests placed for the first time (counted as routed), with what the balanced rule did. */
  firstTime: ReadonlyMap<string, PlacementFlags>;
  hold: Held[];
  errors: Refusal[];
  now: number;
}

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
  /** The requests stream's group: where the entries of held requests retried are acked. */
  group: Pick<Acks, 'ack'>;
  held: HeldRequests;
  /** Shared with `held`: batches, retries and expiry one at a time. */
  lane: Serial;
  /** Where refused requests are told (the live page), when anyone listens. */
  decisions?: DecisionFeed;
  now?: () => number;
}

export class Intake {
  private stopping = false;

  constructor(private readonly o: IntakeOptions) {}

  private now(): number {
    return this.o.now?.() ?? Date.now();
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
   *   2. in the lane, after everything queued before it: duplicates answered, routing, the
   *      owners and adds sent;
   *   3. while the next batches go through 2: waiting for the adds, holding what could not be
   *      placed, answering what cannot be, the ack.
   */
  handle(batch: Batch): Promise<void> {
    const early = this.claim(batch);
    early.catch(() => undefined);
    return this.run(batch, early);
  }

  private async run(batch: Batch, early: Promise<Claimed>): Promise<void> {
    for (let failures = 0; ; failures++) {
      try {
        const claimed = failures === 0 ? early : undefined;
        const routed = await this.o.lane.run(async () => this.sort(await (claimed ?? this.claim(batch)), batch));
        await this.settle(routed);
        return;
      } catch (err) {
        if (this.stopping) return;
        if (failures === 0) this.o.log.warn({ err: (err as Error).message, count: batch.entries.length }, 'batch failed; retrying');
        await sleep(Math.min(200 * 2 ** Math.min(failures, 5), 5000));
      }
    }
  }

  /** Parse the entries, refuse the unusable ones and claim the request ids of the rest. */
  private async claim(batch: Batch): Promise<Claimed> {
    const { n, dispatcher, held } = this.o;
    const redis = this.o.claims ?? this.o.redis;
    const now = this.now();
    // Answers and dead letters of unusable entries, sent at once.
    const refusals: Promise<unknown>[] = [];
    const valid: Pending[] = [];
    const items: ClaimItem[] = [];
    for (const e of batch.entries) {
      const p = e.fields === null ? undefined : parseRequestEntry(e.fields, n);
      if (p === undefined || !p.ok) {
        if (p) refusals.push(this.refuse(redis, e.id, p.reason, p.original, p.requestId, p.replyTo));
        batch.finish(e.id);
        continue;
      }
      traceStep(p.request.request_id, 'bridge read');
      // Still held here (our own idle entry came back through XAUTOCLAIM): nothing new.
      if (held.holdsEntry(p.request.request_id, e.id)) continue;
      const timeoutMs = p.request.timeout_ms ?? DEFAULT_TIMEOUT_MS;
      const deadline = arrivalMs(e.id, now) + timeoutMs;
      valid.push({ entryId: e.id, request: p.request, deadline, seenAt: now, bytes: p.bytes });
      items.push({ requestId: p.request.request_id, entryId: e.id, replyTo: replyStreamOf(n, p.request), deadline, timeoutMs });
    }
    // All go out before any is awaited (one round trip); any failing fails the batch.
    const claimed = items.length > 0 ? claimRequests(redis, n, items) : Promise.resolve([]);
    const cancels = items.length > 0 ? redis.mget(items.map((it) => n.cancelKey(it.requestId))) : Promise.resolve([]);
    const [claims, , cancelled] = await withTimeout(Promise.all([claimed, Promise.all(refusals), cancels]), dispatcher.timeoutMs, 'claiming requests');
    cancelled.forEach((c, i) => {
      if (c !== null) valid[i]!.cancelled = true;
    });
    return { now, valid, claims };
  }

  /** Answer duplicates, re-place entries read again, route the new requests and send their adds. */
  private async sort({ now, valid, claims }: Claimed, batch: Batch): Promise<Routed> {
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
        batch.finish(v.entryId);
      }
    });
    if (replies) await this.checkDeliveries(answered, (await withTimeout(replies.exec(), dispatcher.timeoutMs, 'answering duplicates')) ?? []);
    const placements = same.length > 0 ? await this.replace(same, toRoute, batch) : [];
    return this.route(toRoute, placements, batch, now);
  }

  /**
   * Entries read again (after a crash): placed again where their record says they went (a
   * no-op when the job is there), finished when answered already, routed if never placed.
   */
  private async replace(same: readonly Pending[], toRoute: Pending[], batch: Batch): Promise<Placement[]> {
    const { redis, n, dispatcher } = this.o;
    const look = redis.pipeline();
    for (const v of same) look.hmget(n.requestKey(v.request.request_id), 'final', 'node');
    const rows = (await withTimeout(look.exec(), dispatcher.timeoutMs, 'reading request records')) ?? [];
    const placements: Placement[] = [];
    same.forEach((v, i) => {
      const [final, node] = (rows[i]?.[1] ?? [null, null]) as [string | null, string | null];
      if (final !== null) batch.finish(v.entryId);
      else if (node !== null && isValidNodeId(node)) placements.push({ nodeId: node, data: this.jobData(v, this.routingOn(node, v.request.model)) });
      else toRoute.push(v);
    });
    return placements;
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

  private jobData(p: Unplaced, routing: 'sticky' | 'fallback'): InferenceJobData {
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
   * re-placements of entries read again); `settle` waits for them.
   */
  private route(list: readonly Pending[], placements: Placement[], batch: Batch, now: number): Routed {
    const { placer, dispatcher, n, held } = this.o;
    const errors: Refusal[] = [];
    const hold: Held[] = [];
    const firstTime = new Map<string, PlacementFlags>();
    for (const p of list) {
      if (p.deadline <= now) {
        // Past its deadline already (the bridge was down): the deadline sweep answers it.
        batch.finish(p.entryId);
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
    const marks = hold.filter((h) => !held.has(h.request.request_id)).map((h) => ({ key: n.requestKey(h.request.request_id), field: WAITING_FIELD, value: '1' }));
    const placing = placer.writing(dispatcher.placeNew(placements, marks));
    placing.catch(() => undefined);
    return { batch, placing, placements, firstTime, hold, errors, now };
  }

  /** Wait for the placements of `route`, then hold, answer and ack. */
  private async settle(r: Routed): Promise<void> {
    const { dispatcher, placer, held } = this.o;
    const { retry, refused } = await r.placing;
    const failedIds = new Set(retry.map((f) => f.data.request.request_id));
    const refusedIds = new Set(refused.map((f) => f.placement.data.request.request_id));
    for (const { placement: pl, reason } of refused) {
      if (r.firstTime.has(pl.data.request.request_id)) placer.left(pl.nodeId);
      const p: Unplaced = { entryId: pl.data.entry_id, request: pl.data.request, deadline: pl.data.deadline, seenAt: pl.data.seen_at };
      r.errors.push({ p, code: 'internal', message: `could not be queued on ${pl.nodeId}: ${reason}` });
    }
    for (const pl of r.placements) {
      const id = pl.data.request.request_id;
      if (refusedIds.has(id)) continue;
      if (!failedIds.has(id)) {
        this.placed(pl, r);
        continue;
      }
      if (r.firstTime.has(id)) placer.left(pl.nodeId);
      r.hold.push({ entryId: pl.data.entry_id, request: pl.data.request, deadline: pl.data.deadline, seenAt: pl.data.seen_at, bytes: pl.data.request_bytes, reason: 'retry' });
    }
    for (const h of r.hold) held.hold(h);
    const feed = this.o.decisions?.active ? this.o.decisions : undefined;
    for (const e of r.errors) {
      feed?.push({ t: Date.now(), kind: 'refused', request_id: e.p.request.request_id, model: e.p.request.model, reason: e.code });
      await answerUnplaced(this.o, e.p, e.code, e.message);
      r.batch.finish(e.p.entryId);
      held.release(e.p.request.request_id);
    }
    await r.batch.ack(dispatcher.timeoutMs);
  }

  /** A job in its queue: its entry is finished, and a first placement counted. */
  private placed(pl: Placement, r: Routed): void {
    const { registry, stats, placer } = this.o;
    const id = pl.data.request.request_id;
    traceStep(id, 'job queued');
    r.batch.finish(pl.data.entry_id);
    this.o.held.release(id);
    const flags = r.firstTime.get(id);
    if (!flags) return;
    const anticipated = pl.data.routing === 'sticky' && !registry.reportsLoaded(pl.nodeId, pl.data.request.model);
    stats.routed(pl.nodeId, pl.data.routing, r.now - arrivalMs(pl.data.entry_id, r.now), anticipated);
    placer.count(pl.nodeId, flags);
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

  /** Route held requests again (after a registry refresh), as a batch of their own. */
  retryHeld(): Promise<void> {
    return this.o.lane.run(async () => {
      const { held, registry, group } = this.o;
      if (held.count === 0 || registry.current().eligible.length === 0) return;
      const now = this.now();
      const list = held.due(now);
      if (list.length === 0) return;
      await this.settle(this.route(list, [], new Batch(group), now));
    });
  }
}
