/**
 * `GET /requests/{id}` (SPEC.md section 8): where a request is now and when it should be
 * answered. Read from Redis (one pipeline for the record, one for the job), so any bridge
 * answers for requests any bridge placed. The answer (JSON):
 *
 *   request_id    the id asked for
 *   state         held | waiting | running | done | unknown (404)
 *   model         the request's model (when known)
 *   node_id       the node whose queue holds it / that runs or ran it (waiting, running, done)
 *   position      waiting: its place in that node's queue, 1 = the next to start
 *   ahead         waiting: jobs before it there, running ones included
 *   routing       sticky | fallback (as in the final answer)
 *   attempt       times it was started so far
 *   age_ms        since it arrived (its stream entry's time)
 *   started_at    running: when it started (RFC 3339)
 *   eta_start_ms  held: null; waiting: expected ms until it starts (0 = now); running/done: 0
 *   eta_done_ms   held: null; waiting/running: expected ms until its final answer; done: 0
 *                 (null, and eta too, when nothing is known to estimate from)
 *   eta           eta_done_ms as an RFC 3339 time (null when unknown)
 *   error         done: the final answer's error code, else null
 *   answered_at   done: when the final answer was written
 *
 * A request's text and its answer's text are never shown here.
 */
import type { Redis } from 'ioredis';
import type { InferenceJobData } from '../lib/bus.js';
import type { HandlerResult } from '../lib/http.js';
import { isValidRequestId, jobIdFor, type Names } from '../lib/names.js';
import { rfc3339, streamIdMs } from '../lib/time.js';
import { withTimeout } from '../lib/time.js';

export type RequestState = 'held' | 'waiting' | 'running' | 'done' | 'unknown';

export interface RequestStatus {
  request_id: string;
  state: RequestState;
  model?: string;
  node_id?: string;
  position?: number;
  ahead?: number;
  routing?: string;
  attempt?: number;
  age_ms?: number;
  started_at?: string;
  eta_start_ms: number | null;
  eta_done_ms: number | null;
  eta: string | null;
  error?: string | null;
  answered_at?: string;
}

/**
 * What is known about times, for the ETA: the bridge's routing figures, or (for `orion status`
 * with no bridge to ask) the node's recent jobs. Undefined: nothing to estimate from.
 */
export interface EtaSource {
  /** Expected ms until a job of `model` with `ahead` jobs before it on `nodeId` starts. */
  startIn(nodeId: string, model: string, ahead: number): number | undefined;
  /** Expected ms one answer of `model` takes on `nodeId` once started. */
  answerMs(nodeId: string, model: string): number | undefined;
  /** Whether this bridge holds the request for lack of a node. */
  isHeld(requestId: string): boolean;
}

export interface WhereContext {
  redis: Redis;
  n: Names;
  eta: EtaSource;
  now?: () => number;
  timeoutMs?: number;
}

/** The handler of `/requests/{id}`; `id` is the path's last segment, URL-decoded. */
export async function requestStatusHandler(ctx: WhereContext, rawId: string): Promise<HandlerResult> {
  let id: string;
  try {
    id = decodeURIComponent(rawId);
  } catch {
    id = rawId;
  }
  if (!isValidRequestId(id)) return { status: 400, body: { error: 'invalid_request', message: 'a request id is 1-128 of [A-Za-z0-9._-]' } };
  const s = await withTimeout(requestStatus(ctx, id), ctx.timeoutMs ?? 2000, 'request status');
  return { status: s.state === 'unknown' ? 404 : 200, body: s };
}

