/**
 * `orion status ID`: where a request is. The bridge answers it (`GET /requests/{id}`, SPEC.md
 * section 8); when no bridge answers that, the CLI finds out from Redis itself: the request
 * record (`{p}:request:{id}`: owner node, final answer, held mark) and the BullMQ job on the
 * owner's queue (state, position, start time), with an ETA from the queue's recent jobs.
 */
import { Job, Queue } from 'bullmq';
import type { InferenceResponse } from '../contracts/types.js';
import { HeldConnection } from '../lib/bull.js';
import type { InferenceJobData } from '../lib/bus.js';
import { isValidRequestId, jobIdFor } from '../lib/names.js';
import { UsageError, type CliContext, type Command } from './context.js';
import { duration } from './format.js';

/** The bridge's states (src/router/where.ts); the CLI's own look into Redis answers the same. */
export type RequestState = 'held' | 'waiting' | 'running' | 'done' | 'unknown';

/** The shape of the bridge's `GET /requests/{id}` (fields it does not know are left out). */
export interface RequestStatus {
  request_id: string;
  state: RequestState;
  model?: string;
  node_id?: string;
  /** waiting: 1 = next to start on its node. */
  position?: number;
  routing?: string;
  attempt?: number;
  age_ms?: number;
  /** Expected ms until the final answer (null when unknown). */
  eta_done_ms?: number | null;
  /** done: the final answer's error code, else null. */
  error?: string | null;
  /** running (CLI's look only): since when, ms since epoch. */
  started_at?: number;
  /** Who answered: the bridge's endpoint or the CLI's own look into Redis. */
  source: 'bridge' | 'redis';
}

/** The bridge's answer, or undefined when no bridge answers `/requests/{id}` with a status. */
async function fromBridge(ctx: CliContext, id: string): Promise<RequestStatus | undefined> {
  try {
    const res = await fetch(`${ctx.routerUrl}/requests/${encodeURIComponent(id)}`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok && res.status !== 404) return undefined;
    const body = (await res.json()) as Partial<RequestStatus> & Record<string, unknown>;
    if (typeof body.state !== 'string') return undefined;
    return { ...body, request_id: id, state: body.state, source: 'bridge' };
  } catch {
    return undefined;
  }
}

/** Mean run time of the queue's last finished jobs (null without any). */
async function meanRunMs(q: Queue<InferenceJobData>): Promise<number | null> {
  const done = (await q.getJobs(['completed'], 0, 19)).filter((j) => j?.processedOn && j.finishedOn);
  if (done.length === 0) return null;
  return done.reduce((s, j) => s + (j.finishedOn! - j.processedOn!), 0) / done.length;
}

async function concurrencyOf(ctx: CliContext, node: string): Promise<number> {
  const raw = await ctx.redis().hget(ctx.n.health, node);
  try {
    const c = (JSON.parse(raw ?? '{}') as { concurrency?: unknown }).concurrency;
    return typeof c === 'number' && c >= 1 ? c : 1;
  } catch {
    return 1;
  }
}

/** Jobs ahead of this one on its node, plus one (BullMQ runs `wait` before `prioritized`). */
async function positionOf(ctx: CliContext, q: Queue<InferenceJobData>, jobId: string, state: string): Promise<number | undefined> {
  const redis = ctx.redis();
  const waitLen = await redis.llen(q.toKey('wait'));
  if (state === 'prioritized') {
    const rank = await redis.zrank(q.toKey('prioritized'), jobId);
    return rank === null ? undefined : waitLen + rank + 1;
  }
  // The wait list is taken from its tail.
  const ids = await redis.lrange(q.toKey('wait'), 0, -1);
  const i = ids.indexOf(jobId);
  return i === -1 ? undefined : ids.length - i;
}

