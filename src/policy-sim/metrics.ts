/**
 * What a run measures. Times are simulated ms.
 * - TTFT: arrival to first token (slot wait, load, prompt); end to end: arrival to last token.
 * - Cold loads: model loads the nodes performed. Avoidable: placed on a node without the model
 *   while a node with it loaded (ground truth, eligible) would have started the job sooner.
 * - Idle warm: time during which, for some model, a node with it loaded sat with a free slot and
 *   nothing queued while a request for that model waited in another node's queue (summed over
 *   models; nodes excluded for heat or RAM do not count); "beyond a heartbeat" counts only the part of each such stretch past 5 s.
 */
import type { Job, SimNode } from './cluster.js';
import { MODELS } from './workload.js';

export const HEARTBEAT_GRACE_MS = 5_000;

/** Time to first token and end to end (p50, p99, s) and the share of first tokens within 10 s. */
export interface LatencyMetrics {
  ttftP50: number;
  ttftP99: number;
  e2eP50: number;
  e2eP99: number;
  within10s: number;
}

export interface RunMetrics extends LatencyMetrics {
  requests: number;
  coldLoads: number;
  avoidableColdLoads: number;
  idleWarmS: number;
  idleWarmBeyondS: number;
  busyMaxS: number;
  busyMeanS: number;
  horizonS: number;
  spills: number;
  avoidedColdLoads: number;
  moves: number;
}

export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i]!;
}

/** The latency figures from each request's TTFT and end to end (ms, any order; sorted here). */
export function latencies(ttft: Float64Array, e2e: Float64Array): LatencyMetrics {
  let within = 0;
  for (const t of ttft) if (t <= 10_000) within++;
  ttft.sort();
  e2e.sort();
  return {
    ttftP50: percentile(ttft, 0.5) / 1000,
    ttftP99: percentile(ttft, 0.99) / 1000,
    e2eP50: percentile(e2e, 0.5) / 1000,
    e2eP99: percentile(e2e, 0.99) / 1000,
    within10s: ttft.length === 0 ? 0 : within / ttft.length,
  };
}

export class IdleWarmMeter {
  private readonly idle = new Map<string, number>();
  private readonly waitingN = new Map<string, number>();
  private readonly warm = new Map<string, Set<SimNode>>();
  private readonly idleOf: Set<string>[];
  private readonly warmOf: Set<string>[];
  private readonly queued = new Set<SimNode>();
  private readonly since = new Map<string, number>();
  private last = 0;
  totalMs = 0;
  beyondMs = 0;

  constructor(nodes: readonly SimNode[]) {
    this.idleOf = nodes.map(() => new Set());
    this.warmOf = nodes.map(() => new Set());
    for (const m of MODELS) {
      this.idle.set(m, 0);
      this.waitingN.set(m, 0);
      this.warm.set(m, new Set());
    }
  }

  warmNodes(model: string): ReadonlySet<SimNode> {
    return this.warm.get(model) ?? new Set();
  }

  anyWaiting(): boolean {
    return this.queued.size > 0;
  }

  queuedOn(): Iterable<SimNode> {
    return this.queued;
  }

  /** Accumulate up to `now` for every model whose condition holds. */
  advance(now: number): void {
    const dt = now - this.last;
    if (dt > 0) this.totalMs += dt * this.since.size;
    this.last = Math.max(this.last, now);
  }

  waiting(model: string, delta: number, now: number): void {
    this.advance(now);
    this.waitingN.set(model, (this.waitingN.get(model) ?? 0) + delta);
    this.check(model, now);
  }

