/**
 * Redis refusals that pass on their own: out of memory under `noeviction` (`OOM command not
 * allowed`, or a MULTI aborted by one), a replica that was the master a moment ago
 * (`READONLY`), a Redis still loading its data (`LOADING`), a replica cut off from its master
 * (`MASTERDOWN`). A write refused for one of these is tried again once Redis takes writes;
 * anything else is the caller's to handle.
 */
import type { Logger } from './logger.js';
import { sleep } from './time.js';

const PASSING = /^(OOM|READONLY|LOADING|MASTERDOWN|EXECABORT|TRYAGAIN)\b|OOM command not allowed|You can't write against a read only replica/;

function isPassingRefusal(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return PASSING.test(msg);
}

export interface RetryOptions {
  /** What is written, for the log. */
  what: string;
  log: Logger;
  /** Stop trying at this time (ms on this machine's monotonic view: Date.now()). */
  giveUpAt: number;
  /** First pause between tries; doubles up to `maxDelayMs`. @defaultValue 100 */
  delayMs?: number;
  /** @defaultValue 1000 */
  maxDelayMs?: number;
}

/**
 * Run `fn`; while Redis refuses it for a passing reason, wait and run it again, until
 * `giveUpAt`. Resolves with its value; rejects with its last error otherwise.
 */
export async function whilePassing<T>(fn: () => Promise<T>, o: RetryOptions): Promise<T> {
  let delay = o.delayMs ?? 100;
  let tries = 0;
  for (;;) {
    try {
      const v = await fn();
      if (tries > 0) o.log.info({ what: o.what, tries: tries + 1 }, 'redis took the write again');
      return v;
    } catch (err) {
      if (!isPassingRefusal(err) || Date.now() + delay > o.giveUpAt) throw err;
      if (tries === 0) o.log.warn({ what: o.what, err: (err as Error).message }, 'redis refused a write for now (out of memory, failover, loading); trying again');
      tries++;
      await sleep(delay);
      delay = Math.min(delay * 2, o.maxDelayMs ?? 1000);
    }
  }
}
