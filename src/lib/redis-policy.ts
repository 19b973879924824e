/**
 * Redis's `maxmemory-policy`. ORION keeps its state in Redis (request streams, job hashes,
 * request records, locks): a policy that evicts keys (`allkeys-*`, `volatile-*`) loses requests
 * and answers silently, so under one every program refuses to take work until it is
 * `noeviction` again, and says so in its /health and logs.
 *
 * Read from `INFO memory`, which the least-privilege ACL users may run (docs/SECURITY.md), so
 * no refusal lands in Redis's ACL LOG; with INFO forbidden, with `CONFIG GET maxmemory-policy`;
 * where both are forbidden the policy is `unknown`, and work goes on.
 */
import type { Redis } from 'ioredis';
import type { Logger } from './logger.js';

export interface PolicyState {
  /** `noeviction`, `allkeys-lru`, ... or `unknown`. */
  policy: string;
  /** True when the policy evicts keys: no work is taken. */
  evicting: boolean;
  /** Where the policy was read. */
  source: 'config' | 'info' | 'none';
}

export const UNKNOWN_POLICY: PolicyState = { policy: 'unknown', evicting: false, source: 'none' };

export function isEvictingPolicy(policy: string): boolean {
  return /^(allkeys|volatile)-/.test(policy);
}

/** Read the policy now; never rejects (a Redis that cannot say gives `unknown`). */
async function readPolicy(redis: Redis): Promise<PolicyState> {
  try {
    const info = await redis.info('memory');
    const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
    if (policy) return { policy, evicting: isEvictingPolicy(policy), source: 'info' };
  } catch {
    // INFO forbidden or renamed away: CONFIG may still say.
  }
  try {
    const reply = (await redis.config('GET', 'maxmemory-policy')) as string[];
    const policy = reply[1];
    if (typeof policy === 'string' && policy) return { policy, evicting: isEvictingPolicy(policy), source: 'config' };
  } catch {
    // CONFIG forbidden too: unknown.
  }
  return UNKNOWN_POLICY;
}

/** The policy as last read, with a log line at every change. */
export class PolicyWatch {
  private state: PolicyState | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly log: Logger,
    private readonly onChange: (s: PolicyState) => void = () => undefined,
  ) {}

  current(): PolicyState {
    return this.state ?? UNKNOWN_POLICY;
  }

  /** Taking work is refused now. */
  refusing(): boolean {
    return this.current().evicting;
  }

  async check(): Promise<PolicyState> {
    const next = await readPolicy(this.redis);
    const before = this.state;
    // A read that failed (Redis down) keeps what was known.
    if (next.source === 'none' && before && before.source !== 'none' && this.redis.status !== 'ready') return before;
    this.state = next;
    if (before?.policy !== next.policy || before.evicting !== next.evicting) {
      this.announce(next, before);
      if (before !== undefined) this.onChange(next);
    }
    return next;
  }

  private announce(s: PolicyState, before: PolicyState | undefined): void {
    const f = { maxmemory_policy: s.policy, read_from: s.source };
    if (s.evicting) {
      this.log.error(f, `redis maxmemory-policy ${s.policy} evicts keys and would lose requests and answers: taking no work until it is noeviction (CONFIG SET maxmemory-policy noeviction)`);
    } else if (before?.evicting) {
      this.log.info(f, `redis maxmemory-policy is ${s.policy} now: taking work again`);
    } else if (s.source === 'none') {
      this.log.warn(f, 'redis maxmemory-policy cannot be read (CONFIG and INFO refused): make sure it is noeviction');
    } else if (s.policy !== 'noeviction') {
      this.log.warn(f, `redis maxmemory-policy ${s.policy}: noeviction is the one ORION is built for`);
    }
  }
}

/** What /health shows of the policy. */
export function policyView(s: PolicyState): { maxmemory_policy: string; evicting: boolean; taking_work: boolean } {
  return { maxmemory_policy: s.policy, evicting: s.evicting, taking_work: !s.evicting };
}
