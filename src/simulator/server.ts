/**
 * The HTTP front of one simulated node, on node:http: routes Ollama's API and the `/_sim/*`
 * admin endpoints, applies request-level faults, turns a client disconnect into an abort, and
 * stops and resumes listening for the refuseConnections fault (same port).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monoNow } from './clock.js';
import { parseFaults } from './faults.js';
import { parseScript } from './script.js';
import { BadRequest, readJson, sendError, sendJson, sendText, type RequestContext } from './http-util.js';
import { handleEmbed } from './embed.js';
import { handleInference } from './inference.js';
import type { SimulatedNode } from './node.js';
import { handleDelete, handlePs, handlePull, handleShow, handleTags, handleVersion } from './ollama-api.js';
import { OLLAMA_ERRORS } from './wire.js';

type Handler = (ctx: RequestContext) => void | Promise<void>;

interface Route {
  handler: Handler;
  /** Subject to errorRate, fail500, status503 and hang with scope `inference`. */
  inference?: boolean;
  /** Whether the request carries a JSON body. */
  body?: boolean;
}

const ollamaRunning: Handler = (ctx) => sendText(ctx.res, 200, 'Ollama is running', ctx.req.method === 'HEAD');

const ROUTES: Record<string, Route> = {
  'GET /': { handler: ollamaRunning },
  'HEAD /': { handler: ollamaRunning },
  'GET /api/version': { handler: handleVersion },
  'HEAD /api/version': { handler: handleVersion },
  'GET /api/tags': { handler: handleTags },
  'HEAD /api/tags': { handler: handleTags },
  'GET /api/ps': { handler: handlePs },
  'POST /api/show': { handler: handleShow, body: true },
  'DELETE /api/delete': { handler: handleDelete, body: true },
  'POST /api/pull': { handler: handlePull, body: true },
  'POST /api/generate': { handler: (ctx) => handleInference('generate', ctx), inference: true, body: true },
  'POST /api/chat': { handler: (ctx) => handleInference('chat', ctx), inference: true, body: true },
  'POST /api/embed': { handler: handleEmbed, inference: true, body: true },
};

const KNOWN_PATHS = new Set(Object.keys(ROUTES).map((k) => k.slice(k.indexOf(' ') + 1)));

