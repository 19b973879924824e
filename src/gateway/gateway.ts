/**
 * `orion-inference-gateway`: OpenAI's and Ollama's HTTP APIs in front of the bus (SPEC.md
 * section 9). It routes nothing itself: each call is one request on `{p}:requests`.
 *
 * Owns: the HTTP server, a command connection (adds, cancels, the registry reads), the reader
 * pool of the bus client, the catalog's refresh timer. `close()` stops taking calls (503),
 * lets the calls in hand finish for a short while, then closes the connections.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { GatewayConfig } from '../config/gateway.js';
import type { Logger } from '../lib/logger.js';
import { names } from '../lib/names.js';
import { connectRedis } from '../lib/redis.js';
import { VERSION } from '../lib/version.js';
import { BusClient } from './bus-client.js';
import { Catalog } from './catalog.js';
import { BodyError, Exchange } from './exchange.js';
import { GatewayMetrics } from './metrics.js';
import * as ollama from './ollama.js';
import * as openai from './openai.js';
import type { RelayDeps } from './relay.js';

export const GATEWAY_SERVICE = 'orion-inference-gateway';

type Api = 'openai' | 'ollama' | 'other';
type Route = { api: Api; endpoint: string; run: (x: Exchange, d: RelayDeps, param: string) => Promise<void> | void };

const running = (x: Exchange): void => x.sendText(200, 'Ollama is running');

/** The route of a method and path, or undefined (404). `/v1/models/{id}` carries its id. */
function routeOf(method: string, path: string): { route: Route; param: string } | undefined {
  const r = (api: Api, endpoint: string, run: Route['run']): { route: Route; param: string } => ({ route: { api, endpoint, run }, param: '' });
  const get = method === 'GET' || method === 'HEAD';
  if (path.startsWith('/v1/models/') && get) {
    const id = decodeURIComponent(path.slice('/v1/models/'.length));
    return { route: { api: 'openai', endpoint: '/v1/models/{id}', run: (x, d) => openai.getModel(x, d, id) }, param: id };
  }
  const key = `${get ? 'GET' : method} ${path}`;
  switch (key) {
    case 'POST /v1/chat/completions': return r('openai', path, openai.chatCompletions);
    case 'POST /v1/completions': return r('openai', path, openai.completions);
    case 'POST /v1/embeddings': return r('openai', path, openai.embeddings);
    case 'GET /v1/models': return r('openai', path, openai.listModels);
    case 'POST /api/chat': return r('ollama', path, ollama.chat);
    case 'POST /api/generate': return r('ollama', path, ollama.generate);
    case 'POST /api/embed': return r('ollama', path, (x, d) => ollama.embed(x, d));
    case 'POST /api/embeddings': return r('ollama', path, (x, d) => ollama.embed(x, d, true));
    case 'GET /api/tags': return r('ollama', path, ollama.tags);
    case 'GET /api/ps': return r('ollama', path, ollama.ps);
    case 'POST /api/show': return r('ollama', path, ollama.show);
    case 'GET /api/version': return r('ollama', path, ollama.version);
    case 'GET /': return r('ollama', path, running);
    default: return undefined;
  }
}

export interface GatewayHandle {
  readonly port: number;
  close(): Promise<void>;
}

export interface GatewayDeps {
  log: Logger;
  /** Registry refresh interval. @defaultValue 1000 */
  refreshMs?: number;
}

export async function createGateway(config: GatewayConfig, deps: GatewayDeps): Promise<GatewayHandle> {
  const gw = new Gateway(config, deps);
  await gw.listen();
  return gw;
}

