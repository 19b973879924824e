/**
 * `orion status ID`: where a request is. The bridge answers it (`GET /requests/{id}`, SPEC.md
 * section 8); when no bridge answers that, the CLI reads Redis itself with the bridge's own
 * code (src/router/where.ts: the request record and the job on the owner's queue), with an ETA
 * from the queue's recent jobs instead of the bridge's routing figures.
 */
import { Queue } from 'bullmq';
import { HeldConnection } from '../lib/bull.js';
import type { InferenceJobData } from '../lib/bus.js';
import { isValidRequestId } from '../lib/names.js';
import { requestStatus, type EtaSource, type RequestStatus as BridgeStatus } from '../router/where.js';
import { UsageError, type CliContext, type Command } from './context.js';
import { duration } from './format.js';

/** The bridge's `GET /requests/{id}` document, and who answered: the bridge, or the CLI's own look into Redis. */
type RequestStatus = BridgeStatus & { source: 'bridge' | 'redis' };

/** The bridge's answer, or undefined when no bridge answers `/requests/{id}` with a status. */
async function fromBridge(ctx: CliContext, id: string): Promise<RequestStatus | undefined> {
  try {
    const res = await fetch(`${ctx.routerUrl}/requests/${encodeURIComponent(id)}`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok && res.status !== 404) return undefined;
    const body = (await res.json()) as BridgeStatus;
    if (typeof body.state !== 'string') return undefined;
    return { ...body, request_id: id, source: 'bridge' };
  } catch {
    return undefined;
  }
}

/** Mean run time of the queue's last finished jobs (undefined without any). */
async function meanRunMs(q: Queue<InferenceJobData>): Promise<number | undefined> {
  const done = (await q.getJobs(['completed'], 0, 19)).filter((j) => j?.processedOn && j.finishedOn);
  if (done.length === 0) return undefined;
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

/** ETAs from the request's node's recent jobs: their mean run time, as many at once as the node runs. */
async function recentJobsEta(ctx: CliContext, id: string): Promise<EtaSource> {
  const node = await ctx.redis().hget(ctx.n.requestKey(id), 'node');
  let mean: number | undefined;
  let slots = 1;
  if (node !== null) {
    const q = new Queue<InferenceJobData>(node, { prefix: ctx.n.nodeQueuePrefix, connection: ctx.redis() }, HeldConnection);
    try {
      [mean, slots] = await Promise.all([meanRunMs(q), concurrencyOf(ctx, node)]);
    } finally {
      await q.close();
    }
  }
  return {
    startIn: (_node, _model, ahead) => (mean === undefined ? undefined : Math.floor(ahead / slots) * mean),
    answerMs: () => mean,
    isHeld: () => false,
  };
}

/** Where a request is, read from Redis by the same code the bridge answers with. */
async function fromRedis(ctx: CliContext, id: string): Promise<RequestStatus> {
  const eta = await recentJobsEta(ctx, id);
  return { ...(await requestStatus({ redis: ctx.redis(), n: ctx.n, eta }, id)), source: 'redis' };
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
      return `request ${s.request_id}: running on ${on}${s.started_at ? ` for ${duration(Date.now() - Date.parse(s.started_at))}` : ''}${s.attempt ? `, attempt ${s.attempt}` : ''}${eta}`;
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
    const s = (await fromBridge(ctx, id)) ?? (await fromRedis(ctx, id));
    ctx.out(values['json'] ? JSON.stringify(s, null, 2) : describe(s));
    return s.state === 'unknown' ? 1 : 0;
  },
};
