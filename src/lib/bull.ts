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
