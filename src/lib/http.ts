/**
 * Endpoints as plain functions returning `{status, body}`, served by node:http (a worker loads no
 * web framework: about a hundred modules less in its memory). Requests no route takes go to
 * `fallback` when given (the bridge's Bull Board, an Express app), else 404. While the process
 * is closing every request is answered 503.
 */
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './logger.js';

export interface HandlerResult {
  status: number;
  /** JSON-serialised unless `contentType` says otherwise (then sent as is). */
  body: unknown;
  contentType?: string;
}

export type Handler = (req: IncomingMessage) => HandlerResult | Promise<HandlerResult>;

export interface HttpServerOptions {
  host: string;
  port: number;
  /**
   * GET (and HEAD) routes by exact path; a query string is ignored. A key ending in `/*`
   * (`/requests/*`) takes every path below it that no exact route takes.
   */
  routes: Record<string, Handler>;
  log: Logger;
  /** Where requests go that no route takes (else 404). */
  fallback?: RequestListener;
}

export interface HttpServerHandle {
  readonly port: number;
  /** From now on every endpoint answers 503 (the process is draining). */
  markClosing(): void;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown, contentType?: string, extra: Record<string, string> = {}): void {
  const text = contentType ? String(body) : JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': contentType ?? 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...extra });
  res.end(text);
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServerHandle> {
  let closing = false;
  const routes = new Map(Object.entries(opts.routes).filter(([k]) => !k.endsWith('/*')));
  const prefixes = Object.entries(opts.routes)
    .filter(([k]) => k.endsWith('/*'))
    .map(([k, h]) => [k.slice(0, -1), h] as const);
  const route = (path: string): Handler | undefined =>
    routes.get(path) ?? prefixes.find(([p]) => path.startsWith(p) && path.length > p.length && !path.slice(p.length).includes('/'))?.[1];
  const server: Server = createServer((req, res) => {
    if (closing) return send(res, 503, { status: 'closing' }, undefined, { Connection: 'close' });
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const handler = req.method === 'GET' || req.method === 'HEAD' ? route(q < 0 ? url : url.slice(0, q)) : undefined;
    if (!handler) {
      if (opts.fallback) return opts.fallback(req, res);
      return send(res, 404, { error: 'not_found' });
    }
    Promise.resolve()
      .then(() => handler(req))
      .then(
        (out) => send(res, out.status, out.body, out.contentType),
        (err: unknown) => {
          opts.log.error({ err, route: url }, 'endpoint failed');
          send(res, 500, { error: 'internal', message: (err as Error).message });
        },
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.keepAliveTimeout = 5000;
  let closed: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    markClosing: () => {
      closing = true;
    },
    close() {
      closing = true;
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      });
      return closed;
    },
  };
}