export async function requestStatus(ctx: WhereContext, id: string): Promise<RequestStatus> {
  const { redis, n, eta } = ctx;
  const now = ctx.now?.() ?? Date.now();
  const [final, node, entry] = await redis.hmget(n.requestKey(id), 'final', 'node', 'entry');
  const base: RequestStatus = { request_id: id, state: 'unknown', eta_start_ms: null, eta_done_ms: null, eta: null };
  if (entry) base.age_ms = Math.max(0, now - streamIdMs(entry));
  if (final != null) return done(base, final);
  if (node == null) return entry || eta.isHeld(id) ? { ...base, state: 'held' } : base;
  const jobId = jobIdFor(id);
  const job = n.nodeQueueKey(node, jobId);
  const [r0, r1, r2, r3, r4, r5] =
    (await redis
      .pipeline()
      .hmget(job, 'data', 'processedOn')
      .zrank(n.nodeQueueKey(node, 'prioritized'), jobId)
      .lpos(n.nodeQueueKey(node, 'wait'), jobId)
      .llen(n.nodeQueueKey(node, 'wait'))
      .llen(n.nodeQueueKey(node, 'active'))
      .lpos(n.nodeQueueKey(node, 'active'), jobId)
      .exec()) ?? [];
  const [dataRaw, processedOn] = (r0?.[1] ?? [null, null]) as [string | null, string | null];
  const data = parseData(dataRaw);
  const out: RequestStatus = { ...base, node_id: node };
  if (data) {
    out.model = data.request.model;
    out.routing = data.routing;
    out.attempt = data.attempt;
  }
  const model = out.model ?? '';
  const rank = r1?.[1] as number | null;
  const lpos = r2?.[1] as number | null;
  const waitLen = Number(r3?.[1] ?? 0);
  const running = Number(r4?.[1] ?? 0);
  const activePos = r5?.[1] as number | null;
  if (activePos != null) {
    const running: RequestStatus = { ...out, state: 'running', eta_start_ms: 0 };
    if (processedOn) running.started_at = rfc3339(Number(processedOn));
    const elapsed = processedOn ? Math.max(0, now - Number(processedOn)) : 0;
    const answer = eta.answerMs(node, model);
    return withEta(running, answer === undefined ? undefined : Math.max(0, answer - elapsed), now);
  }
  // BullMQ starts the wait list (taken from its tail) before the prioritized set (lowest score first).
  let before: number | undefined;
  if (lpos != null) before = waitLen - 1 - lpos;
  else if (rank != null) before = waitLen + rank;
  if (before === undefined) return { ...out, state: 'held' }; // between queues (a move or a retry in flight)
  const ahead = before + running;
  const start = eta.startIn(node, model, ahead);
  const answer = eta.answerMs(node, model);
  const waiting: RequestStatus = { ...out, state: 'waiting', position: before + 1, ahead, eta_start_ms: start === undefined ? null : Math.round(start) };
  return withEta(waiting, start === undefined || answer === undefined ? undefined : start + answer, now);
}

function withEta(s: RequestStatus, doneInMs: number | undefined, now: number): RequestStatus {
  if (doneInMs === undefined) return s;
  const ms = Math.max(0, Math.round(doneInMs));
  return { ...s, eta_done_ms: ms, eta: rfc3339(now + ms) };
}

function done(base: RequestStatus, final: string): RequestStatus {
  let doc: Record<string, unknown> = {};
  try {
    doc = JSON.parse(final) as Record<string, unknown>;
  } catch {
    /* an unreadable stored answer is still an answer */
  }
  const out: RequestStatus = { ...base, state: 'done', eta_start_ms: 0, eta_done_ms: 0, eta: null };
  if (typeof doc['model'] === 'string') out.model = doc['model'];
  if (typeof doc['node_id'] === 'string') out.node_id = doc['node_id'];
  if (typeof doc['routing'] === 'string') out.routing = doc['routing'];
  if (typeof doc['attempt'] === 'number') out.attempt = doc['attempt'];
  const err = doc['error'] as { code?: unknown } | undefined;
  out.error = typeof err?.code === 'string' ? err.code : null;
  if (typeof doc['created_at'] === 'string') {
    out.answered_at = doc['created_at'];
    out.eta = doc['created_at'];
  }
  return out;
}

function parseData(raw: string | null): InferenceJobData | undefined {
  if (raw === null) return undefined;
  try {
    const d = JSON.parse(raw) as InferenceJobData;
    return typeof d?.request?.model === 'string' ? d : undefined;
  } catch {
    return undefined;
  }
}
