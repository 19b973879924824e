/** The worker's endpoints as plain functions, and the server that serves them (src/lib/http.ts). */
import type { Registry } from 'prom-client';
import { startHttpServer, type HandlerResult, type HttpServerHandle } from '../lib/http.js';
import type { Logger } from '../lib/logger.js';
import { VERSION } from '../lib/version.js';

export const SERVICE = 'orion-inference-worker';

export interface WorkerStatus {
  nodeId: string;
  ollamaHost: string;
  concurrency: number;
  active: number;
  /** Whether Ollama answered the last probe and the worker takes jobs. */
  available: boolean;
  /** Redis's maxmemory-policy, whether work is taken under it, and the clock offset. */
  redis?: Record<string, unknown>;
}

/** `GET /health`: the guide's five keys in the guide's order, then a few more. */
export function healthHandler(status: () => WorkerStatus): () => HandlerResult {
  return () => {
    const s = status();
    return {
      status: 200,
      body: {
        status: 'ok',
        service: SERVICE,
        node_id: s.nodeId,
        version: VERSION,
        ollama: s.ollamaHost,
        concurrency: s.concurrency,
        active: s.active,
        available: s.available,
        ...(s.redis ? { redis: s.redis } : {}),
      },
    };
  };
}

/** `GET /metrics`: Prometheus text of the worker's own registry. */
export function metricsHandler(registry: Registry): () => Promise<HandlerResult> {
  return async () => ({ status: 200, body: await registry.metrics(), contentType: registry.contentType });
}

/** The worker's HTTP server: `/health` from `status`, `/metrics` from `registry`. */
export function startWorkerHttp(o: { host: string; port: number; log: Logger; registry: Registry; status: () => WorkerStatus }): Promise<HttpServerHandle> {
  return startHttpServer({
    host: o.host,
    port: o.port,
    log: o.log,
    routes: { '/health': healthHandler(o.status), '/metrics': metricsHandler(o.registry) },
  });
}
