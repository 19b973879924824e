/**
 * What every program watches on Redis itself, at start and then periodically: its clock (the
 * offset every deadline and freshness judgement uses) and its `maxmemory-policy` (no work under
 * one that evicts).
 */
import type { Redis } from 'ioredis';
import type { Logger } from './logger.js';
import { RedisClock, clockWarning } from './redis-clock.js';
import { PolicyWatch, policyView, type PolicyState } from './redis-policy.js';

/** How long one round of checks may wait on Redis. */
const CHECK_TIMEOUT_MS = 3000;

function bounded<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<undefined>((resolve) => (t = setTimeout(() => resolve(undefined), ms)))]).finally(() => clearTimeout(t));
}

export class RedisWatch {
  readonly clock: RedisClock;
  readonly policy: PolicyWatch;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private failing = false;

  constructor(
    redis: Redis,
    private readonly log: Logger,
    private readonly everyMs: number,
    onPolicy?: (s: PolicyState) => void,
  ) {
    this.clock = new RedisClock(redis, log);
    this.policy = new PolicyWatch(redis, log, onPolicy);
  }

  /** One round: clock sample and policy read, each bounded; failures are logged once per outage. */
  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const results = await Promise.allSettled([bounded(this.clock.sample(), CHECK_TIMEOUT_MS), bounded(this.policy.check(), CHECK_TIMEOUT_MS)]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed && !this.failing) this.log.warn({ err: String((failed.reason as Error)?.message ?? failed.reason) }, 'redis clock or policy not read; trying again later');
      this.failing = failed !== undefined;
    } finally {
      this.busy = false;
    }
  }

  /** First round now (bounded, with two more clock samples to choose from), then every `everyMs`. */
  async start(): Promise<void> {
    await this.check();
    for (let i = 0; i < 2; i++) await bounded(this.clock.sample(), CHECK_TIMEOUT_MS).catch(() => undefined);
    this.timer ??= setInterval(() => void this.check(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The extra `/health` key: policy, whether work is taken, and the clock offset. */
  view(): Record<string, unknown> {
    const off = this.clock.offsetMs();
    const warning = clockWarning(off);
    return { ...policyView(this.policy.current()), clock_offset_ms: off ?? null, ...(warning ? { clock_warning: warning } : {}) };
  }
}
