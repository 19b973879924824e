/** Prometheus metrics of the gateway, on a registry of its own (names `orion_gateway_*`). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const GATEWAY_METRIC_PREFIX = 'orion_gateway_';

export class GatewayMetrics {
  readonly registry = new Registry();
  /** Calls answered, by API, endpoint and HTTP status. */
  readonly requests: Counter<'api' | 'endpoint' | 'status'>;
  /** Time from receiving a call to its answer's end. */
  readonly duration: Histogram<'api' | 'endpoint'>;
  /** Time from sending a request on the bus to its first answer (partial or final) coming back. */
  readonly firstAnswer: Histogram<'api'>;
  readonly inFlight: Gauge<'api'>;
  /** Requests cancelled because their client went away. */
  readonly cancelled: Counter<'api'>;
  /** Tokens generated for the gateway's calls (eval_count of final answers). */
  readonly tokens: Counter<'api'>;

  constructor() {
    const registers = [this.registry];
    const p = GATEWAY_METRIC_PREFIX;
    collectDefaultMetrics({ register: this.registry, prefix: p });
    this.requests = new Counter({ name: `${p}requests_total`, help: 'HTTP calls answered, by API (openai, ollama, other), endpoint and status', labelNames: ['api', 'endpoint', 'status'], registers });
    this.duration = new Histogram({
      name: `${p}request_duration_seconds`,
      help: 'Time from receiving an HTTP call to the end of its answer',
      labelNames: ['api', 'endpoint'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.firstAnswer = new Histogram({
      name: `${p}time_to_first_answer_seconds`,
      help: 'Time from sending a request on the bus to its first answer (first token when streamed) coming back',
      labelNames: ['api'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.inFlight = new Gauge({ name: `${p}in_flight`, help: 'HTTP calls being answered now', labelNames: ['api'], registers });
    this.cancelled = new Counter({ name: `${p}cancelled_total`, help: 'Requests cancelled on the bus because their HTTP client went away', labelNames: ['api'], registers });
    this.tokens = new Counter({ name: `${p}tokens_total`, help: 'Tokens generated for the gateway (eval_count of final answers)', labelNames: ['api'], registers });
  }
}
