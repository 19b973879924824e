/**
 * The experiment: every cluster size x arrival process x offered load x seed, each policy on
 * the same arrivals, plus the offline reference; and the scale measurement.
 */
import { Run, type Ablation } from './engine.js';
import type { BoundMetrics } from './bound.js';
import type { RunMetrics } from './metrics.js';
import { POLICIES, type PolicyName } from './policies.js';
import { arrivalsFor, capacity, runBound, runPolicy } from './scenario.js';
import type { Arrival } from './workload.js';

export interface GridOptions {
  sizes: number[];
  loads: number[];
  kinds: ('poisson' | 'bursty')[];
  seeds: number;
  requests: (size: number) => number;
  heat: boolean;
  progress?: (line: string) => void;
}

export interface Cell {
  size: number;
  kind: string;
  load: number;
  runs: Record<PolicyName, RunMetrics[]>;
  bound: BoundMetrics[];
}

export function emptyRuns(): Record<PolicyName, RunMetrics[]> {
  return Object.fromEntries(POLICIES.map((p) => [p, []])) as unknown as Record<PolicyName, RunMetrics[]>;
}

export function runGrid(o: GridOptions): Cell[] {
  const cells: Cell[] = [];
  const total = o.sizes.length * o.kinds.length * o.loads.length * o.seeds;
  let done = 0;
  const t0 = Date.now();
  for (const size of o.sizes) {
    for (const kind of o.kinds) {
      for (const load of o.loads) {
        const cell: Cell = { size, kind, load, runs: emptyRuns(), bound: [] };
        for (let seed = 1; seed <= o.seeds; seed++) {
          const arrivals = arrivalsFor({ size, kind, load, seed, requests: o.requests(size) });
          runAll(cell, size, arrivals, o.heat);
          done++;
          o.progress?.(`[${done}/${total}] ${size} nodes, ${kind}, load ${load}, seed ${seed} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
        }
        cells.push(cell);
      }
    }
  }
  return cells;
}

/** The ablation's variants of `balanced`: what the real problem has that the bound does not. */
export const ABLATIONS: readonly { name: string; ablate: Ablation }[] = [
  { name: 'balanced, as built', ablate: {} },
  { name: 'view at most 1 s old', ablate: { freshView: true } },
  { name: 'loads take no time', ablate: { freeLoads: true } },
  { name: 'both', ablate: { freshView: true, freeLoads: true } },
];

export interface AblationCell {
  size: number;
  load: number;
  /** Per variant (ABLATIONS' order), one run per seed. */
  runs: RunMetrics[][];
  bound: BoundMetrics[];
}

/** `balanced` with parts of the problem taken away, on the grid's own arrivals (Poisson, no heat). */
export function runAblation(o: Omit<GridOptions, 'kinds' | 'heat'>): AblationCell[] {
  const cells: AblationCell[] = [];
  for (const size of o.sizes) {
    for (const load of o.loads) {
      const cell: AblationCell = { size, load, runs: ABLATIONS.map(() => []), bound: [] };
      for (let seed = 1; seed <= o.seeds; seed++) {
        const arrivals = arrivalsFor({ size, kind: 'poisson', load, seed, requests: o.requests(size) });
        ABLATIONS.forEach((a, i) => cell.runs[i]!.push(new Run({ size, policy: 'balanced', arrivals, heat: false, ablate: a.ablate }).run()));
        cell.bound.push(runBound(size, arrivals));
      }
      o.progress?.(`ablation: ${size} nodes, load ${load} (${o.seeds} seeds)`);
      cells.push(cell);
    }
  }
  return cells;
}

export function runAll(cell: Cell, size: number, arrivals: readonly Arrival[], heat: boolean): void {
  for (const p of POLICIES) cell.runs[p].push(runPolicy(size, p, arrivals, heat));
  cell.bound.push(runBound(size, arrivals));
}

export interface ScaleResult {
  requests: number;
  nodes: number;
  cpuS: number;
  wallS: number;
  simHours: number;
  metrics: RunMetrics;
}

/** `requests` on `nodes` under balanced at 0.8 of capacity, CPU time measured. */
export function measureScale(nodes: number, requests: number, progress?: (line: string) => void): ScaleResult {
  const arrivals = arrivalsFor({ size: nodes, kind: 'poisson', load: 0.8, seed: 1, requests });
  progress?.(`scale: ${requests} requests on ${nodes} nodes (capacity ${capacity(nodes).toFixed(1)} req/s)`);
  const c0 = process.cpuUsage();
  const w0 = Date.now();
  const metrics = new Run({ size: nodes, policy: 'balanced', arrivals, heat: false }).run();
  const c = process.cpuUsage(c0);
  return { requests, nodes, cpuS: (c.user + c.system) / 1e6, wallS: (Date.now() - w0) / 1000, simHours: metrics.horizonS / 3600, metrics };
}
