/**
 * Prometheus metrics of one bridge process, on a registry of its own (names `orion_router_*`).
 * Queue depths and node gauges are read when scraped: depths from a short cache of BullMQ job
 * counts, node figures from the registry snapshot.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Snapshot } from './registry.js';

export const METRIC_PREFIX = 'orion_router_';

/** Job counts of one node queue. */
export interface QueueDepth {
  waiting: number;
  delayed: number;
  active: number;
  failed: number;
  completed: number;
}

export interface MetricsSources {
  snapshot(): Snapshot;
  /** Job counts per node queue (cached by the caller). */
  depths(): Promise<ReadonlyMap<string, QueueDepth>>;
}

export class RouterMetrics {
  readonly registry = new Registry();
  readonly routed: Counter<'node' | 'routing'>;
  readonly errors: Counter<'code'>;
  readonly timeouts: Counter;
  readonly rerouted: Counter<'reason'>;
  readonly duplicates: Counter;
  readonly dispatchLatency: Histogram;
  readonly spills: Counter<'node'>;
  readonly coldLoads: Counter<'node'>;
  readonly avoidedColdLoads: Counter;
  readonly moves: Counter<'from' | 'to'>;
  readonly moveGain: Histogram;
  /** Requests held for lack of a node (set by the held requests as they change). */
  readonly waiting: Gauge;
  readonly keepWarm: Counter<'node'>;
  readonly ramUnloads: Counter<'node'>;

  constructor(src: MetricsSources) {
    const registers = [this.registry];
    const p = METRIC_PREFIX;
    collectDefaultMetrics({ register: this.registry, prefix: p });
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> => new Counter({ name: `${p}${name}`, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: number[]): Histogram => new Histogram({ name: `${p}${name}`, help, buckets, registers });
    this.routed = counter('requests_routed_total', 'Requests placed on a node queue, by node and routing pass (sticky or fallback)', ['node', 'routing']);
    this.errors = counter('errors_total', 'Requests the bridge could not place, by error code', ['code']);
    this.timeouts = counter('timeouts_total', 'Requests answered timeout by this bridge');
    this.rerouted = counter(
      'rerouted_total',
      'Jobs moved to another node: notice = a worker handed it back, dead_node = its node went silent, unavailable_node = its node reported itself unavailable, drained_node = an operator drained its node',
      ['reason'],
    );
    this.duplicates = counter('duplicate_requests_total', 'Requests whose id was already known (answered from the existing job)');
    this.dispatchLatency = histogram('dispatch_latency_seconds', 'From the request entry (XADD time) to its job being in a node queue', [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
    this.spills = counter(
      'spills_total',
      "Placements (first or moved) on another node than the guide's rule would choose, to start sooner (--routing balanced), by the node chosen",
      ['node'],
    );
    this.coldLoads = counter('cold_loads_total', 'Placements on a node that must load the model first, by node', ['node']);
    this.avoidedColdLoads = counter('avoided_cold_loads_total', 'Placements on a busy warm node although a cold node had a free slot: waiting was cheaper than loading');
    this.moves = counter('moves_total', 'Waiting jobs moved to a node that could start them sooner by a clear margin (not attempts)', ['from', 'to']);
    this.moveGain = histogram('move_gain_seconds', 'Expected time to first token saved by each move', [1, 2, 5, 10, 20, 30, 60, 120, 300]);
    this.keepWarm = counter('keep_warm_total', 'Keep-alive renewals sent for the last warm copy of a model with recent demand, by node', ['node']);
    this.ramUnloads = counter('ram_unloads_total', 'Idle models a node over its RAM limit was asked to unload (least recently used first), by node', ['node']);
    this.waiting = new Gauge({ name: `${p}waiting_requests`, help: 'Requests held by this bridge for lack of an eligible node', registers });
    scrapedGauges(this.registry, src);
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Gauges read when scraped: the node queues' job counts and what each node last reported. */
function scrapedGauges(registry: Registry, src: MetricsSources): void {
  const registers = [registry];
  const p = METRIC_PREFIX;
  new Gauge({
    name: `${p}queue_jobs`,
    help: 'Jobs in each node queue by state (waiting includes prioritized)',
    labelNames: ['node', 'state'],
    registers,
    async collect() {
      this.reset();
      for (const [node, d] of await src.depths()) {
        for (const state of ['waiting', 'delayed', 'active', 'failed', 'completed'] as const) this.set({ node, state }, d[state]);
      }
    },
  });
  const nodeGauge = (name: string, help: string, value: (s: Snapshot, id: string) => number | undefined): void => {
    new Gauge({
      name: `${p}${name}`,
      help,
      labelNames: ['node'],
      registers,
      collect() {
        this.reset();
        const s = src.snapshot();
        for (const id of s.views.keys()) {
          const v = value(s, id);
          if (v !== undefined) this.set({ node: id }, v);
        }
      },
    });
  };
  const health = (s: Snapshot, id: string) => s.views.get(id)!;
  nodeGauge('node_cpu_percent', 'CPU use each node last reported', (s, id) => health(s, id).health.cpu_percent);
  nodeGauge('node_ram_percent', 'RAM use each node last reported', (s, id) => health(s, id).health.ram_percent);
  nodeGauge('node_temp_celsius', 'Temperature each node last reported (absent without a sensor)', (s, id) => health(s, id).health.temp_celsius ?? undefined);
  nodeGauge('node_loaded_models', 'Models each node reports loaded in Ollama', (s, id) => health(s, id).health.models.length);
  nodeGauge('node_eligible', '1 when the node gets requests, else 0', (s, id) => (health(s, id).eligible ? 1 : 0));
  nodeGauge('node_last_seen_seconds', 'Seconds since the node last reported', (s, id) => Math.max(0, (s.at - health(s, id).lastSeenMs) / 1000));
}
