/**
 * The gateway's side of the bus (SPEC.md section 9): each HTTP call becomes one request on
 * `{p}:requests` (source `gateway`, a generated `gw-...` id, a private reply stream
 * `{p}:responses:gw-...`), whose answers are read from that stream and which is deleted once the
 * final answer is in. A call whose client goes away is cancelled through `{p}:cancel:{id}`.
 *
 * One command connection for the adds, cancels and deletes; blocking reads each take a reader
 * connection from a small pool (XREAD BLOCK holds its connection), returned after the call.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { InferenceRequest, InferenceResponse } from '../contracts/types.js';
import { errorResponse } from '../lib/bus.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import { rfc3339 } from '../lib/time.js';

/** Idle reader connections kept for the next calls. */
const MAX_IDLE_READERS = 32;
/** Longest single XREAD BLOCK: a call notices its end (cancelled, closing) within this. */
const BLOCK_MS = 1000;
/** After a cancel, how long the final (`cancelled`) answer is awaited before the stream is deleted anyway. */
const CANCEL_GRACE_MS = 10_000;
/** How long past its deadline a call waits for the bus's own `timeout` answer. */
const DEADLINE_GRACE_MS = 5_000;

/** What a caller fills in; the gateway adds the id, reply stream, source, deadline and time. */
export type RequestBody = Omit<InferenceRequest, 'request_id' | 'reply_to' | 'source' | 'timeout_ms' | 'created_at'>;

export interface BusClientOptions {
  /** Command connection (XADD, SET, DEL). */
  redis: Redis;
  /** Opens a new reader connection (for XREAD BLOCK). */
  newReader: () => Redis;
  n: Names;
  log: Logger;
  /** Each request's timeout_ms. */
  timeoutMs: number;
}

type StreamReply = [string, [string, string[]][]][] | null;

export class BusClient {
  private readonly idle: Redis[] = [];
  private readonly all = new Set<Redis>();
  private closing = false;

  constructor(private readonly o: BusClientOptions) {}

  /** Send a request; its answers come from the returned call. */
  async send(body: RequestBody): Promise<BusCall> {
    const { n, redis } = this.o;
    const id = `gw-${randomBytes(12).toString('base64url')}`;
    const request: InferenceRequest = { ...body, request_id: id, reply_to: `${n.responses}:${id}`, source: 'gateway', timeout_ms: this.o.timeoutMs, created_at: rfc3339() };
    await redis.xadd(n.requests, '*', 'data', JSON.stringify(request));
    return new BusCall(this, request);
  }

  /** @internal */
  get options(): BusClientOptions {
    return this.o;
  }

  /** @internal A reader connection from the pool (or a new one). */
  acquire(): Redis {
    const r = this.idle.pop();
    if (r) return r;
    const fresh = this.o.newReader();
    this.all.add(fresh);
    return fresh;
  }

  /** @internal */
  release(r: Redis): void {
    if (!this.closing && this.idle.length < MAX_IDLE_READERS && r.status === 'ready') this.idle.push(r);
    else {
      this.all.delete(r);
      r.disconnect();
    }
  }

  get isClosing(): boolean {
    return this.closing;
  }

  /** Stop: every reader connection is closed (calls still reading end with an error). */
  close(): void {
    this.closing = true;
    for (const r of this.all) r.disconnect();
    this.all.clear();
    this.idle.length = 0;
  }
}

/** One request on the bus: iterate its answers (partials, then the final one), or cancel it. */
export class BusCall implements AsyncIterable<InferenceResponse> {
  private finished = false;
  private cancelled = false;
  private readonly deadline: number;

  constructor(
    private readonly client: BusClient,
    readonly request: InferenceRequest,
  ) {
    this.deadline = Date.now() + (request.timeout_ms ?? 0) + DEADLINE_GRACE_MS;
  }

  get id(): string {
    return this.request.request_id;
  }

  private get stream(): string {
    return this.request.reply_to!;
  }

  /** Whether the final answer has been read. */
  get done(): boolean {
    return this.finished;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<InferenceResponse> {
    const reader = this.client.acquire();
    let last = '0';
    try {
      while (!this.finished && !this.cancelled) {
        if (this.client.isClosing) throw new Error('gateway closing');
        if (Date.now() > this.deadline) {
          void this.cancel();
          yield errorResponse(this.id, 'timeout', `no final answer within --request-timeout (${this.request.timeout_ms} ms)`, { model: this.request.model });
          return;
        }
        const res = (await reader.xread('COUNT', 200, 'BLOCK', BLOCK_MS, 'STREAMS', this.stream, last)) as StreamReply;
        for (const [entryId, fields] of res?.[0]?.[1] ?? []) {
          last = entryId;
          const doc = parseDoc(fields, this.id);
          if (doc.done) this.finished = true;
          yield doc;
          if (this.finished) break;
        }
      }
    } finally {
      if (!this.finished) void this.cancel();
      if (this.finished) {
        this.client.release(reader);
        void this.client.options.redis.del(this.stream).catch(() => undefined);
      } else void this.awaitCancelledThenDelete(reader, last);
    }
  }

  /**
   * Cancel the request on the bus (its client went away): the bridge will not place it, the
   * worker aborts its Ollama call. Safe to call more than once; a no-op once answered.
   */
  async cancel(): Promise<void> {
    if (this.finished || this.cancelled) return;
    this.cancelled = true;
    const { redis, n, log } = this.client.options;
    const ttl = (this.request.timeout_ms ?? 600_000) + 60_000;
    try {
      await redis.set(n.cancelKey(this.id), '1', 'PX', ttl);
      log.debug({ request_id: this.id }, 'request cancelled');
    } catch (err) {
      log.warn({ request_id: this.id, err: (err as Error).message }, 'cancel not written');
    }
  }

  /** After a cancel: wait (briefly) for the bus's final answer, so the reply stream it lands on can be deleted. */
  private async awaitCancelledThenDelete(reader: Redis, from: string): Promise<void> {
    const until = Date.now() + CANCEL_GRACE_MS;
    let last = from;
    try {
      while (Date.now() < until && !this.client.isClosing) {
        const res = (await reader.xread('COUNT', 200, 'BLOCK', BLOCK_MS, 'STREAMS', this.stream, last)) as StreamReply;
        const entries = res?.[0]?.[1] ?? [];
        if (entries.some(([, f]) => parseDoc(f, this.id).done)) break;
        if (entries.length > 0) last = entries[entries.length - 1]![0];
      }
      this.client.release(reader);
    } catch {
      reader.disconnect();
    }
    await this.client.options.redis.del(this.stream).catch(() => undefined);
  }
}

function parseDoc(fields: string[], id: string): InferenceResponse {
  const i = fields.indexOf('data');
  try {
    return JSON.parse(i >= 0 ? (fields[i + 1] ?? '') : '') as InferenceResponse;
  } catch {
    return errorResponse(id, 'internal', 'an answer on the reply stream is not valid JSON');
  }
}
