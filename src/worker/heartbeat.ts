/**
 * The node's heartbeat: a BullMQ job scheduler (`{p}:heartbeat:{nodeID}`, every
 * --heartbeat-interval) run by a Worker of its own with concurrency 1, so a long generation
 * never delays a beat. Each beat publishes the health document.
 *
 * Its watchdog: the scheduler lives in Redis, and a Redis restarted without persistence forgets
 * it. When no beat has landed for three intervals (and none is stuck waiting on Redis), it
 * schedules the beat again and beats directly, so the node does not look dead while it is not.
 * It also starts the Worker's loop again when a write Redis refused ended it.
 */
import { Queue, Worker, type ConnectionOptions } from 'bullmq';
import { HeldConnection, closeBull, settled } from '../lib/bull.js';
import type { Logger } from '../lib/logger.js';
import { Periodic } from '../lib/periodic.js';
import type { OutageLog } from './outage-log.js';

/** Beats missed before the watchdog steps in. */
const MISSED_BEATS = 3;

export interface HeartbeatOptions {
  nodeId: string;
  connection: ConnectionOptions;
  /** The heartbeat queues' BullMQ prefix. */
  prefix: string;
  everyMs: number;
  log: Logger;
  errors: OutageLog;
  /** One beat: publish the health document. */
  beat: () => Promise<unknown>;
  /** When a beat last landed (ms since the epoch), and whether one is under way now. */
  lastBeatAt: () => number;
  beating: () => boolean;
}

export class Heartbeat {
  private readonly queue: Queue;
  private readonly worker: Worker;
  private readonly watchdog: Periodic;
  private closing = false;

  private constructor(private readonly o: HeartbeatOptions) {
    const { nodeId, connection, prefix } = o;
    this.queue = new Queue(nodeId, { connection, prefix }, HeldConnection);
    this.queue.on('error', o.errors.listener('heartbeat-queue'));
    this.worker = new Worker(nodeId, async () => void (await o.beat()), { connection, prefix, concurrency: 1, autorun: false }, HeldConnection);
    this.worker.on('error', o.errors.listener('heartbeat-worker'));
    this.watchdog = new Periodic(o.everyMs, async () => this.check(), { unref: true });
  }

  /** Schedule the beat, then start beating; resolves once every connection has settled. */
  static async start(o: HeartbeatOptions): Promise<Heartbeat> {
    const h = new Heartbeat(o);
    await h.schedule();
    h.watchdog.start();
    h.worker.run().catch(o.errors.listener('heartbeat-worker'));
    await settled([h.queue, h.worker]);
    return h;
  }

  private schedule(): Promise<unknown> {
    return this.queue.upsertJobScheduler(
      'heartbeat',
      { every: this.o.everyMs },
      { name: 'heartbeat', opts: { removeOnComplete: true, removeOnFail: 10 } },
    );
  }

  private check(): void {
    if (this.closing) return;
    const { log, errors } = this.o;
    if (!this.worker.isRunning() && !this.worker.isPaused()) {
      log.warn({ source: 'heartbeat-worker' }, 'queue loop stopped (Redis refused a write inside BullMQ): starting it again');
      this.worker.run().catch(errors.listener('heartbeat-worker'));
    }
    if (this.o.beating() || Date.now() - this.o.lastBeatAt() < MISSED_BEATS * this.o.everyMs) return;
    log.warn({}, 'no heartbeat for three intervals: scheduling it again');
    void this.schedule().catch(errors.listener('heartbeat-queue'));
    void this.o.beat();
  }

  /** Stop beating: the watchdog, then the Worker and the Queue (each while Redis is there). */
  async close(redisGone: AbortSignal): Promise<void> {
    this.closing = true;
    await this.watchdog.stop();
    await closeBull('heartbeat worker', this.worker.close(), redisGone, this.o.log);
    await closeBull('heartbeat queue', this.queue.close(), redisGone, this.o.log);
  }
}
