/**
 * One HTTP call to the gateway, and the few ways it answers: JSON, server-sent events (OpenAI
 * streaming), newline-delimited JSON (Ollama streaming). `closed` fires when the client goes
 * away before the answer is complete: the call is then cancelled on the bus.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../lib/logger.js';

/** Largest request body read (the bus refuses requests over 1 MiB anyway). */
export const MAX_BODY_BYTES = 2 * 1024 * 1024;

export class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class Exchange {
  /** Aborted when the client disconnects before the answer is complete. */
  readonly closed: AbortSignal;
  status = 0;
  private readonly abort = new AbortController();

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly path: string,
    readonly log: Logger,
  ) {
    this.closed = this.abort.signal;
    res.on('close', () => {
      if (!res.writableFinished) this.abort.abort('client disconnected');
    });
  }

  /** The JSON object in the body; BodyError(400) when it is not one. */
  async json(): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of this.req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) throw new BodyError(413, `request body over ${MAX_BODY_BYTES} bytes`);
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') throw new BodyError(400, 'missing request body');
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw new BodyError(400, `request body is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new BodyError(400, 'request body must be a JSON object');
    return doc as Record<string, unknown>;
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  sendJson(status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    this.status = status;
    this.res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers });
    this.res.end(this.req.method === 'HEAD' ? undefined : text);
  }

  sendText(status: number, text: string): void {
    this.status = status;
    this.res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    this.res.end(this.req.method === 'HEAD' ? undefined : text);
  }

  /** Start a stream of `kind` (headers out, no length). */
  startStream(kind: 'sse' | 'ndjson'): void {
    this.status = 200;
    const type = kind === 'sse' ? 'text/event-stream; charset=utf-8' : 'application/x-ndjson';
    this.res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    this.res.flushHeaders();
  }

  /** One server-sent event: `data: <json>` (or the text as is, e.g. `[DONE]`). */
  event(data: unknown): void {
    if (this.res.writableEnded) return;
    this.res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  }

  /** One NDJSON line. */
  line(obj: unknown): void {
    if (this.res.writableEnded) return;
    this.res.write(`${JSON.stringify(obj)}\n`);
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }
}
