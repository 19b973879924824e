/**
 * Where a request goes, for every part of the bridge that places a job (intake, hand-backs,
 * dead nodes, moves): `--routing guide` is the guide's rule (`choose` on the snapshot);
 * `--routing balanced` starts from the guide's choice and departs from it only to start the
 * request sooner (`balancedFrom`, src/router/balanced.ts), from
 *   - how busy each node is now (LoadTracker: the queues' counts plus this bridge's own
 *     placements since),
 *   - what answers and loads cost per node and model (CostLearner, fed from the observations
 *     every worker adds with its final answers),
 *   - loads under way: a node a job was sent to cold counts the model as loading there for the
 *     learned load time, so the next requests for the model see it as warm soon.
 * The Placer also remembers when each model was last asked for (keep-warm) and counts what
 * the balanced rule did (spills, cold loads, avoided cold loads).
 */
import { normalizeModel } from '../contracts/index.js';
import type { Routing } from '../contracts/types.js';
import type { RoutingMode } from '../config/router.js';
import { balancedFrom, type BalancedOptions, type FreeScan, type NodeLoad } from './balanced.js';
import type { CostLearner } from './learner.js';
import type { LoadTracker } from './load.js';
import { choose, type Choice, type Registry } from './registry.js';
import type { NodeView } from './routing.js';
import type { BridgeStats } from './stats.js';

/** What the balanced rule did with a placement (all false under the guide's rule but coldLoad). */
export interface PlacementFlags {
  spill: boolean;
  coldLoad: boolean;
  avoidedColdLoad: boolean;
}

export type Placed = { kind: 'routed'; node: NodeView; routing: Routing; etaMs?: number; flags: PlacementFlags };
export type PlaceChoice = Placed | Exclude<Choice, { kind: 'routed' }>;

export interface PlacerOptions {
  mode: RoutingMode;
  registry: Registry;
  load: LoadTracker;
  learner: CostLearner;
  stats: BridgeStats;
  balanced?: BalancedOptions;
  now?: () => number;
}

const key = (node: string, model: string): string => `${node}\u0000${model}`;

/**
 * Loads under way: model -> node -> since when (ms). Keyed model first so that weighing a
 * thousand nodes for one request builds no string per node (the routing's hottest lookup).
 */
class LoadsUnderWay {
  private readonly byModel = new Map<string, Map<string, number>>();

  get(nodeId: string, model: string): number | undefined {
    return this.byModel.get(model)?.get(nodeId);
  }

  /** Note a load of `model` started on `nodeId` now, unless one is noted already. */
  start(nodeId: string, model: string, now: number): void {
    let m = this.byModel.get(model);
    if (m === undefined) this.byModel.set(model, (m = new Map()));
    if (!m.has(nodeId)) m.set(nodeId, now);
  }

  delete(nodeId: string, model: string): void {
    const m = this.byModel.get(model);
    if (m?.delete(nodeId) && m.size === 0) this.byModel.delete(model);
  }

  /** Whether a load of `model` is under way anywhere. */
  hasModel(model: string): boolean {
    return this.byModel.has(model);
  }

  /** Any load under way at all (a quick way out for the common case). */
  get empty(): boolean {
    return this.byModel.size === 0;
  }

  prune(cutoff: number): void {
    for (const [model, m] of this.byModel) {
      for (const [node, t] of m) if (t < cutoff) m.delete(node);
      if (m.size === 0) this.byModel.delete(model);
    }
  }
}

export class Placer {
  /** node+model -> when a job was sent there cold (the load is counted as under way). */
  private readonly loadingSince = new LoadsUnderWay();
  /** Candidate lists of a snapshot in which no node had a free slot, and the load version then. */
  private readonly noneFree = new WeakMap<readonly NodeView[], number>();
  private readonly scan: FreeScan = {
    noneFree: (pool) => this.noneFree.get(pool) === this.o.load.version,
    sawNoneFree: (pool) => void this.noneFree.set(pool, this.o.load.version),
    // Loads under way shrink with the clock: with one of `want`, no stamp. Otherwise expected
    // starts only go up until a count lands lower (load version), an answer teaches the learner
    // something, or a candidate list changes (the index's version; a new snapshot has new lists).
    warmStamp: (want) => (this.loadingSince.hasModel(want) ? undefined : `${this.o.load.version}:${this.o.learner.version}:${this.o.registry.current().index.version}`),
  };
  /** model -> when it was last asked for (ms). */
  readonly lastDemand = new Map<string, number>();
  /** node+model -> when a job of the model was last placed there or answered there (ms). */
  readonly lastUse = new Map<string, number>();

