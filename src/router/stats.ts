/**
 * The bridge's counters: this process's since it started (the first four keys of `/stats`,
 * as the guide shows them), and the same increments added in Redis to `{p}:stats` (every
 * bridge) and `{p}:stats:{consumer}` (this one), one pipeline per flush.
 */
import type { Redis } from 'ioredis';
import type { Routing } from '../contracts/types.js';
import type { ErrorCode } from '../lib/errors.js';
import type { Names } from '../lib/names.js';
import type { RouterMetrics } from './metrics.js';

/** Counter names, in the order `/stats` shows them. */
export const COUNTERS = [
  'total_routed',
  'sticky_hits',
  'fallbacks',
  'errors',
  'timeouts',
  'rerouted',
  'duplicates',
  'anticipated',
  'spills',
  'cold_loads',
  'avoided_cold_loads',
  'moves',
  'keep_warm',
  'ram_unloads',
] as const;
export type CounterName = (typeof COUNTERS)[number];
export type Counts = Record<CounterName, number>;

export function zeroCounts(): Counts {
  return Object.fromEntries(COUNTERS.map((c) => [c, 0])) as Counts;
}

/** Counts from a Redis hash (missing fields are 0). */
export function countsOf(hash: Record<string, string>): Counts {
  const out = zeroCounts();
  for (const c of COUNTERS) {
    const v = Number(hash[c] ?? 0);
    out[c] = Number.isFinite(v) ? v : 0;
  }
  return out;
}

export class BridgeStats {
  private readonly local = zeroCounts();
  private pending = zeroCounts();
  private dirty = false;

  constructor(
    private readonly n: Names,
    private readonly consumer: string,
    private readonly metrics?: RouterMetrics,
  ) {}

  private add(c: CounterName, by = 1): void {
    this.local[c] += by;
    this.pending[c] += by;
    this.dirty = true;
  }

  /** A request placed on a node queue for the first time. */
  routed(node: string, routing: Routing, latencyMs: number, anticipated = false): void {
    this.add('total_routed');
    this.add(routing === 'sticky' ? 'sticky_hits' : 'fallbacks');
    if (anticipated) this.add('anticipated');
    this.metrics?.routed.inc({ node, routing });
    this.metrics?.dispatchLatency.observe(Math.max(0, latencyMs) / 1000);
  }

  /**
   * What the balanced rule did with a placement (first or moved): `spill` = not the guide's
   * node; `coldLoad` = the node must load the model first; `avoidedColdLoad` = a warm node was
   * chosen over a cold one with a free slot because waiting was cheaper.
   */
  balanced(node: string, d: { spill: boolean; coldLoad: boolean; avoidedColdLoad: boolean }): void {
    if (d.spill) {
      this.add('spills');
      this.metrics?.spills.inc({ node });
    }
    if (d.coldLoad) {
      this.add('cold_loads');
      this.metrics?.coldLoads.inc({ node });
    }
    if (d.avoidedColdLoad) {
      this.add('avoided_cold_loads');
      this.metrics?.avoidedColdLoads.inc();
    }
  }

  /** A waiting job moved to a node that can start it sooner (not a re-route, not an attempt). */
  moved(from: string, to: string, gainMs: number): void {
    this.add('moves');
    this.metrics?.moves.inc({ from, to });
    this.metrics?.moveGain.observe(Math.max(0, gainMs) / 1000);
  }

  /** A keep-alive renewal sent for the last warm copy of a model. */
  keptWarm(node: string): void {
    this.add('keep_warm');
    this.metrics?.keepWarm.inc({ node });
  }

  /** An idle model was asked to unload on `node`, over its RAM limit. */
  ramUnload(node: string): void {
    this.add('ram_unloads');
    this.metrics?.ramUnloads.inc({ node });
  }

  /** How many requests this bridge holds for lack of a node, now. */
  holding(count: number): void {
    this.metrics?.waiting.set(count);
  }

  /** A request this bridge could not place, answered with `code`. */
  error(code: ErrorCode): void {
    this.add('errors');
    this.metrics?.errors.inc({ code });
  }

  /** A request this bridge answered `timeout` (placed or not). */
  timeout(): void {
    this.add('timeouts');
    this.metrics?.timeouts.inc();
  }

  rerouted(reason: 'notice' | 'dead_node' | 'unavailable_node' | 'drained_node'): void {
    this.add('rerouted');
    this.metrics?.rerouted.inc({ reason });
  }

  duplicate(): void {
    this.add('duplicates');
    this.metrics?.duplicates.inc();
  }

  snapshot(): Counts {
    return { ...this.local };
  }

  /** Add what was counted since the last flush to the Redis hashes (one pipeline). */
  async flush(redis: Redis): Promise<void> {
    if (!this.dirty) return;
    const delta = this.pending;
    this.pending = zeroCounts();
    this.dirty = false;
    const pipe = redis.pipeline();
    for (const c of COUNTERS) {
      if (delta[c] === 0) continue;
      pipe.hincrby(this.n.stats, c, delta[c]);
      pipe.hincrby(this.n.bridgeStatsKey(this.consumer), c, delta[c]);
    }
    try {
      const res = await pipe.exec();
      const failed = res?.find(([e]) => e);
      if (failed) throw failed[0];
    } catch (err) {
      // Put it back: counted next time.
      for (const c of COUNTERS) this.pending[c] += delta[c];
      this.dirty = true;
      throw err;
    }
  }
}
