/**
 * A consumer-group reader for one stream: the loop the bridge runs on `{p}:requests` and on
 * `{p}:reroute`. It owns a blocking connection and hands batches to a handler, which acks
 * what it has finished (`Batch`) and may keep entries pending for later (acked through the
 * `ConsumerGroup`).
 *
 *   start    XGROUP CREATE <stream> <group> 0 MKSTREAM (BUSYGROUP: already there)
 *   first    its own pending entries (XREADGROUP ... <id>), from 0 until none are left, so a
 *            restarted bridge re-reads what it had not finished
 *   then     XREADGROUP ... COUNT <batch> BLOCK <blockMs> STREAMS <stream> >
 *   backlog  a read that comes back full sends `readAhead` more at once, without BLOCK
 *   now and then  XAUTOCLAIM entries other consumers left idle longer than claimIdle
 *   NOGROUP  (Redis came back empty) the group is created again and reading goes on
 */
import type { Redis } from 'ioredis';
import type { Logger } from '../lib/logger.js';
import { sleep, withTimeout } from '../lib/time.js';

export interface StreamEntry {
  id: string;
  /** Flat [k, v, k, v] fields; null for a pending entry whose payload was deleted. */
  fields: string[] | null;
}

/** A stream's consumer group, as one consumer of it: the group created, entries acked and kept. */
export interface GroupOptions {
  /** Command connection (not a blocking one). */
  cmd: Redis;
  stream: string;
  group: string;
  consumer: string;
  log: Logger;
}

/** What holds entries pending needs of their group: the ack, and keeping siblings off them. */
export interface Acks {
  /** Acknowledge finished entries (one XACK). */
  ack(ids: readonly string[]): Promise<void>;
  /** Reset the idle time of entries still held here, so a sibling does not claim them. */
  touch(ids: readonly string[]): Promise<void>;
}

export class ConsumerGroup implements Acks {
  constructor(readonly o: GroupOptions) {}

  /** XGROUP CREATE ... MKSTREAM; a group already there is fine. */
  async ensure(): Promise<void> {
    try {
      await this.o.cmd.xgroup('CREATE', this.o.stream, this.o.group, '0', 'MKSTREAM');
      this.o.log.info({ stream: this.o.stream, group: this.o.group }, 'consumer group created');
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err;
    }
  }

  async ack(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.o.cmd.xack(this.o.stream, this.o.group, ...ids);
  }

  async touch(ids: readonly string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += 500) {
      await this.o.cmd.xclaim(this.o.stream, this.o.group, this.o.consumer, 0, ...ids.slice(i, i + 500), 'JUSTID');
    }
  }
}

/**
 * The entries of one read (XREADGROUP, with what XAUTOCLAIM took over at the same time), and
 * their ack: the handler `finish`es each entry once it is placed or answered, and `ack`s the
 * batch at the end, one XACK for everything finished. An entry not finished stays pending
 * (held for later, or read again after a restart). Finishing is idempotent, so a batch handled
 * again from the start after a failure acks each entry once.
 */
export class Batch {
  private readonly finished = new Set<string>();

  constructor(
    private readonly group: Pick<Acks, 'ack'>,
    readonly entries: readonly StreamEntry[] = [],
  ) {}

  finish(entryId: string): void {
    this.finished.add(entryId);
  }

  /** Acknowledge what is finished (bounded by `timeoutMs`); what is acked is forgotten. */
  async ack(timeoutMs: number): Promise<void> {
    const ids = [...this.finished];
    await withTimeout(this.group.ack(ids), timeoutMs, 'acking entries');
    for (const id of ids) this.finished.delete(id);
  }
}

export interface GroupReaderOptions {
  group: ConsumerGroup;
  /** Blocking connection, used by this reader only; disconnected by `stop()`. */
  blocking: Redis;
  batchSize: number;
  /** @defaultValue 1000 */
  blockMs?: number;
  /** Entries pending this long at another consumer are taken over. */
  claimIdleMs: number;
  /** How often to look for such entries. @defaultValue half of claimIdleMs, at most 10 s */
  claimEveryMs?: number;
  /**
   * Batches handed to `handle` before the oldest has finished: with 2, the next batch is read
   * (and can be worked on) while the one before waits on Redis. The handler must then accept
   * overlapping calls. @defaultValue 1
   */
  depth?: number;
  /**
   * Reads asked for ahead while there is a backlog: when a read comes back full, up to this
   * many more go out at once (non-blocking), so the next batches are on their way while this
   * one is handled instead of each waiting a round trip behind the Redis work queued before it.
   * @defaultValue 0
   */
  readAhead?: number;
  log: Logger;
  /**
   * While true, nothing new is read (what is pending stays pending); checked before each read,
   * and again before a batch read is handed over.
   */
  paused?: () => boolean;
  /** Handle a batch; the handler acks (`batch.ack`) what it has finished. Must not throw. */
  handle(batch: Batch): Promise<void>;
}

type XReadReply = [string, [string, string[] | null][]][] | null;
type XAutoClaimReply = [string, [string, string[] | null][], string[]?];

export class GroupReader {
  private stopped = false;
  private loop: Promise<void> | undefined;
  private claimCursor = '0-0';
  private nextClaimAt = 0;
  private failures = 0;
  /** Batches handed over and not finished yet, oldest first. */
  private readonly inFlight: Promise<void>[] = [];
  /** Reads asked for ahead (see `readAhead`), oldest first. */
  private ahead: Promise<StreamEntry[]>[] = [];

