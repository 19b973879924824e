/**
 * The bridge's endpoints as plain functions returning `{status, body}` (served by
 * src/lib/http.ts). Answers as the guide shows them, with more keys after the guide's.
 */
import type { Redis } from 'ioredis';
import type { HandlerResult } from '../lib/http.js';
import { ROUTER_GROUP, type Names } from '../lib/names.js';
import { clockWarning } from '../lib/redis-clock.js';
import { VERSION } from '../lib/version.js';
import { withTimeout } from '../lib/time.js';
import type { QueueDepth, RouterMetrics } from './metrics.js';
import type { Snapshot } from './registry.js';
import { countsOf, type Counts } from './stats.js';
import type { WhereContext } from './where.js';

export const SERVICE = 'orion-inference-router';

export interface HandlerContext {
  redis: Redis;
  n: Names;
  consumer: string;
  counts(): Counts;
  /** Requests held for lack of a node. */
  waiting(): number;
  /** Reroute notices not placed yet. */
  reroutesPending(): number;
  snapshot(): Snapshot;
  depths(): Promise<ReadonlyMap<string, QueueDepth>>;
  metrics: RouterMetrics;
  /** Jobs waiting and running in a node's queue, as the bridge counts them. */
  load?: (nodeId: string) => { waiting: number; running: number };
  /** Where `/requests/{id}` reads from. */
  where: WhereContext;
  /** `--routing`. */
  routing?: 'balanced' | 'guide';
  /** Readmit thresholds (`--readmit-temp`, `--readmit-ram`), shown for nodes in hysteresis. */
  readmit?: { temp: number; ram: number };
  /** Bound on the Redis reads behind /stats. @defaultValue 1000 */
  redisTimeoutMs?: number;
}

/** The guide's three keys, then `redis` (maxmemory-policy, whether work is taken, clock offset). */
export function healthHandler(redis?: () => Record<string, unknown>): HandlerResult {
  return { status: 200, body: { status: 'ok', service: SERVICE, version: VERSION, ...(redis ? { redis: redis() } : {}) } };
}

/**
 * `/stats`: the guide's four counters of this bridge first, then its other counters, and the
 * totals of every bridge (`cluster`) and of each (`bridges`) from Redis (null while Redis does
 * not answer).
 */
export async function statsHandler(ctx: HandlerContext): Promise<HandlerResult> {
  const c = ctx.counts();
  const ms = ctx.redisTimeoutMs ?? 1000;
  const [failedJobs, shared] = await Promise.all([
    withTimeout(ctx.depths(), ms, 'job counts')
      .then((d) => [...d.values()].reduce((sum, x) => sum + x.failed, 0))
      .catch(() => null),
    withTimeout(readShared(ctx), ms, 'cluster counters').catch(() => null),
  ]);
  const body = {
    total_routed: c.total_routed,
    sticky_hits: c.sticky_hits,
    fallbacks: c.fallbacks,
    errors: c.errors,
    consumer: ctx.consumer,
    waiting: ctx.waiting(),
    reroutes_pending: ctx.reroutesPending(),
    timeouts: c.timeouts,
    rerouted: c.rerouted,
    duplicates: c.duplicates,
    anticipated: c.anticipated,
    routing: ctx.routing ?? 'guide',
    spills: c.spills,
    cold_loads: c.cold_loads,
    avoided_cold_loads: c.avoided_cold_loads,
    moves: c.moves,
    keep_warm: c.keep_warm,
    ram_unloads: c.ram_unloads,
    failed_jobs: failedJobs,
    cluster: shared?.cluster ?? null,
    bridges: shared?.bridges ?? null,
  };
  return { status: 200, body };
}

async function readShared(ctx: HandlerContext): Promise<{ cluster: Counts; bridges: Record<string, Counts> }> {
  const { redis, n } = ctx;
  let consumers: string[] = [ctx.consumer];
  try {
    const info = (await redis.xinfo('CONSUMERS', n.requests, ROUTER_GROUP)) as unknown[][];
    consumers = [...new Set([...consumers, ...info.map((row) => String(row[row.indexOf('name') + 1]))])].sort();
  } catch {
    // No group yet: only this bridge.
  }
  const pipe = redis.pipeline().hgetall(n.stats);
  for (const name of consumers) pipe.hgetall(n.bridgeStatsKey(name));
  const res = (await pipe.exec()) ?? [];
  const bridges: Record<string, Counts> = {};
  consumers.forEach((name, i) => {
    bridges[name] = countsOf((res[i + 1]?.[1] ?? {}) as Record<string, string>);
  });
  return { cluster: countsOf((res[0]?.[1] ?? {}) as Record<string, string>), bridges };
}

/**
 * `/nodes`: every node of the registry, eligible ones first in routing order, then the others
 * by id; each is its health document as published plus `eligible` and, when false,
 * `excluded_reason`.
 */
export function nodesHandler(ctx: Pick<HandlerContext, 'snapshot' | 'readmit' | 'load'>): HandlerResult {
  const s = ctx.snapshot();
  const eligible = s.eligible.map((v) => v.health.node_id);
  const others = [...s.views.keys()].filter((id) => !s.views.get(id)!.eligible).sort();
  const body = [...eligible, ...others].map((id) => {
    const view = s.views.get(id)!;
    const doc: Record<string, unknown> = { ...(s.published.get(id) ?? view.health) };
    for (const k of ['eligible', 'excluded_reason', 'hysteresis', 'readmit_below', 'warning', 'queue_waiting', 'queue_running']) delete doc[k];
    const clock = clockWarning(typeof doc['clock_offset_ms'] === 'number' ? doc['clock_offset_ms'] : undefined);
    delete doc['clock_warning'];
    if (clock) doc['clock_warning'] = clock;
    doc['eligible'] = view.eligible;
    if (!view.eligible) doc['excluded_reason'] = view.excludedReason;
    if (view.hysteresis) {
      // Under the maximum again, but excluded until below the readmit threshold.
      doc['hysteresis'] = true;
      doc['readmit_below'] = view.excludedReason === 'temperature' ? ctx.readmit?.temp : ctx.readmit?.ram;
    }
    if (ctx.load) {
      // Jobs in the node's queue now (every bridge's), as this bridge routes by them.
      const l = ctx.load(id);
      doc['queue_waiting'] = l.waiting;
      doc['queue_running'] = l.running;
    }
    const instances = s.duplicates.get(id);
    if (instances) {
      // The others than the process whose document this is.
      doc['duplicate_instances'] = instances.filter((x) => x !== doc['instance_id']);
      doc['warning'] = `${instances.length} worker processes publish health as ${id}; give each its own --node-id`;
    }
    return doc;
  });
  return { status: 200, body };
}

export async function metricsHandler(ctx: Pick<HandlerContext, 'metrics'>): Promise<HandlerResult> {
  return { status: 200, body: await ctx.metrics.text(), contentType: ctx.metrics.contentType };
}
