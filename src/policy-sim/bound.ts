/**
 * The offline reference, computed from the whole arrival list known in advance. Both parts are
 * relaxations of the real problem, so no routing policy should beat them:
 *
 * - Latency ("pooled ideal"): every job slot of the cluster serves one shared queue in arrival
 *   order; every model is loaded everywhere (no load ever); no heat, no staleness; each job goes
 *   to the slot where its first token comes soonest among those that can run its model, and a
 *   node's slots run at the speed of all its slots busy. A dispatcher that commits each request
 *   to one node's queue, loads models and runs hot nodes can only do worse on the mean wait;
 *   for percentiles this is the usual pooled-queue yardstick, not a theorem.
 * - Cold loads: for each model, the average number of slots busy with it over the run,
 *   divided by the most slots a node has, rounded up, is a number of copies that must exist
 *   at once at some moment; each copy beyond those loaded at the start needs a load.
 */
import { serviceMs, type SimNode } from './cluster.js';
import { TimeHeap } from './heap.js';
import { latencies, type LatencyMetrics } from './metrics.js';
import type { Arrival } from './workload.js';

export interface BoundMetrics extends LatencyMetrics {
  coldLoads: number;
}

export function offlineBound(nodes: readonly SimNode[], arrivals: readonly Arrival[], initial: ReadonlyMap<string, number>): BoundMetrics {
  // One heap of free times per node kind would be exact; a heap of slots ordered by free time
  // with a short look-ahead for capability and speed is close enough and fast.
  const heap = new TimeHeap<{ node: SimNode; free: number }>();
  for (const n of nodes) for (let s = 0; s < n.slots; s++) heap.push(0, { node: n, free: 0 });
  const ttft = new Float64Array(arrivals.length);
  const e2e = new Float64Array(arrivals.length);
  const busyByModel = new Map<string, number>();
  let horizon = 0;
  const LOOK = 8;
  arrivals.forEach((a, i) => {
    const seen: { node: SimNode; free: number }[] = [];
    let best: { slot: { node: SimNode; free: number }; start: number; first: number; end: number } | undefined;
    while (heap.size > 0 && (seen.length < LOOK || best === undefined)) {
      const slot = heap.pop()!;
      seen.push(slot);
      if (!slot.node.installed.includes(a.model)) continue;
      const t = serviceMs(slot.node, a, slot.node.slots);
      const start = Math.max(a.at, slot.free);
      const first = start + t.promptMs;
      if (best === undefined || first < best.first) best = { slot, start, first, end: first + t.evalMs };
      if (slot.free <= a.at && best.slot === slot) break;
    }
    for (const s of seen) {
      if (best !== undefined && s === best.slot) s.free = best.end;
      heap.push(s.free, s);
    }
    if (best === undefined) throw new Error(`no node can run ${a.model}`);
    ttft[i] = best.first - a.at;
    e2e[i] = best.end - a.at;
    horizon = Math.max(horizon, best.end);
    busyByModel.set(a.model, (busyByModel.get(a.model) ?? 0) + (best.end - best.start));
  });
  const maxSlots = Math.max(...nodes.map((n) => n.slots));
  let cold = 0;
  for (const [m, busy] of busyByModel) {
    const copies = Math.max(1, Math.ceil(busy / Math.max(horizon, 1) / maxSlots));
    cold += Math.max(0, copies - (initial.get(m) ?? 0));
  }
  return {
    ...latencies(ttft, e2e),
    coldLoads: cold,
  };
}
