/**
 * BullMQ reports connection trouble as 'error' events, one per retry: an `OutageLog` logs the
 * first of a source and then nothing more from it for 30 s, so an outage reads as one line per
 * source (and one more every 30 s while it lasts).
 */
import type { Logger } from '../lib/logger.js';

/** How long a source stays quiet after it was logged. */
const QUIET_MS = 30_000;

export class OutageLog {
  /** Source -> when it was last logged (ms). */
  private readonly loggedAt = new Map<string, number>();

  constructor(private readonly log: Logger) {}

  /** An 'error' listener (or a `.catch`) for `source`. */
  listener(source: string): (err: Error) => void {
    return (err: Error) => {
      const now = Date.now();
      if (now - (this.loggedAt.get(source) ?? -Infinity) < QUIET_MS) return;
      this.loggedAt.set(source, now);
      this.log.warn({ source, err: err.message }, 'queue error (Redis unreachable?); retrying');
    };
  }
}