export class SimServer {
  private readonly server: Server;
  private boundPort: number;
  private refusing = false;
  private transition: Promise<void> = Promise.resolve();
  private refuseTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly node: SimulatedNode,
    private readonly host: string,
    port: number,
  ) {
    this.boundPort = port;
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        node.log.error({ err, url: req.url }, 'request failed');
        sendError(res, 500, err instanceof Error ? err.message : String(err));
      });
    });
    this.server.keepAliveTimeout = 5_000;
    node.attachEndpoint({
      url: () => (this.refusing || this.closed ? null : this.url),
      listening: () => this.server.listening,
      settled: () => this.transition,
    });
    node.onFaultsChange((f) => {
      if (f.refuseConnections && !this.refusing) this.refuse(typeof f.refuseConnections === 'number' ? f.refuseConnections : undefined);
      else if (!f.refuseConnections && this.refusing) this.resume();
    });
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${this.boundPort}`;
  }

  async listen(): Promise<void> {
    await this.listenOnce();
    const f = this.node.faults().refuseConnections;
    if (f) this.refuse(typeof f === 'number' ? f : undefined);
  }

  /** Stop intake, drop every open connection, and wait until the socket is closed. */
  async close(): Promise<void> {
    if (this.closed) return this.transition;
    this.closed = true;
    clearTimeout(this.refuseTimer);
    this.transition = this.transition.then(async () => {
      if (this.server.listening) await this.stopListening();
    });
    await this.transition;
  }

  private listenOnce(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.boundPort, this.host, () => {
        this.server.off('error', onError);
        this.boundPort = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private stopListening(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private refuse(forMs?: number): void {
    this.refusing = true;
    this.node.log.warn({ port: this.boundPort, forMs }, 'refusing connections (fault)');
    this.transition = this.transition.then(async () => {
      if (this.server.listening) await this.stopListening();
    });
    clearTimeout(this.refuseTimer);
    if (forMs !== undefined) {
      this.refuseTimer = setTimeout(() => this.node.setFaults({ refuseConnections: false }), forMs);
      this.refuseTimer.unref();
    }
  }

  private resume(): void {
    this.refusing = false;
    clearTimeout(this.refuseTimer);
    this.transition = this.transition.then(async () => {
      if (this.closed || this.server.listening) return;
      try {
        await this.listenOnce();
        this.node.log.info({ port: this.boundPort }, 'accepting connections again');
      } catch (err) {
        this.node.log.error({ err, port: this.boundPort }, 'cannot listen again');
      }
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = monoNow();
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    if (path.startsWith('/_sim/')) return this.handleAdmin(req, res, path);
    const rec = this.node.record(req.method ?? 'GET', path);
    if (rec) {
      res.on('close', () => {
        rec.finished = res.writableFinished;
        rec.clientClosed = !res.writableFinished;
      });
    }

    const route = ROUTES[`${req.method} ${path}`];
    if (!route) {
      return KNOWN_PATHS.has(path) ? sendText(res, 405, '405 method not allowed') : sendText(res, 404, '404 page not found');
    }
    const faults = this.node.faults();
    if (route.inference || (faults.scope === 'all' && path.startsWith('/api/'))) {
      if (this.injectFault(req, res)) return;
    }
    let body: Record<string, unknown> = {};
    if (route.body) {
      try {
        body = await readJson(req);
        if (rec) rec.body = body;
      } catch (err) {
        if (err instanceof BadRequest) return sendError(res, err.status, err.message);
        throw err;
      }
    }
    await route.handler({ node: this.node, req, res, body, signal: abort.signal, startedAt, faults });
  }

  /** Apply hang, status503, fail500 and errorRate; true when the request was taken over. */
  private injectFault(req: IncomingMessage, res: ServerResponse): boolean {
    const f = this.node.faults();
    let what: string | null = null;
    if (f.hang) what = 'hang';
    else if (f.status503) what = '503';
    else if (f.fail500) what = '500';
    else if (this.node.rollError()) what = 'errorRate';
    if (what === null) return false;
    this.node.countOutcome('faultsInjected');
    this.node.log.info({ fault: what, url: req.url }, 'fault injected');
    if (what === 'hang') {
      req.resume(); // read and drop the body; never answer
      return true;
    }
    if (what === '503') sendError(res, 503, OLLAMA_ERRORS.busy);
    else sendError(res, 500, 'llama runner process has terminated: exit status 2');
    return true;
  }

  private async handleAdmin(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const key = `${req.method} ${path}`;
    if (key === 'GET /_sim/state') return sendJson(res, 200, this.node.state());
    if (key === 'GET /_sim/faults') return sendJson(res, 200, this.node.faults());
    if (key === 'DELETE /_sim/faults') return sendJson(res, 200, this.node.clearFaults());
    if (key === 'POST /_sim/faults') {
      try {
        const update = parseFaults(await readJson(req));
        // Answer first: refusing connections would cut this very response.
        res.on('finish', () => this.node.setFaults(update));
        return sendJson(res, 200, { ...this.node.faults(), ...update }, { Connection: 'close' });
      } catch (err) {
        return sendError(res, 400, (err as Error).message);
      }
    }
    if (key === 'GET /_sim/script') return sendJson(res, 200, { rules: this.node.script() });
    if (key === 'DELETE /_sim/script') return sendJson(res, 200, { rules: this.node.setScript([]) });
    if (key === 'PUT /_sim/script') {
      try {
        return sendJson(res, 200, { rules: this.node.setScript(parseScript((await readJson(req))['rules'])) });
      } catch (err) {
        return sendError(res, 400, (err as Error).message);
      }
    }
    if (key === 'GET /_sim/requests') return sendJson(res, 200, this.node.requests());
    if (key === 'POST /_sim/temperature') {
      try {
        const body = await readJson(req);
        const c = body['celsius'];
        if (c !== null && typeof c !== 'number') throw new Error('celsius must be a number or null');
        this.node.setTemperature(c, { hold: body['hold'] !== false });
        return sendJson(res, 200, { temperatureC: this.node.temperature(), pinned: this.node.state().temperaturePinned });
      } catch (err) {
        return sendError(res, 400, (err as Error).message);
      }
    }
    return sendText(res, 404, '404 page not found');
  }
}
