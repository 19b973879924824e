/**
 * The parts of the bridge behind `--routing balanced`, built and run together: how busy each
 * node is (LoadTracker), what answers and loads cost (CostLearner, fed by ObservationReader),
 * where each job goes (Placer), rebalancing of waiting jobs (Mover), warm copies (KeepWarm)
 * and unloads on nodes over their RAM limit (RamRelief). After each registry refresh, in one
 * go: count the queues, learn from new answers, then (balanced only) move, keep warm and
 * relieve RAM. Under `--routing guide` the counts and the
 * learning still run (for `/requests/{id}`'s ETA), the choices are the guide's, nothing moves.
 */
import type { Redis } from 'ioredis';
import type { RouterConfig } from '../config/router.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import type { Dispatcher } from './dispatcher.js';
import { KeepWarm } from './keepwarm.js';
import { CostLearner } from './learner.js';
import { LoadTracker } from './load.js';
import { etaInPlace } from './moves.js';
import { Mover } from './mover.js';
import { ArrivalRecorder, ObservationReader } from './observations.js';
import { Placer } from './placer.js';
import { RamRelief } from './relief.js';
import type { Registry, Snapshot } from './registry.js';
import type { BridgeStats } from './stats.js';
import type { EtaSource } from './where.js';

export interface BalancingOptions {
  config: Pick<RouterConfig, 'routing' | 'defaultLoadTime' | 'defaultAnswerTime' | 'modelKeepAlive' | 'recordArrivals'>;
  redis: Redis;
  n: Names;
  registry: Registry;
  dispatcher: Dispatcher;
  stats: BridgeStats;
  log: (component: string) => Logger;
}

export class Balancing {
  readonly load: LoadTracker;
  readonly learner: CostLearner;
  readonly placer: Placer;
  private readonly reader: ObservationReader;
  private readonly recorder: ArrivalRecorder | undefined;
  private readonly mover: Mover | undefined;
  private readonly keepWarm: KeepWarm | undefined;
  private readonly relief: RamRelief | undefined;
  private failures = 0;
  /** Health documents whose model sizes were already given to the learner (parsed once each). */
  private readonly sized = new WeakSet<object>();

  constructor(private readonly o: BalancingOptions) {
    const { config, redis, n, registry, dispatcher, stats, log } = o;
    this.load = new LoadTracker(redis, n);
    this.learner = new CostLearner({ loadMs: config.defaultLoadTime, answerMs: config.defaultAnswerTime });
    this.placer = new Placer({ mode: config.routing, registry, load: this.load, learner: this.learner, stats });
    this.recorder = config.recordArrivals ? new ArrivalRecorder(config.recordArrivals, log('arrivals')) : undefined;
    this.reader = new ObservationReader({
      redis,
      n,
      log: log('learner'),
      onObservation: (obs) => {
        this.learner.observe(obs.node, obs.model, obs);
        this.placer.answered(obs.node, obs.model, obs.at);
        this.recorder?.add(obs);
      },
    });
    if (config.routing === 'balanced') {
      this.mover = new Mover({ redis, n, log: log('mover'), dispatcher, placer: this.placer, load: this.load, stats });
      this.relief = new RamRelief({ redis, n, log: log('ram-relief'), dispatcher, placer: this.placer, stats });
      if (config.modelKeepAlive > 0) {
        this.keepWarm = new KeepWarm({ redis, n, log: log('keep-warm'), dispatcher, placer: this.placer, stats, modelKeepAliveMs: config.modelKeepAlive });
      }
    }
  }

  /** After each registry refresh: counts, learning, then moves and warm copies. */
  async afterRefresh(s: Snapshot): Promise<void> {
    // Sizes first, so a cold load read below already turns into the node's load rate.
    this.learnSizes(s);
    try {
      await Promise.all([this.load.refresh(s.known), this.reader.poll()]);
      this.failures = 0;
    } catch (err) {
      if (this.failures++ === 0) this.o.log('balancing').warn({ err: (err as Error).message }, 'queue counts or observations not read; using the last ones');
    }
    await this.recorder?.flush();
    this.placer.prune(3600_000);
    await this.mover?.pass(s);
    await this.keepWarm?.pass(s).catch(() => undefined);
    await this.relief?.pass(s).catch(() => undefined);
  }

  /**
   * Give the learner the model sizes nodes publish (`installed_sizes_mb`), so a model a node
   * never loaded is estimated at its size over that node's load rate. Only documents that
   * changed since the last refresh are looked at: the registry keeps an unchanged one's object.
   */
  private learnSizes(s: Snapshot): void {
    for (const v of s.views.values()) {
      if (this.sized.has(v.health)) continue;
      this.sized.add(v.health);
      if (v.health.installed_sizes_mb !== undefined) this.learner.noteSizes(v.health.installed_sizes_mb);
    }
  }

  async stop(): Promise<void> {
    await this.mover?.stop();
    await this.recorder?.flush();
  }

  /** Times for `/requests/{id}`. */
  etaSource(isHeld: (id: string) => boolean): EtaSource {
    return {
      startIn: (nodeId, model, ahead) => etaInPlace({ model, nodeId, ahead }, this.o.registry.current().views.get(nodeId), this.placer.loadOf, this.learner),
      answerMs: (nodeId, model) => this.learner.answerMs(nodeId, model),
      isHeld,
    };
  }
}
