/**
 * A scenario: a cluster size, an arrival process at an offered load, a seed; run under every
 * policy on the same arrivals, plus the offline reference.
 */
import { buildCluster, throughput } from './cluster.js';
import { offlineBound, type BoundMetrics } from './bound.js';
import { Run, warmStart } from './engine.js';
import type { RunMetrics } from './metrics.js';
import type { PolicyName } from './policies.js';
import { EVAL_MEDIAN, EVAL_P90, PROMPT_MEDIAN, PROMPT_P90, generate, lognormalMean, modelWeights, type Arrival } from './workload.js';

export interface Scenario {
  size: number;
  kind: 'poisson' | 'bursty' | 'replay';
  load: number;
  seed: number;
  requests: number;
  heat?: boolean;
}

/** Requests per second the cluster completes at full use, for the catalogue's popularity mix. */
export function capacity(size: number): number {
  const nodes = buildCluster(size);
  const mix = modelWeights();
  const p = lognormalMean(PROMPT_MEDIAN, PROMPT_P90);
  const e = lognormalMean(EVAL_MEDIAN, EVAL_P90);
  return nodes.reduce((acc, n) => acc + throughput(n, mix, p, e), 0);
}

export function arrivalsFor(s: Scenario): Arrival[] {
  if (s.kind === 'replay') throw new Error('replay scenarios carry their own arrivals');
  return generate(s.kind, s.requests, s.load * capacity(s.size), s.seed);
}

export function runPolicy(size: number, policy: PolicyName, arrivals: readonly Arrival[], heat = true): RunMetrics {
  return new Run({ size, policy, arrivals, heat }).run();
}

export function runBound(size: number, arrivals: readonly Arrival[]): BoundMetrics {
  const nodes = buildCluster(size);
  warmStart(nodes);
  const initial = new Map<string, number>();
  for (const n of nodes) for (const m of n.copies.keys()) initial.set(m, (initial.get(m) ?? 0) + 1);
  return offlineBound(nodes, arrivals, initial);
}
