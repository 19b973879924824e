/**
 * Redis's clock, as every program sees it: deadlines, freshness and queue times are judged on
 * Redis's `TIME`, never on the machine's own clock (SPEC.md section 7), so a node whose clock is
 * a minute off is neither late nor stale because of it.
 *
 * The offset (Redis time minus local time) is sampled with `TIME` at start and periodically,
 * corrected by half the round trip; `now()` is the local clock plus the offset of the recent
 * sample with the shortest round trip (Redis busy or far makes a sample less exact).
 */
import type { Redis } from 'ioredis';
import type { Logger } from './logger.js';

/** Samples kept to choose from. */
const SAMPLES = 5;
/** Past this much, the clock offset is worth a warning. */
export const CLOCK_WARN_MS = 2000;

export interface Clock {
  /** Milliseconds since the epoch on Redis's clock (the local clock until the first sample). */
  now(): number;
  /** Redis time minus local time, ms; undefined before the first sample. */
  offsetMs(): number | undefined;
}

export class RedisClock implements Clock {
  private offset: number | undefined;
  /** The last few samples; the offset is the one of the shortest round trip among them. */
  private readonly samples: { offset: number; rtt: number }[] = [];
  private warned = false;

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
  ) {}

  now(): number {
    return Date.now() + (this.offset ?? 0);
  }

  offsetMs(): number | undefined {
    return this.offset;
  }

  /** One `TIME` sample; a failure keeps the offset there is (and is the caller's to log). */
  async sample(): Promise<void> {
    const t0 = Date.now();
    const [sec, usec] = (await this.redis.time()) as [string | number, string | number];
    const t1 = Date.now();
    const redisMs = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    // The error of a sample is at most half its round trip: of the last SAMPLES, the one with
    // the shortest round trip wins (a busy moment does not move the clock; a clock that was
    // set is followed within SAMPLES samples).
    this.samples.push({ offset: Math.round(redisMs - (t0 + t1) / 2), rtt: t1 - t0 });
    if (this.samples.length > SAMPLES) this.samples.shift();
    this.offset = this.samples.reduce((best, x) => (x.rtt < best.rtt ? x : best)).offset;
    this.report();
  }

  private report(): void {
    const off = this.offset ?? 0;
    const far = Math.abs(off) > CLOCK_WARN_MS;
    if (far && !this.warned) {
      this.log.warn({ clock_offset_ms: off }, `this machine's clock is ${describeOffset(off)} Redis's: deadlines, freshness and queue times follow Redis's clock; fix the clock (NTP)`);
    } else if (!far && this.warned) {
      this.log.info({ clock_offset_ms: off }, "this machine's clock agrees with Redis's again");
    }
    this.warned = far;
  }
}

/** `60.0 s behind` / `1.5 s ahead of` for an offset (Redis minus local). */
export function describeOffset(offsetMs: number): string {
  const s = (Math.abs(offsetMs) / 1000).toFixed(1);
  return offsetMs > 0 ? `${s} s behind` : `${s} s ahead of`;
}

/** A warning for an offset past `CLOCK_WARN_MS`, else undefined. */
export function clockWarning(offsetMs: number | undefined): string | undefined {
  if (offsetMs === undefined || Math.abs(offsetMs) <= CLOCK_WARN_MS) return undefined;
  return `clock ${describeOffset(offsetMs)} Redis's`;
}