async function fromJob(ctx: CliContext, id: string, node: string): Promise<RequestStatus> {
  const q = new Queue<InferenceJobData>(node, { prefix: ctx.n.nodeQueuePrefix, connection: ctx.redis() }, HeldConnection);
  try {
    const job = await Job.fromId<InferenceJobData>(q, jobIdFor(id));
    const base = { request_id: id, node_id: node, source: 'redis' as const };
    if (!job) return { ...base, state: 'held' };
    const state = await job.getState();
    const extra = { model: job.data.request.model, attempt: job.data.attempt, routing: job.data.routing };
    if (state === 'active') {
      const mean = await meanRunMs(q);
      const started = job.processedOn ?? Date.now();
      return { ...base, ...extra, state: 'running', started_at: started, eta_done_ms: mean === null ? null : Math.max(0, mean - (Date.now() - started)) };
    }
    if (state === 'completed' || state === 'failed') {
      const final = job.returnvalue as InferenceResponse | undefined;
      return { ...base, ...extra, state: 'done', eta_done_ms: 0, error: final?.error?.code ?? (state === 'failed' ? 'backend_error' : null) };
    }
    const position = await positionOf(ctx, q, job.id!, state);
    const [mean, slots] = await Promise.all([meanRunMs(q), concurrencyOf(ctx, node)]);
    const eta = mean === null || position === undefined ? null : Math.ceil(position / slots) * mean;
    return { ...base, ...extra, state: 'waiting', position, eta_done_ms: eta };
  } finally {
    await q.close();
  }
}

/** Where a request is, from Redis alone. */
export async function lookupInRedis(ctx: CliContext, id: string): Promise<RequestStatus> {
  const rec = await ctx.redis().hgetall(ctx.n.requestKey(id));
  if (rec['final'] !== undefined) {
    const final = JSON.parse(rec['final']) as InferenceResponse;
    const done: RequestStatus = { request_id: id, state: 'done', eta_done_ms: 0, error: final.error?.code ?? null, source: 'redis' };
    const node = final.node_id ?? rec['node'];
    if (node !== undefined) done.node_id = node;
    if (final.model !== undefined) done.model = final.model;
    if (final.routing !== undefined) done.routing = final.routing;
    if (final.attempt !== undefined) done.attempt = final.attempt;
    return done;
  }
  if (rec['node'] !== undefined) return fromJob(ctx, id, rec['node']);
  if (rec['entry'] !== undefined) return { request_id: id, state: 'held', eta_done_ms: null, source: 'redis' };
  return { request_id: id, state: 'unknown', source: 'redis' };
}

export function describe(s: RequestStatus): string {
  const eta = s.eta_done_ms === undefined || s.eta_done_ms === null || s.state === 'done' ? '' : ` (answer in ~${duration(s.eta_done_ms)})`;
  const on = s.node_id ?? '?';
  switch (s.state) {
    case 'unknown':
      return `request ${s.request_id}: not known (never sent, or answered over 24 h ago)`;
    case 'held':
      return `request ${s.request_id}: held by the bridge: not on a node yet (no eligible node can take it now)`;
    case 'waiting':
      return `request ${s.request_id}: waiting on ${on}${s.position !== undefined ? `, position ${s.position}` : ''}${eta}`;
    case 'running':
      return `request ${s.request_id}: running on ${on}${s.started_at ? ` for ${duration(Date.now() - s.started_at)}` : ''}${s.attempt ? `, attempt ${s.attempt}` : ''}${eta}`;
    case 'done':
      return s.error
        ? `request ${s.request_id}: answered with error ${s.error}${s.node_id ? ` (on ${s.node_id})` : ''}`
        : `request ${s.request_id}: done on ${on}${s.routing ? ` (${s.routing})` : ''}`;
  }
}

export const status: Command = {
  name: 'status',
  summary: 'where a request is: held, waiting on a node at a position, running, done; with an ETA',
  usage: 'ID [--json]',
  help: `Where request ID is now: held by the bridge (not on a node yet), waiting on a node at a
position in its queue, running, or done (with its error, if any); with the expected time to
its answer. Asks the bridge (GET /requests/ID on --router); when no bridge answers that, looks
into Redis directly (the request record and its BullMQ job; the ETA is then the node's recent
job times). Exit code 1 when ID is not known.

  --json    the status document (the bridge's fields: state, node_id, position, eta_done_ms, ...)

Example: orion status r-1`,
  options: {},
  async run(ctx, values, args) {
    const id = args[0];
    if (!id || args.length > 1) throw new UsageError('status needs exactly one request id');
    if (!isValidRequestId(id)) throw new UsageError(`'${id}' is not a request id (1-128 of A-Z a-z 0-9 . _ -)`);
    const s = (await fromBridge(ctx, id)) ?? (await lookupInRedis(ctx, id));
    ctx.out(values['json'] ? JSON.stringify(s, null, 2) : describe(s));
    return s.state === 'unknown' ? 1 : 0;
  },
};
