/**
 * How busy each node is now (SPEC.md section 6): jobs waiting and running per node queue.
 *
 * Two sources, so the view is current with one bridge or several and never waits for a
 * heartbeat:
 *   - the queues themselves: `ZCARD prioritized` + `LLEN wait` (waiting) and `LLEN active`
 *     (running) of every known node, in one pipeline, read after each registry refresh
 *     (about every second); this includes what every bridge placed and what every worker
 *     started or finished;
 *   - this bridge's own placements and moves since the last read, added at once.
 * A count waits for the queue writes under way when it starts (up to WRITES_WAIT_MS), so the
 * placements made before it are in the queues it counts; until it lands they are counted as
 * placements. A placement made while a count is in flight may be counted twice until the next
 * one (the cost of not locking anything): a node looks busier than it is for at most a second,
 * never idler.
 */
import type { Redis } from 'ioredis';
import type { Names } from '../lib/names.js';
import { withTimeout } from '../lib/time.js';

/** How long a count waits for the queue writes under way when it starts. */
export const WRITES_WAIT_MS = 1000;

export interface NodeLoadFigures {
  /** Jobs in the node's queue not started yet. */
  waiting: number;
  /** Jobs a worker of the node is running. */
  running: number;
}

const ZERO: NodeLoadFigures = { waiting: 0, running: 0 };

export class LoadTracker {
  private counted = new Map<string, NodeLoadFigures>();
  /** Own placements (+) and moves away (-) per node since the last read was sent. */
  private delta = new Map<string, number>();
  /** The placements of `delta` handed to the count in flight, counted until it lands. */
  private sent = new Map<string, number>();
  /** Queue writes under way (placements on their way to Redis). */
  private readonly writing = new Set<Promise<void>>();
  private readAt = 0;
  private lowered = 0;
  /** `get`'s answers, kept until a count or a placement changes them (routing asks for every
   * node on every request; figures are shared, never changed in place). */
  private merged = new Map<string, NodeLoadFigures>();

  constructor(
    private readonly redis: Redis,
    private readonly n: Names,
  ) {}

  /** A node's figures now (0 and 0 for a node never counted). */
  get(nodeId: string): NodeLoadFigures {
    const hit = this.merged.get(nodeId);
    if (hit !== undefined) return hit;
    const c = this.counted.get(nodeId) ?? ZERO;
    const d = (this.delta.get(nodeId) ?? 0) + (this.sent.get(nodeId) ?? 0);
    const f = d === 0 ? c : { waiting: Math.max(0, c.waiting + d), running: c.running };
    this.merged.set(nodeId, f);
    return f;
  }

  /** Same as `get`, bound, for the routing policy. */
  readonly of = (nodeId: string): NodeLoadFigures => this.get(nodeId);

  /** When the queues were last counted (ms since epoch; 0 = never). */
  get countedAt(): number {
    return this.readAt;
  }

  /**
   * Changes whenever a figure may have gone down (a count landed, a job was taken off): while it
   * holds, every node is at least as busy as it was (what `FreeScan` relies on).
   */
  get version(): number {
    return this.lowered;
  }

  /** A job was placed on (+1) or taken off (-1) a node's queue by this bridge. */
  add(nodeId: string, by = 1): void {
    this.delta.set(nodeId, (this.delta.get(nodeId) ?? 0) + by);
    this.merged.delete(nodeId);
    if (by < 0) this.lowered++;
  }

  /**
   * `write` adds placements counted with `add` to their queues: a count started before it ends
   * waits for it, so that the placements are in the queues the count reads.
   */
  track(write: Promise<unknown>): void {
    const done = write.then(
      () => undefined,
      () => undefined,
    );
    this.writing.add(done);
    void done.then(() => this.writing.delete(done));
  }

  /** Count the queues of `nodeIds` (one pipeline, three commands a node). */
  async refresh(nodeIds: readonly string[]): Promise<void> {
    const { redis, n } = this;
    const sent = this.delta;
    for (const [id, d] of this.sent) sent.set(id, (sent.get(id) ?? 0) + d);
    this.sent = sent;
    this.delta = new Map();
    this.merged = new Map();
    try {
      if (this.writing.size > 0) {
        const writes = [...this.writing];
        // A write that outlasts the wait is not waited for again (the dispatcher times its writes
        // out anyway): the count goes ahead without it.
        await withTimeout(Promise.all(writes), WRITES_WAIT_MS, 'queue writes').catch(() => writes.forEach((w) => this.writing.delete(w)));
      }
      const pipe = redis.pipeline();
      for (const id of nodeIds) {
        pipe.zcard(n.nodeQueueKey(id, 'prioritized'));
        pipe.llen(n.nodeQueueKey(id, 'wait'));
        pipe.llen(n.nodeQueueKey(id, 'active'));
      }
      const res = (await pipe.exec()) ?? [];
      const counted = new Map<string, NodeLoadFigures>();
      nodeIds.forEach((id, i) => {
        const at = (k: number): number => {
          const [err, v] = res[i * 3 + k] ?? [null, 0];
          if (err) throw err;
          return Number(v) || 0;
        };
        const waiting = at(0) + at(1);
        const running = at(2);
        if (waiting > 0 || running > 0) counted.set(id, { waiting, running });
      });
      this.counted = counted;
      this.sent = new Map();
      this.merged = new Map();
      this.readAt = Date.now();
      this.lowered++;
    } catch (err) {
      // Not counted: keep what was placed meanwhile on top of the last counts.
      for (const [id, d] of this.sent) this.delta.set(id, (this.delta.get(id) ?? 0) + d);
      this.sent = new Map();
      this.merged = new Map();
      throw err;
    }
  }

  /** Every node with jobs waiting or running, as last counted plus own placements. */
  busy(): Map<string, NodeLoadFigures> {
    const out = new Map<string, NodeLoadFigures>();
    for (const id of new Set([...this.counted.keys(), ...this.delta.keys(), ...this.sent.keys()])) {
      const f = this.get(id);
      if (f.waiting > 0 || f.running > 0) out.set(id, f);
    }
    return out;
  }
}