  constructor(private readonly o: GroupReaderOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Stop reading: an idle blocking read is cut short, a batch in hand is finished first. */
  async stop(): Promise<void> {
    this.stopped = true;
    // The blocking connection serves only reads and claims: cutting it loses nothing (what was
    // delivered stays pending here and is re-read on the next start); the handler uses `cmd`.
    this.o.blocking.disconnect();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { log } = this.o;
    // Pending-first: '0' and then the last id seen, until a read comes back empty.
    let cursor: string | undefined = '0';
    let needGroup = true;
    while (!this.stopped) {
      try {
        if (needGroup) {
          await this.o.group.ensure();
          needGroup = false;
        }
        if (this.o.paused?.()) {
          await this.pauseStep();
          continue;
        }
        let entries: StreamEntry[];
        if (cursor !== undefined) {
          entries = await this.read(cursor, false);
          if (entries.length === 0) cursor = undefined;
          else cursor = entries[entries.length - 1]!.id;
        } else {
          entries = await (this.ahead.shift() ?? this.read('>', true));
          if (entries.length === this.o.batchSize) this.readAhead();
        }
        if (!this.stopped && Date.now() >= this.nextClaimAt) {
          this.nextClaimAt = Date.now() + (this.o.claimEveryMs ?? Math.min(this.o.claimIdleMs / 2, 10_000));
          entries = entries.concat(await this.autoclaim());
        }
        this.failures = 0;
        // A read already blocking when the pause began can still return entries: they wait here,
        // pending and unhandled, until the pause ends (or, if reading stops, for the next start).
        while (entries.length > 0 && this.o.paused?.() && !this.stopped) await this.pauseStep();
        if (entries.length > 0 && !this.o.paused?.()) await this.handOver(entries);
      } catch (err) {
        if (this.stopped) break;
        // Reads asked for ahead go with the failure (they share the connection). Entries one of
        // them was delivered stay pending here, to be taken back by XAUTOCLAIM after claimIdle
        // or re-read on the next start, as with any read whose answer was lost.
        this.ahead = [];
        const message = (err as Error).message;
        if (/NOGROUP/.test(message)) {
          log.warn({ stream: this.o.group.o.stream }, 'consumer group is gone (Redis restarted empty?): creating it again');
          needGroup = true;
          cursor = '0';
          continue;
        }
        this.failures += 1;
        if (this.failures === 1) log.warn({ stream: this.o.group.o.stream, err: message }, 'stream read failed; retrying');
        await sleep(Math.min(100 * 2 ** Math.min(this.failures, 6), 5000));
      }
    }
    // Stopped: the batches still in the handler's hands are finished first.
    await Promise.all(this.inFlight.splice(0));
  }

  /** Ask for the next `readAhead` batches now (non-blocking reads: they answer at once). */
  private readAhead(): void {
    const want = this.o.readAhead ?? 0;
    while (this.ahead.length < want && !this.stopped) {
      const next = this.read('>', false);
      // Awaited in turn; one left behind by a stop or a failure must not be an unhandled rejection.
      next.catch(() => undefined);
      this.ahead.push(next);
    }
  }

  /** One wait while paused, before the flag is asked again. */
  private pauseStep(): Promise<void> {
    return sleep(Math.min(this.o.blockMs ?? 1000, 250));
  }

  /** Give a batch to the handler; wait while `depth` batches are in its hands. */
  private async handOver(entries: StreamEntry[]): Promise<void> {
    const depth = this.o.depth ?? 1;
    const batch = new Batch(this.o.group, entries);
    if (depth <= 1) return this.o.handle(batch);
    this.inFlight.push(this.o.handle(batch));
    while (this.inFlight.length >= depth) await this.inFlight.shift();
  }

  private async read(id: string, block: boolean): Promise<StreamEntry[]> {
    const { blocking, batchSize } = this.o;
    const { group, consumer, stream } = this.o.group.o;
    const reply = (
      block
        ? await blocking.xreadgroup('GROUP', group, consumer, 'COUNT', batchSize, 'BLOCK', this.o.blockMs ?? 1000, 'STREAMS', stream, id)
        : await blocking.xreadgroup('GROUP', group, consumer, 'COUNT', batchSize, 'STREAMS', stream, id)
    ) as XReadReply;
    const list = reply?.[0]?.[1] ?? [];
    return list.map(([entryId, fields]) => ({ id: entryId, fields }));
  }

  private async autoclaim(): Promise<StreamEntry[]> {
    const { blocking, claimIdleMs, batchSize, log } = this.o;
    const { group, consumer, stream } = this.o.group.o;
    const reply = (await blocking.xautoclaim(stream, group, consumer, claimIdleMs, this.claimCursor, 'COUNT', batchSize)) as XAutoClaimReply;
    this.claimCursor = reply[0];
    const deleted = reply[2] ?? [];
    // Entries deleted from the stream while pending: nothing to do but forget them.
    if (deleted.length > 0) await this.o.group.ack(deleted);
    const claimed = reply[1].filter(([, f]) => f !== null).map(([id, fields]) => ({ id, fields }));
    if (claimed.length > 0) log.info({ stream, count: claimed.length }, 'took over entries left idle by another consumer');
    return claimed;
  }
}
