/**
 * Endpoints as plain functions returning `{status, body}`, mapped onto Express by one
 * adapter. While the process is closing every endpoint answers 503.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Express, type Request } from 'express';
import type { Logger } from './logger.js';

export interface HandlerResult {
  status: number;
  /** JSON-serialised unless `contentType` says otherwise (then sent as is). */
  body: unknown;
  contentType?: string;
}

export type Handler = (req: Request) => HandlerResult | Promise<HandlerResult>;

export interface HttpServerOptions {
  host: string;
  port: number;
  routes: Record<string, Handler>;
  log: Logger;
  /** Mount more (e.g. Bull Board) before the 404 handler. */
  extend?: (app: Express) => void;
}

export interface HttpServerHandle {
  readonly port: number;
  readonly app: Express;
  /** From now on every endpoint answers 503 (the process is draining). */
  markClosing(): void;
  close(): Promise<void>;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServerHandle> {
  const app = express();
  app.disable('x-powered-by');
  let closing = false;
  app.use((_req, res, next) => {
    if (closing) {
      res.status(503).set('Connection', 'close').json({ status: 'closing' });
      return;
    }
    next();
  });
  for (const [route, handler] of Object.entries(opts.routes)) {
    app.get(route, async (req, res) => {
      try {
        const out = await handler(req);
        res.status(out.status);
        if (out.contentType) res.type(out.contentType).send(out.body);
        else res.json(out.body);
      } catch (err) {
        opts.log.error({ err, route }, 'endpoint failed');
        res.status(500).json({ error: 'internal', message: (err as Error).message });
      }
    });
  }
  opts.extend?.(app);
  app.use((_req, res) => {
    res.status(404).json({ error: 'not_found' });
  });

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(opts.port, opts.host, (err?: Error) => (err ? reject(err) : resolve(s)));
    s.once('error', reject);
  });
  server.keepAliveTimeout = 5000;
  let closed: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    app,
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