class Gateway implements GatewayHandle {
  private readonly redis: Redis;
  private readonly bus: BusClient;
  private readonly catalog: Catalog;
  private readonly metrics = new GatewayMetrics();
  private readonly server: Server;
  private readonly key: Buffer | undefined;
  private readonly log: Logger;
  private closing = false;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly config: GatewayConfig,
    deps: GatewayDeps,
  ) {
    this.log = deps.log;
    const n = names(config.streamPrefix);
    this.redis = connectRedis(config, deps.log, 'orion-gateway');
    this.bus = new BusClient({ redis: this.redis, newReader: () => connectRedis(config, deps.log, 'orion-gateway:reader'), n, log: deps.log, timeoutMs: config.requestTimeout });
    const catalog = { redis: this.redis, n, log: deps.log };
    this.catalog = new Catalog(deps.refreshMs === undefined ? catalog : { ...catalog, refreshMs: deps.refreshMs });
    this.key = config.apiKey ? Buffer.from(config.apiKey) : undefined;
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 65_000;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async listen(): Promise<void> {
    this.catalog.start();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.config.httpPort, this.config.httpAddr, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.log.info({ http_port: this.port, http_addr: this.config.httpAddr, prefix: this.config.streamPrefix, auth: this.key !== undefined, version: VERSION }, 'gateway started');
  }

  /** Whether the call carries the API key (or none is set). */
  private authorized(req: IncomingMessage): boolean {
    if (!this.key) return true;
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    const given = Buffer.from(m?.[1]?.trim() ?? '');
    return given.length === this.key.length && timingSafeEqual(given, this.key);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const x = new Exchange(req, res, path, this.log);
    const method = req.method ?? 'GET';
    if (path === '/metrics' || path === '/health') return this.ops(x, path);
    const found = routeOf(method, path);
    const api: Api = found?.route.api ?? (path.startsWith('/v1/') ? 'openai' : path.startsWith('/api/') ? 'ollama' : 'other');
    const endpoint = found?.route.endpoint ?? 'unknown';
    const started = Date.now();
    this.metrics.inFlight.inc({ api });
    try {
      await this.dispatch(x, api, found);
    } catch (err) {
      this.fail(x, api, err);
    } finally {
      this.metrics.inFlight.dec({ api });
      this.metrics.requests.inc({ api, endpoint, status: String(x.status || (x.closed.aborted ? 499 : 500)) });
      this.metrics.duration.observe({ api, endpoint }, (Date.now() - started) / 1000);
    }
  }

  private async dispatch(x: Exchange, api: Api, found: ReturnType<typeof routeOf>): Promise<void> {
    const err = (status: number, code: 'invalid_api_key' | 'not_found' | 'internal', message: string, headers: Record<string, string> = {}): void =>
      api === 'openai' ? openai.openaiError(x, status, code, message, null, headers) : ollama.ollamaError(x, status, message, headers);
    if (this.closing) return err(503, 'internal', 'the gateway is shutting down', { Connection: 'close', 'Retry-After': '5' });
    if (!found) return err(404, 'not_found', api === 'openai' ? `Unknown request URL: ${x.req.method} ${x.path}` : '404 page not found');
    const open = x.path === '/';
    if (!open && !this.authorized(x.req)) {
      return api === 'openai' ? openai.openaiError(x, 401, 'invalid_api_key', 'Incorrect API key provided. Send it as "Authorization: Bearer <key>".') : ollama.ollamaError(x, 401, 'unauthorized');
    }
    await found.route.run(x, { bus: this.bus, catalog: this.catalog, metrics: this.metrics }, found.param);
  }

  private fail(x: Exchange, api: Api, err: unknown): void {
    const status = err instanceof BodyError ? err.status : 500;
    if (status === 500) this.log.error({ err, path: x.path }, 'call failed');
    if (x.headersSent) return x.end();
    const message = (err as Error).message ?? String(err);
    if (api === 'openai') openai.openaiError(x, status, status === 500 ? 'internal' : 'invalid_request', message);
    else ollama.ollamaError(x, status, message);
  }

  private async ops(x: Exchange, path: string): Promise<void> {
    if (path === '/health') {
      const s = await this.catalog.snapshot().catch(() => undefined);
      const ok = !this.closing && this.redis.status === 'ready';
      return x.sendJson(ok ? 200 : 503, { status: ok ? 'ok' : 'unavailable', redis: this.redis.status === 'ready', eligible_nodes: s?.eligible.length ?? 0, version: VERSION });
    }
    const text = await this.metrics.registry.metrics();
    x.status = 200;
    x.res.writeHead(200, { 'Content-Type': this.metrics.registry.contentType });
    x.res.end(text);
  }

  close(): Promise<void> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    const drained = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // Calls in hand get a few seconds to finish; then their connections are cut (which cancels them).
    const cut = setTimeout(() => this.server.closeAllConnections(), 5000);
    await drained;
    clearTimeout(cut);
    // A registry read or QUIT waits for Redis; with Redis gone it would wait for ever (the
    // connection retries), so each gets a second.
    const second = (): Promise<void> => new Promise((r) => setTimeout(r, 1000).unref());
    await Promise.race([this.catalog.stop().catch((err: unknown) => this.log.warn({ err }, 'catalog stop failed')), second()]);
    this.bus.close();
    const quit = this.redis.status === 'ready' ? this.redis.quit().catch(() => undefined) : Promise.resolve();
    await Promise.race([quit, second()]);
    this.redis.disconnect();
    this.log.info({}, 'gateway stopped');
  }
}
