/**
 * BullMQ's connection wrapper, with one failure held instead of dropped.
 *
 * A `RedisConnection` starts connecting in its constructor and, should that start fail, emits
 * the failure as an 'error' event from a `.catch` of its own. Its `close()` removes every
 * listener. So a connection closed while it is still connecting, after a connect error (Redis
 * died as the program started or stopped), emits 'error' with nobody listening: EventEmitter
 * throws, and the `.catch` turns that into an unhandled rejection of a promise nobody holds.
 *
 * `HeldConnection` drops an 'error' emitted once nobody listens any more: the owner closed the
 * connection and already learned of the outage from the events it did listen to. Pass it as
 * the last constructor argument of every Queue and Worker. A Worker's blocking connection is
 * built by BullMQ itself and cannot be given one; `settled` below covers it.
 */
import { RedisConnection, type Queue, type Worker } from 'bullmq';
import type { Logger } from './logger.js';
import { waitUpTo } from './time.js';

/**
 * How long finished inference jobs stay in a node queue (for Bull Board and its retries): set
 * on every job the bridge adds and on each node's Worker, from here only.
 */
export const JOB_RETENTION = {
  removeOnComplete: { age: 3600, count: 1000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 5000 },
} as const;

export class HeldConnection extends RedisConnection {
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'error' && this.listenerCount('error') === 0) return false;
    return super.emit(event, ...args);
  }
}

/**
 * Resolves once every connection of each object has finished connecting (or failed to): a
 * program that waits for this before it reports itself started never closes a connection that
 * is still connecting, the one case `HeldConnection` cannot reach (a Worker's blocking one).
 */
export async function settled(objects: ReadonlyArray<Queue | Worker>): Promise<void> {
  await Promise.allSettled(objects.map((o) => o.waitUntilReady()));
}

/**
 * The key of a job's lock, which exists while a worker holds the job. BullMQ gives no accessor
 * for it: its scripts name it as the job's key (`Queue.toKey(id)`) followed by `:lock`, and this
 * is the one place here that does the same.
 */
export function jobLockKey(queue: Pick<Queue, 'toKey'>, jobId: string): string {
  return `${queue.toKey(jobId)}:lock`;
}

/** How long closing a Queue or Worker waits for Redis before it is left to finish on its own. */
const BULL_CLOSE_MS = 2000;

/**
 * Wait for a Queue's or Worker's `close()` (`what` in the log) at most BULL_CLOSE_MS, and no
 * longer once `redisGone` aborts: without Redis nothing can finish it, and it is left to finish
 * on its own should Redis come back (logged). Its connections are never dropped from here: a
 * Worker whose client is cut while it retries a job scheduler's next iteration retries again at
 * once, forever, and starves the event loop.
 */
export async function closeBull(what: string, closing: Promise<void>, redisGone: AbortSignal, log: Logger): Promise<void> {
  const closed = await waitUpTo(closing.then(() => true), BULL_CLOSE_MS, redisGone);
  if (closed !== true) log.warn({ step: what }, 'left to close once Redis is back');
}
