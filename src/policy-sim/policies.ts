/**
 * The routing policies the simulator compares. `guide` and `balanced` call the bridge's own
 * routing code (src/router/routing*.ts, balanced.ts, moves.ts); the others are the baselines
 * that other routers use (ROUTING-NOTES.md), written here on the same view of the cluster.
 */
import { balancedFrom, type LoadOf, type NodeLoad } from '../router/balanced.js';
import type { CostLearner } from '../router/learner.js';
import type { NodeView } from '../router/routing.js';
import { hash32 } from './random.js';
import type { SimNode } from './cluster.js';
import type { BridgeView } from './view.js';

export const POLICIES = ['round-robin', 'least-loaded', 'guide', 'warm-first', 'chwbl', 'balanced'] as const;
export type PolicyName = (typeof POLICIES)[number];

export interface Placement {
  node: number;
  spill?: boolean;
  avoidedColdLoad?: boolean;
}

export interface PolicyContext {
  nodes: readonly SimNode[];
  view: BridgeView;
  learner: CostLearner;
  byId: ReadonlyMap<string, SimNode>;
}

export type Policy = (model: string, ctx: PolicyContext) => Placement | undefined;

const inflight = (n: SimNode): number => n.queue.length + n.running;

/**
 * The bridge's own counts per node. One scratch object is reused: the routing code reads the
 * fields at once and keeps nothing (a million requests on 1,000 nodes allocate less).
 */
export function loadFn(ctx: PolicyContext): LoadOf {
  const scratch: NodeLoad = { waiting: 0, running: 0 };
  return (id: string): NodeLoad => {
    const n = ctx.byId.get(id);
    scratch.waiting = n === undefined ? 0 : n.queue.length;
    scratch.running = n === undefined ? 0 : n.running;
    return scratch;
  };
}

function leastInflight(list: readonly NodeView[], ctx: PolicyContext, keep: (n: SimNode) => boolean): SimNode | undefined {
  let best: SimNode | undefined;
  for (const v of list) {
    const n = ctx.byId.get(v.health.node_id)!;
    if (keep(n) && (best === undefined || inflight(n) < inflight(best))) best = n;
  }
  return best;
}

function roundRobin(): Policy {
  const cursor = new Map<string, number>();
  return (model, ctx) => {
    const N = ctx.nodes.length;
    const start = cursor.get(model) ?? 0;
    for (let k = 0; k < N; k++) {
      const i = (start + k) % N;
      const v = ctx.view.views[i]!;
      if (v.eligible && v.installed?.has(model)) {
        cursor.set(model, i + 1);
        return { node: i };
      }
    }
    return undefined;
  };
}

function leastLoaded(): Policy {
  return (model, ctx) => {
    const n = leastInflight(ctx.view.index.candidates(model).installed, ctx, () => true);
    return n && { node: n.index };
  };
}

function guide(): Policy {
  return (model, ctx) => {
    const d = ctx.view.index.pick(model);
    return d.kind === 'routed' ? { node: ctx.byId.get(d.node.health.node_id)!.index } : undefined;
  };
}

/** Loaded and a free slot, else any free slot, else the fewest in flight (warm on ties). */
function warmFirst(): Policy {
  return (model, ctx) => {
    const c = ctx.view.index.candidates(model);
    const free = (n: SimNode): boolean => inflight(n) < n.slots;
    const n =
      leastInflight(c.loaded, ctx, free) ??
      leastInflight(c.installed, ctx, free) ??
      pickLeast(leastInflight(c.loaded, ctx, () => true), leastInflight(c.installed, ctx, () => true));
    return n && { node: n.index };
  };
}

function pickLeast(warm: SimNode | undefined, cold: SimNode | undefined): SimNode | undefined {
  if (warm === undefined) return cold;
  if (cold === undefined) return warm;
  return inflight(cold) < inflight(warm) ? cold : warm;
}

/**
 * Consistent hashing with bounded loads (Mirrokni et al.; KubeAI's CHWBL): the model's key
 * walks a ring of 64 virtual points per node; the first eligible node with the model installed
 * whose load (jobs in flight) stays within ceil(1.25 x (total + 1) / n) takes it.
 */
function chwbl(nodes: readonly SimNode[], c = 1.25): Policy {
  const points: { h: number; node: number }[] = [];
  for (const n of nodes) for (let k = 0; k < 64; k++) points.push({ h: hash32(`${n.id}#${k}`), node: n.index });
  points.sort((a, b) => a.h - b.h || a.node - b.node);
  const hs = Uint32Array.from(points.map((p) => p.h));
  return (model, ctx) => {
    const cands = ctx.view.index.candidates(model).installed;
    if (cands.length === 0) return undefined;
    let total = 0;
    for (const v of cands) total += inflight(ctx.byId.get(v.health.node_id)!);
    const bound = Math.ceil((c * (total + 1)) / cands.length);
    let lo = 0;
    let hi = hs.length;
    const key = hash32(model);
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (hs[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    for (let k = 0; k < points.length; k++) {
      const p = points[(lo + k) % points.length]!;
      const n = nodes[p.node]!;
      const v = ctx.view.views[p.node]!;
      if (v.eligible && v.installed?.has(model) && inflight(n) + 1 <= bound) return { node: p.node };
    }
    return undefined;
  };
}

function balanced(): Policy {
  let load: LoadOf | undefined;
  return (model, ctx) => {
    const index = ctx.view.index;
    load ??= loadFn(ctx);
    const d = balancedFrom(model, index.pick(model), index.candidates(model), load, ctx.learner);
    if (d.kind !== 'routed') return undefined;
    return { node: ctx.byId.get(d.node.health.node_id)!.index, spill: d.spill, avoidedColdLoad: d.avoidedColdLoad };
  };
}

export function makePolicy(name: PolicyName, nodes: readonly SimNode[]): Policy {
  switch (name) {
    case 'round-robin':
      return roundRobin();
    case 'least-loaded':
      return leastLoaded();
    case 'guide':
      return guide();
    case 'warm-first':
      return warmFirst();
    case 'chwbl':
      return chwbl(nodes);
    case 'balanced':
      return balanced();
  }
}
