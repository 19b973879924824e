/**
 * The last minutes of the cluster's counters, for the live page: every `stepMs` the counters
 * of every bridge (`{p}:stats`, one HGETALL) are sampled, and the page gets what changed in
 * each step (placements, errors, cold loads, ...). While Redis does not answer, this bridge's
 * own counters stand in (marked `local`), so the page still moves.
 */
import type { Redis } from 'ioredis';
import type { Names } from '../lib/names.js';
import { Periodic } from '../lib/periodic.js';
import { COUNTERS, countsOf, type Counts } from './stats.js';

export interface TimelinePoint {
  /** End of the step (ms since epoch). */
  t: number;
  /** Requests placed on a node queue in the step (sticky + fallback). */
  routed: number;
  sticky: number;
  /** Placements on a node without the model loaded: each is a model load there. */
  cold_loads: number;
  errors: number;
  timeouts: number;
  rerouted: number;
}

export interface TimelineView {
  step_ms: number;
  /** Oldest first. */
  points: TimelinePoint[];
  /** The counters since the cluster started (every bridge). */
  totals: Counts;
  /** True when the last sample came from this bridge alone (Redis did not answer). */
  local: boolean;
}

export interface TimelineOptions {
  redis: Redis;
  n: Names;
  /** This bridge's counters (when Redis does not answer). */
  local(): Counts;
  /** @defaultValue 5000 */
  stepMs?: number;
  /** Steps kept. @defaultValue 144 (12 minutes at 5 s) */
  keep?: number;
}

export class Timeline {
  private readonly points: TimelinePoint[] = [];
  private last: { counts: Counts; local: boolean } | undefined;
  private readonly periodic: Periodic;

  constructor(private readonly o: TimelineOptions) {
    this.periodic = new Periodic(o.stepMs ?? 5000, () => this.sample());
  }

  start(): void {
    void this.sample();
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** Take one sample now (tests; the timer calls it every step). */
  async sample(): Promise<void> {
    let counts: Counts;
    let local = false;
    try {
      counts = countsOf(await this.o.redis.hgetall(this.o.n.stats));
    } catch {
      counts = this.o.local();
      local = true;
    }
    const prev = this.last;
    this.last = { counts, local };
    // The first sample, or a switch between Redis's and this bridge's counters: no step to show.
    if (!prev || prev.local !== local) return;
    const d = (c: (typeof COUNTERS)[number]): number => Math.max(0, counts[c] - prev.counts[c]);
    this.points.push({
      t: Date.now(),
      routed: d('total_routed'),
      sticky: d('sticky_hits'),
      cold_loads: d('cold_loads'),
      errors: d('errors'),
      timeouts: d('timeouts'),
      rerouted: d('rerouted'),
    });
    if (this.points.length > (this.o.keep ?? 144)) this.points.shift();
  }

  view(): TimelineView {
    return { step_ms: this.o.stepMs ?? 5000, points: [...this.points], totals: this.last?.counts ?? this.o.local(), local: this.last?.local ?? true };
  }
}