  /** Recount node `n`'s part after any change to its queue, slots or copies. */
  update(n: SimNode, now: number): void {
    this.advance(now);
    if (n.queue.length > 0) this.queued.add(n);
    else this.queued.delete(n);
    // Only a node the bridge may route to counts: an excluded one cannot be given work.
    const free = n.running < n.slots && n.queue.length === 0 && !n.hot && !n.full;
    if (this.unchanged(n, free, now)) return;
    const idleNow = new Set<string>();
    const warmNow = new Set<string>();
    for (const [m, c] of n.copies) {
      warmNow.add(m);
      if (free && c.readyAt <= now && c.expiresAt > now) idleNow.add(m);
    }
    const changed = new Set<string>();
    diff(this.warmOf[n.index]!, warmNow, (m, add) => {
      const s = this.warm.get(m) ?? new Set();
      this.warm.set(m, s);
      if (add) s.add(n);
      else s.delete(n);
    });
    diff(this.idleOf[n.index]!, idleNow, (m, add) => {
      this.idle.set(m, (this.idle.get(m) ?? 0) + (add ? 1 : -1));
      changed.add(m);
    });
    this.warmOf[n.index] = warmNow;
    this.idleOf[n.index] = idleNow;
    for (const m of changed) this.check(m, now);
  }

  /** Whether node `n`'s warm and idle models are still those counted (the common case: no sets built). */
  private unchanged(n: SimNode, free: boolean, now: number): boolean {
    const warm = this.warmOf[n.index]!;
    const idle = this.idleOf[n.index]!;
    if (warm.size !== n.copies.size) return false;
    let idleCount = 0;
    for (const [m, c] of n.copies) {
      if (!warm.has(m)) return false;
      const isIdle = free && c.readyAt <= now && c.expiresAt > now;
      if (isIdle !== idle.has(m)) return false;
      if (isIdle) idleCount++;
    }
    return idleCount === idle.size;
  }

  private check(model: string, now: number): void {
    const on = (this.idle.get(model) ?? 0) > 0 && (this.waitingN.get(model) ?? 0) > 0;
    const start = this.since.get(model);
    if (on && start === undefined) this.since.set(model, now);
    else if (!on && start !== undefined) {
      this.since.delete(model);
      this.beyondMs += Math.max(0, now - start - HEARTBEAT_GRACE_MS);
    }
  }
}

function diff(before: ReadonlySet<string>, after: ReadonlySet<string>, f: (m: string, add: boolean) => void): void {
  for (const m of before) if (!after.has(m)) f(m, false);
  for (const m of after) if (!before.has(m)) f(m, true);
}

/**
 * What `summarize` needs of each job, kept as numbers once the job has ended: a million Job
 * objects kept to the end of a run cost the garbage collector more than the simulation.
 */
export class Outcomes {
  private ttftMs: Float64Array = new Float64Array(1 << 12);
  private e2eMs: Float64Array = new Float64Array(1 << 12);
  count = 0;
  avoidable = 0;
  /** When the last job ended (ms; 1 before any). */
  horizon = 1;

  record(j: Job): void {
    if (this.count === this.ttftMs.length) {
      this.ttftMs = grow(this.ttftMs);
      this.e2eMs = grow(this.e2eMs);
    }
    this.ttftMs[this.count] = j.firstToken - j.arrival;
    this.e2eMs[this.count] = j.end - j.arrival;
    this.count++;
    if (j.avoidable) this.avoidable++;
    if (j.end > this.horizon) this.horizon = j.end;
  }

  latencies(): LatencyMetrics {
    return latencies(this.ttftMs.slice(0, this.count), this.e2eMs.slice(0, this.count));
  }
}

function grow(a: Float64Array): Float64Array {
  const b = new Float64Array(a.length * 2);
  b.set(a);
  return b;
}

export function summarize(
  outcomes: Outcomes,
  nodes: readonly SimNode[],
  horizon: number,
  meter: IdleWarmMeter,
  counters: { spills: number; avoidedColdLoads: number; moves: number },
): RunMetrics {
  let busyMax = 0;
  let busySum = 0;
  let loads = 0;
  for (const n of nodes) {
    busyMax = Math.max(busyMax, n.busyMs);
    busySum += n.busyMs;
    loads += n.loads;
  }
  return {
    requests: outcomes.count,
    ...outcomes.latencies(),
    coldLoads: loads,
    avoidableColdLoads: outcomes.avoidable,
    idleWarmS: meter.totalMs / 1000,
    idleWarmBeyondS: meter.beyondMs / 1000,
    busyMaxS: busyMax / 1000,
    busyMeanS: busySum / nodes.length / 1000,
    horizonS: horizon / 1000,
    ...counters,
  };
}
