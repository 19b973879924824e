/**
 * The part of every generating endpoint that is the same in both APIs: refuse at once what
 * cannot be placed (unknown model 404, no eligible node 503 + Retry-After), send the request on
 * the bus, hand its answers to the API's writer as they come (headers go out with the first
 * answer, so an error before any output still gets its own status), and cancel it when the
 * client goes away.
 */
import type { InferenceResponse } from '../contracts/types.js';
import type { ErrorCode } from '../lib/errors.js';
import type { BusClient, RequestBody } from './bus-client.js';
import type { Catalog } from './catalog.js';
import type { Exchange } from './exchange.js';
import type { GatewayMetrics } from './metrics.js';

/** Seconds a client is told to wait before trying again when no node can serve it now. */
export const RETRY_AFTER_S = 5;

export interface RelayDeps {
  bus: BusClient;
  catalog: Catalog;
  metrics: GatewayMetrics;
}

/** How one API writes what the bus answers. */
export interface Writer {
  /** Answer with an error, before anything else was written. */
  fail(status: number, code: ErrorCode, message: string, headers?: Record<string, string>): void;
  /** Start the stream (first partial, or the final answer of a streamed call). */
  start(): void;
  partial(doc: InferenceResponse): void;
  final(doc: InferenceResponse): void;
  /** An error after the stream started. */
  streamError(code: ErrorCode, message: string): void;
}

/** The HTTP status of a bus error code. */
export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case 'invalid_request':
      return 400;
    case 'model_not_found':
      return 404;
    case 'no_healthy_node':
    case 'overloaded':
      return 503;
    case 'timeout':
      return 504;
    case 'backend_error':
      return 502;
    case 'cancelled':
      return 499;
    case 'internal':
      return 500;
  }
}

/** Headers that go with an error status (Retry-After on 503). */
export function headersFor(status: number): Record<string, string> {
  return status === 503 ? { 'Retry-After': String(RETRY_AFTER_S) } : {};
}

export async function relay(x: Exchange, deps: RelayDeps, api: 'openai' | 'ollama', body: RequestBody, stream: boolean, w: Writer): Promise<void> {
  const avail = await deps.catalog.availability(body.model);
  if (avail.kind === 'unknown') return w.fail(404, 'model_not_found', `model '${body.model}' not found`);
  if (avail.kind === 'unavailable') return w.fail(503, 'no_healthy_node', avail.reason, headersFor(503));
  const call = await deps.bus.send({ ...body, stream });
  const started = Date.now();
  const onClose = (): void => {
    if (call.done) return;
    deps.metrics.cancelled.inc({ api });
    x.log.info({ request_id: call.id, path: x.path }, 'client went away: request cancelled');
    void call.cancel();
  };
  x.closed.addEventListener('abort', onClose, { once: true });
  let open = false;
  let first = true;
  try {
    for await (const doc of call) {
      if (x.closed.aborted) return;
      if (first) deps.metrics.firstAnswer.observe({ api }, (Date.now() - started) / 1000);
      first = false;
      if (doc.error) {
        if (open) return w.streamError(doc.error.code, doc.error.message);
        const status = httpStatusOf(doc.error.code);
        return w.fail(status, doc.error.code, doc.error.message, headersFor(status));
      }
      if ((!doc.done || stream) && !open) {
        w.start();
        open = true;
      }
      if (doc.done) {
        if (typeof doc.eval_count === 'number') deps.metrics.tokens.inc({ api }, doc.eval_count);
        return w.final(doc);
      }
      w.partial(doc);
    }
  } finally {
    x.closed.removeEventListener('abort', onClose);
  }
}