  constructor(private readonly o: PlacerOptions) {}

  get mode(): RoutingMode {
    return this.o.mode;
  }

  get learner(): CostLearner {
    return this.o.learner;
  }

  now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** How busy `nodeId` is, with a load of `model` under way there when one was started. */
  readonly loadOf = (nodeId: string, model: string): NodeLoad => {
    const f = this.o.load.get(nodeId);
    if (this.loadingSince.empty) return f;
    const m = normalizeModel(model);
    const since = this.loadingSince.get(nodeId, m);
    if (since === undefined) return f;
    if (this.o.registry.reportsLoaded(nodeId, m)) {
      this.loadingSince.delete(nodeId, m);
      return f;
    }
    const left = since + this.o.learner.loadMs(nodeId, m) - this.now();
    return left > 0 ? { ...f, loadingMs: left } : f;
  };

  /** Choose a node for a job of `model` (avoiding `avoid` where another choice exists). */
  choose(model: string, avoid?: ReadonlySet<string>): PlaceChoice {
    const s = this.o.registry.current();
    const c = choose(s, model, avoid);
    const now = this.now();
    this.lastDemand.set(normalizeModel(model), now);
    if (c.kind !== 'routed') return c;
    if (this.o.mode === 'guide') return { ...c, flags: { spill: false, coldLoad: c.routing === 'fallback', avoidedColdLoad: false } };
    const d = balancedFrom(model, { kind: 'routed', node: c.node, routing: c.routing }, s.index.candidates(model), this.loadOf, this.o.learner, avoid, this.o.balanced, this.scan);
    if (d.kind !== 'routed') return { ...c, flags: { spill: false, coldLoad: c.routing === 'fallback', avoidedColdLoad: false } };
    // A node whose load is only anticipated is warm for the rule but not loaded yet: cold for the counters.
    const coldLoad = d.coldLoad;
    return { kind: 'routed', node: d.node, routing: d.routing, etaMs: d.etaMs, flags: { spill: d.spill, coldLoad, avoidedColdLoad: d.avoidedColdLoad } };
  }

  /**
   * A job of `model` is being placed on `nodeId` (first placement, hand-back, or move): count it
   * there at once, and a cold placement as a load under way.
   */
  placing(nodeId: string, model: string, routing: Routing): void {
    const m = normalizeModel(model);
    this.o.load.add(nodeId, 1);
    this.lastUse.set(key(nodeId, m), this.now());
    if (routing === 'fallback') {
      this.o.registry.noteLoading(nodeId, m);
      this.loadingSince.start(nodeId, m, this.now());
    }
  }

  /**
   * `write` puts jobs counted by `placing` into their queues: the next count of the queues waits
   * for it (LoadTracker.track). Returns `write`.
   */
  writing<T>(write: Promise<T>): Promise<T> {
    this.o.load.track(write);
    return write;
  }

  /** A job left `nodeId`'s queue without running there (moved away). */
  left(nodeId: string): void {
    this.o.load.add(nodeId, -1);
  }

  /**
   * Count what the rule did with a placement that is now in its queue: under either rule a
   * cold load is counted (the live page and the dashboard show them); spills and avoided cold
   * loads happen only under balanced.
   */
  count(nodeId: string, flags: PlacementFlags): void {
    this.o.stats.balanced(nodeId, flags);
  }

  /** An answer of `model` on `node` was observed at `at`. */
  answered(node: string, model: string, at: number): void {
    const k = key(node, normalizeModel(model));
    if ((this.lastUse.get(k) ?? 0) < at) this.lastUse.set(k, at);
  }

  /** Forget entries older than `maxAgeMs` (called now and then; the maps stay small). */
  prune(maxAgeMs: number): void {
    const cutoff = this.now() - maxAgeMs;
    this.loadingSince.prune(cutoff);
    for (const map of [this.lastDemand, this.lastUse]) for (const [k, t] of map) if (t < cutoff) map.delete(k);
  }
}
