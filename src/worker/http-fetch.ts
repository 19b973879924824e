/**
 * The `fetch` the worker gives ollama-js: node:http(s) with a keep-alive agent. Node's global
 * fetch (undici) costs a worker about 10 MB of resident memory once it has connected (its own
 * HTTP parser and connection pool), a tenth of what the whole worker needs; node:http is already
 * loaded for the worker's own endpoints. It behaves as fetch does for what ollama-js uses:
 *   - method, headers (a plain object or anything with forEach), a string body, a signal;
 *   - resolves with a standard Response once the headers arrive; its body streams as the
 *     answer comes (NDJSON generations), with backpressure;
 *   - no connection: rejects with TypeError('fetch failed') whose cause is the socket error
 *     (ECONNREFUSED, ...), as undici does, so error codes and messages read the same;
 *   - the signal aborts the request at any point (before the headers, or mid-body), with the
 *     signal's reason, as fetch does;
 *   - a request sent on a kept-alive socket that the server closed as it went idle (the server
 *     resets it: ECONNRESET before any answer, `req.reusedSocket` true) is sent once more on a
 *     new connection. Without that, a probe sent every 5 s to a server whose keep-alive timeout
 *     is 5 s (Node's default) now and then hits the closing socket and fails, and the worker
 *     would report Ollama as down for a heartbeat. The server never saw such a request.
 */
import http from 'node:http';
import https from 'node:https';

const agents: Record<string, http.Agent> = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true }),
};

/** Statuses whose Response must have no body. */
const NULL_BODY = new Set([101, 204, 205, 304]);

function urlOf(input: string | URL | Request): URL {
  return new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
}

function headersOf(h: RequestInit['headers']): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  if (!h) return out;
  if (Array.isArray(h)) {
    for (const [k, v] of h) out[k!] = v;
  } else if (typeof (h as Headers).forEach === 'function') {
    (h as Headers).forEach((v, k) => (out[k] = v));
  } else {
    Object.assign(out, h);
  }
  return out;
}

function responseHeaders(res: http.IncomingMessage): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of Object.entries(res.headers)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push([k, x]);
    else out.push([k, v]);
  }
  return out;
}

/** Where and what one fetch sends, checked before anything is sent. */
interface Target {
  url: URL;
  client: typeof http | typeof https;
  agent: http.Agent;
  payload: string | Uint8Array | undefined;
}

/** The request's target, or a TypeError('fetch failed') saying why there is none. */
function targetOf(input: string | URL | Request, init: RequestInit | undefined): Target {
  let url: URL;
  try {
    url = urlOf(input);
  } catch (err) {
    throw new TypeError('fetch failed', { cause: err });
  }
  const agent = agents[url.protocol];
  if (!agent) throw new TypeError('fetch failed', { cause: new Error(`unsupported protocol ${url.protocol}`) });
  const payload = init?.body ?? undefined;
  if (payload !== undefined && typeof payload !== 'string' && !(payload instanceof Uint8Array)) {
    throw new TypeError('fetch failed', { cause: new Error('only string and byte bodies are supported') });
  }
  return { url, client: url.protocol === 'https:' ? https : http, agent, payload };
}

export function httpFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const signal = init?.signal ?? undefined;
    if (signal?.aborted) return reject(signal.reason);
    let target: Target;
    try {
      target = targetOf(input, init);
    } catch (err) {
      return reject(err);
    }
    new Exchange(target, init, signal, resolve, reject).send(false);
  });
}

/** One fetch: the request (sent once more on a reset kept-alive socket), then its answer. */
class Exchange {
  /** Where a failure lands once the answer has started: the body stream. */
  private failBody: ((reason: unknown) => void) | undefined;

  constructor(
    private readonly target: Target,
    private readonly init: RequestInit | undefined,
    private readonly signal: AbortSignal | undefined,
    private readonly resolve: (res: Response) => void,
    private readonly reject: (reason: unknown) => void,
  ) {}

  send(retried: boolean): void {
    const { client, url, agent, payload } = this.target;
    const req = client.request(url, { method: this.init?.method ?? 'GET', headers: headersOf(this.init?.headers), agent });
    const onAbort = (): void => {
      req.destroy();
      this.fail(this.signal?.reason);
    };
    this.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => this.signal?.removeEventListener('abort', onAbort);
    req.on('error', (err: NodeJS.ErrnoException) => {
      done();
      // The server closed the kept-alive socket as it went idle: it never saw this request.
      const stale = !retried && !this.failBody && req.reusedSocket && err.code === 'ECONNRESET' && !this.signal?.aborted;
      if (stale) this.send(true);
      else this.fail(this.failBody ? err : new TypeError('fetch failed', { cause: err }));
    });
    req.on('response', (res) => this.resolve(this.response(res, done)));
    if (payload === undefined) req.end();
    else req.end(payload);
  }

  private fail(reason: unknown): void {
    if (this.failBody) this.failBody(reason);
    else this.reject(reason);
  }

  private response(res: http.IncomingMessage, done: () => void): Response {
    const status = res.statusCode ?? 500;
    let body: ReadableStream<Uint8Array> | null = null;
    if (NULL_BODY.has(status) || this.init?.method === 'HEAD') {
      res.resume();
      res.on('end', done);
    } else {
      body = this.bodyOf(res, done);
    }
    return new Response(body, { status, statusText: res.statusMessage ?? '', headers: responseHeaders(res) });
  }

  /** The answer's body as it comes, with backpressure; a failure or an abort errors the stream. */
  private bodyOf(res: http.IncomingMessage, done: () => void): ReadableStream<Uint8Array> {
    const start = (controller: ReadableStreamDefaultController<Uint8Array>): void => {
      let open = true;
      const end = (): boolean => {
        if (!open) return false;
        open = false;
        done();
        return true;
      };
      this.failBody = (reason) => {
        if (!end()) return;
        res.destroy();
        controller.error(reason);
      };
      res.on('data', (chunk: Buffer) => {
        if (!open) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 1) <= 0) res.pause();
      });
      res.on('end', () => end() && controller.close());
      res.on('error', (err) => this.failBody?.(err));
      res.on('aborted', () => this.failBody?.(new TypeError('terminated', { cause: new Error('other side closed') })));
    };
    return new ReadableStream<Uint8Array>({
      start,
      pull: () => void res.resume(),
      cancel: () => {
        this.failBody = undefined;
        done();
        res.destroy();
      },
    });
  }
}
