/**
 * Watches a running job's cancel key (`{p}:cancel:{request_id}`, SPEC.md section 9) and calls
 * `onCancel` once it appears. One EXISTS every `everyMs` per running job: a node runs one or
 * two jobs at once, so this costs a few commands a second and stops a cancelled generation
 * within about `everyMs`. Checks never overlap; a failed check (Redis away) is skipped, not
 * fatal: the deadline still holds.
 */
import type { Redis } from 'ioredis';
import { Periodic } from '../lib/periodic.js';

/** How often a running job looks for its cancel key. */
const CANCEL_POLL_MS = 200;

export class CancelWatch {
  private readonly periodic: Periodic;
  private stopped = false;

  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    private readonly onCancel: () => void,
    everyMs = CANCEL_POLL_MS,
  ) {
    this.periodic = new Periodic(everyMs, () => this.check());
    this.periodic.start();
  }

  private async check(): Promise<void> {
    let found = false;
    try {
      found = (await this.redis.exists(this.key)) === 1;
    } catch {
      // Redis unreachable for a moment: look again next time.
    }
    if (this.stopped || !found) return;
    this.stop();
    this.onCancel();
  }

  stop(): void {
    this.stopped = true;
    void this.periodic.stop();
  }
}
