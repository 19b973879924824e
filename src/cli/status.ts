/**
 * `orion status ID`: where a request is. The bridge answers it (`GET /requests/{id}`, SPEC.md
 * section 8); when no bridge answers that, the CLI finds out from Redis itself: the request
 * record (`{p}:request:{id}`: owner node, final answer, held mark) and the BullMQ job on the
 * owner's queue (state, position, start time), with an ETA from the queue's recent jobs.
 */
import { Job, Queue } from 'bullmq';
import type { InferenceResponse } from '../contracts/types.js';
import type { InferenceJobData } from '../lib/bus.js';
import { isValidRequestId, jobIdFor } from '../lib/names.js';
import { UsageError, type CliContext, type Command } from './context.js';
import { duration } from './format.js';

export type RequestState = 'unknown' | 'received' | 'held' | 'waiting' | 'running' | 'done' | 'failed';

export interface RequestStatus {
  request_id: string;
  state: RequestState;
  node?: string;
  /** 1 = next to start on its node. */
  position?: number;
  /** Expected time until it finishes (rough: the node's recent job times). */
  eta_ms?: number | null;
  /** For running: since when (ms since epoch). */
  started_at?: number;
  attempt?: number;
  routing?: string;
  final?: InferenceResponse;
  failed_reason?: string;
  /** Who answered: the bridge's endpoint or the CLI's own look into Redis. */
  source: 'bridge' | 'redis';
}

/** The bridge's answer, or undefined when no bridge serves `/requests/{id}`. */
async function fromBridge(ctx: CliContext, id: string): Promise<RequestStatus | undefined> {
  try {
    const res = await fetch(`${ctx.routerUrl}/requests/${encodeURIComponent(id)}`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return undefined;
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
  const q = new Queue<InferenceJobData>(node, { prefix: ctx.n.nodeQueuePrefix, connection: ctx.redis() });
  try {
    const job = await Job.fromId<InferenceJobData>(q, jobIdFor(id));
    const base = { request_id: id, node, source: 'redis' as const };
    if (!job) return { ...base, state: 'received' };
    const state = await job.getState();
    const extra = { attempt: job.data.attempt, routing: job.data.routing };
    if (state === 'active') {
      const mean = await meanRunMs(q);
      const started = job.processedOn ?? Date.now();
      return { ...base, ...extra, state: 'running', started_at: started, eta_ms: mean === null ? null : Math.max(0, mean - (Date.now() - started)) };
    }
    if (state === 'completed') return { ...base, ...extra, state: 'done', final: job.returnvalue as InferenceResponse | undefined };
    if (state === 'failed') return { ...base, ...extra, state: 'failed', failed_reason: job.failedReason };
    const position = await positionOf(ctx, q, job.id!, state);
    const [mean, slots] = await Promise.all([meanRunMs(q), concurrencyOf(ctx, node)]);
    const eta = mean === null || position === undefined ? null : Math.ceil(position / slots) * mean;
    return { ...base, ...extra, state: 'waiting', position, eta_ms: eta };
  } finally {
    await q.close();
  }
}

/** Where a request is, from Redis alone. */
export async function lookupInRedis(ctx: CliContext, id: string): Promise<RequestStatus> {
  const rec = await ctx.redis().hgetall(ctx.n.requestKey(id));
  if (rec['final'] !== undefined) {
    const final = JSON.parse(rec['final']) as InferenceResponse;
    return { request_id: id, state: final.error ? 'failed' : 'done', node: final.node_id ?? rec['node'], final, source: 'redis' };
  }
  if (rec['node'] !== undefined) return fromJob(ctx, id, rec['node']);
  if (rec['entry'] !== undefined) return { request_id: id, state: rec['waiting'] === '1' ? 'held' : 'received', source: 'redis' };
  return { request_id: id, state: 'unknown', source: 'redis' };
}

export function describe(s: RequestStatus): string {
  const eta = s.eta_ms === undefined || s.eta_ms === null ? '' : ` (ETA ~${duration(s.eta_ms)})`;
  switch (s.state) {
    case 'unknown':
      return `request ${s.request_id}: not known (never sent, or answered over 24 h ago)`;
    case 'received':
      return `request ${s.request_id}: received, not placed on a node yet`;
    case 'held':
      return `request ${s.request_id}: held by the bridge: no eligible node can take it now`;
    case 'waiting':
      return `request ${s.request_id}: waiting on ${s.node}${s.position !== undefined ? `, position ${s.position}` : ''}${eta}`;
    case 'running':
      return `request ${s.request_id}: running on ${s.node}${s.started_at ? ` for ${duration(Date.now() - s.started_at)}` : ''}${s.attempt ? `, attempt ${s.attempt}` : ''}${eta}`;
    case 'done':
      return `request ${s.request_id}: done on ${s.node ?? s.final?.node_id ?? '?'}${s.final?.routing ? ` (${s.final.routing})` : ''}${s.final?.eval_count !== undefined ? `, ${s.final.eval_count} tokens` : ''}`;
    case 'failed':
      return `request ${s.request_id}: failed${s.node ? ` on ${s.node}` : ''}: ${s.final?.error ? `${s.final.error.code}: ${s.final.error.message}` : (s.failed_reason ?? '?')}`;
  }
}

export const status: Command = {
  name: 'status',
  summary: 'where a request is: held, waiting on a node at a position, running, done; with an ETA',
  usage: 'ID [--json]',
  help: `Where request ID is now: received, held (no eligible node), waiting on a node at a
position in its queue, running (for how long), done or failed; with a rough ETA from the node's
recent jobs. Asks the bridge (GET /requests/ID on --router); without an answer from it, looks
into Redis directly (the request record and its BullMQ job). Exit code 1 when ID is not known.

  --json    the status document

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
