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

export function httpFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const signal = init?.signal ?? undefined;
    if (signal?.aborted) return reject(signal.reason);
    let url: URL;
    try {
      url = urlOf(input);
    } catch (err) {
      return reject(new TypeError('fetch failed', { cause: err }));
    }
    const agent = agents[url.protocol];
    if (!agent) return reject(new TypeError('fetch failed', { cause: new Error(`unsupported protocol ${url.protocol}`) }));
    const payload = init?.body;
    if (payload !== undefined && payload !== null && typeof payload !== 'string' && !(payload instanceof Uint8Array)) {
      return reject(new TypeError('fetch failed', { cause: new Error('only string and byte bodies are supported') }));
    }
    const target = url;
    const client = url.protocol === 'https:' ? https : http;
    const send = (retried: boolean): void => {
      const req = client.request(target, { method: init?.method ?? 'GET', headers: headersOf(init?.headers), agent });
      // Where an abort lands once the answer has started: the body stream.
      let failBody: ((reason: unknown) => void) | undefined;
      const onAbort = (): void => {
        const reason: unknown = signal?.reason;
        req.destroy();
        if (failBody) failBody(reason);
        else reject(reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const done = (): void => signal?.removeEventListener('abort', onAbort);
      req.on('error', (err) => {
        done();
        if (!retried && !failBody && req.reusedSocket && (err as NodeJS.ErrnoException).code === 'ECONNRESET' && !signal?.aborted) {
          send(true);
          return;
        }
        if (failBody) failBody(err);
        else reject(new TypeError('fetch failed', { cause: err }));
      });
      req.on('response', (res) => {
        const status = res.statusCode ?? 500;
        let body: ReadableStream<Uint8Array> | null = null;
        if (NULL_BODY.has(status) || init?.method === 'HEAD') {
          res.resume();
          res.on('end', done);
        } else {
          body = new ReadableStream<Uint8Array>({
            start(controller) {
              let open = true;
              failBody = (reason) => {
                if (!open) return;
                open = false;
                done();
                res.destroy();
                controller.error(reason);
              };
              res.on('data', (chunk: Buffer) => {
                if (!open) return;
                controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
                if ((controller.desiredSize ?? 1) <= 0) res.pause();
              });
              res.on('end', () => {
                if (!open) return;
                open = false;
                done();
                controller.close();
              });
              res.on('error', (err) => failBody?.(err));
              res.on('aborted', () => failBody?.(new TypeError('terminated', { cause: new Error('other side closed') })));
            },
            pull() {
              res.resume();
            },
            cancel() {
              failBody = undefined;
              done();
              res.destroy();
            },
          });
        }
        resolve(new Response(body, { status, statusText: res.statusMessage ?? '', headers: responseHeaders(res) }));
      });
      if (payload === undefined || payload === null) req.end();
      else req.end(payload);
    };
    send(false);
  });
}
