/**
 * What every program watches on Redis itself, at start and then periodically: its clock (the
 * offset every deadline and freshness judgement uses) and its `maxmemory-policy` (no work under
 * one that evicts).
 */
import type { Redis } from 'ioredis';
import type { Logger } from './logger.js';
import { Periodic } from './periodic.js';
import { RedisClock, clockWarning } from './redis-clock.js';
import { PolicyWatch, policyView, type PolicyState } from './redis-policy.js';
import { waitUpTo } from './time.js';

/** How long one round of checks may wait on Redis. */
const CHECK_TIMEOUT_MS = 3000;

export class RedisWatch {
  readonly clock: RedisClock;
  readonly policy: PolicyWatch;
  private readonly periodic: Periodic;
  private failing = false;

  constructor(
    redis: Redis,
    private readonly log: Logger,
    everyMs: number,
    onPolicy?: (s: PolicyState) => void,
  ) {
    this.clock = new RedisClock(redis, log);
    this.policy = new PolicyWatch(redis, log, onPolicy);
    this.periodic = new Periodic(everyMs, () => this.checkOnce(), { unref: true });
  }

  /** One round: clock sample and policy read, each bounded; failures are logged once per outage. */
  check(): Promise<void> {
    return this.periodic.runNow();
  }

  private async checkOnce(): Promise<void> {
    const results = await Promise.allSettled([waitUpTo(this.clock.sample(), CHECK_TIMEOUT_MS), waitUpTo(this.policy.check(), CHECK_TIMEOUT_MS)]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed && !this.failing) this.log.warn({ err: String((failed.reason as Error)?.message ?? failed.reason) }, 'redis clock or policy not read; trying again later');
    this.failing = failed !== undefined;
  }

  /** First round now (bounded, with two more clock samples to choose from), then every `everyMs`. */
  async start(): Promise<void> {
    await this.check();
    for (let i = 0; i < 2; i++) await waitUpTo(this.clock.sample(), CHECK_TIMEOUT_MS).catch(() => undefined);
    this.periodic.start();
  }

  /** No round starts after this (one in progress ends on its own, bounded). */
  stop(): void {
    void this.periodic.stop();
  }

  /** The extra `/health` key: policy, whether work is taken, and the clock offset. */
  view(): Record<string, unknown> {
    const off = this.clock.offsetMs();
    const warning = clockWarning(off);
    return { ...policyView(this.policy.current()), clock_offset_ms: off ?? null, ...(warning ? { clock_warning: warning } : {}) };
  }
}
