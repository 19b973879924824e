/**
 * Routing decisions as they happen, for the live cluster page (`GET /events`, server-sent
 * events). Cheap on the hot path: with nobody listening, `active` is false and the callers build
 * no event at all; with listeners, an event is one JSON string written to each of them and kept
 * in a small ring (the last `keep`), which a page that connects (or reconnects) gets first.
 * A listener that stops reading (its socket buffer over `maxBuffered`) is dropped.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Routing } from '../contracts/types.js';
import { Periodic } from '../lib/periodic.js';

export interface Decision {
  /** When (ms since epoch). */
  t: number;
  /**
   * placed: a request went to a node queue for the first time; moved: a job went from one
   * node's queue to another's; held: no eligible node can take it now; refused: answered with
   * an error instead of being placed.
   */
  kind: 'placed' | 'moved' | 'held' | 'refused';
  request_id: string;
  model: string;
  node?: string;
  /** For `moved`: the node it left. */
  from?: string;
  routing?: Routing;
  priority?: number;
  /** Why it was held, refused or moved. */
  reason?: string;
}

export interface DecisionFeedOptions {
  /** Events kept for a page that connects. @defaultValue 50 */
  keep?: number;
  /** Listeners at once; more are answered 503. @defaultValue 32 */
  maxListeners?: number;
  /** A keep-alive comment this often, so proxies keep the stream open. @defaultValue 15000 */
  pingMs?: number;
  /** Bytes a listener may leave unread before it is dropped. @defaultValue 1 MiB */
  maxBuffered?: number;
}

export class DecisionFeed {
  private readonly listeners = new Set<ServerResponse>();
  private readonly ring: string[] = [];
  /** The keep-alive comment, running while anyone listens. */
  private readonly ping: Periodic;
  private closed = false;

  constructor(private readonly o: DecisionFeedOptions = {}) {
    this.ping = new Periodic(
      o.pingMs ?? 15_000,
      async () => {
        for (const l of this.listeners) l.write(': ping\n\n');
      },
      { unref: true },
    );
  }

  /** Whether anyone listens: callers build events only then. */
  get active(): boolean {
    return this.listeners.size > 0;
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  push(d: Decision): void {
    if (this.listeners.size === 0) return;
    const line = JSON.stringify(d);
    this.ring.push(line);
    if (this.ring.length > (this.o.keep ?? 50)) this.ring.shift();
    const frame = `data: ${line}\n\n`;
    const limit = this.o.maxBuffered ?? 1 << 20;
    for (const res of this.listeners) {
      if (res.writableLength > limit) {
        this.drop(res);
        continue;
      }
      res.write(frame);
    }
  }

  /** Answer `GET /events`: the stream of decisions, the recent ones first. */
  serve(req: IncomingMessage, res: ServerResponse): void {
    if (this.closed || this.listeners.size >= (this.o.maxListeners ?? 32)) {
      res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8', 'Retry-After': '5' });
      res.end(JSON.stringify({ error: 'unavailable', message: 'too many listeners on /events' }));
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.write(`retry: 2000\n\n${this.ring.map((l) => `data: ${l}\n\n`).join('')}`);
    this.listeners.add(res);
    req.socket.setNoDelay(true);
    const gone = (): void => this.drop(res);
    req.once('close', gone);
    res.once('error', gone);
    this.ping.start();
  }

  private drop(res: ServerResponse): void {
    if (!this.listeners.delete(res)) return;
    res.end();
    if (this.listeners.size === 0) void this.ping.stop();
  }

  /** End every stream (the bridge is closing); later requests are answered 503. Safe twice. */
  close(): void {
    this.closed = true;
    for (const res of [...this.listeners]) this.drop(res);
  }
}
