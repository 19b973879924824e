/**
 * P9: balanced routing with the real programs (the built bridge and workers on nodes of the
 * Ollama simulator at 10x), the burst goals of issue "A cluster, not one Pi": (a) a burst onto
 * nodes that all have the model loaded finishes within 1.25x an even split; (b) when a cold load
 * pays off, within 1.35x the best split; (c) when waiting is cheaper, no cold load at all; and
 * (d) a burst queued on the only node up spreads to nodes that come up after it (held to (a)'s
 * 1.25x, against the best split from the moment the bridge sees them). The
 * setup and the measures are fault row 40's (`test/faults/burst.ts`), run `runs` times; each
 * row is the median, and every run's figure is printed.
 */
import { coldPays, lateNodes, waitCheaper, warmBurst, type Run } from '../test/faults/burst.js';
import { fmtNum, median, type RowResult } from './lib.js';

export interface BurstOptions {
  runs: number;
  log(line: string): void;
}

/** Answers given twice and error answers of a run (a run with any does not meet its goal). */
const faults = (r: Run): number => r.twice.length + r.errors.length;

export async function runBurstRows(o: BurstOptions): Promise<RowResult[]> {
  const warm: { ratio: number; run: Run; even: number }[] = [];
  const cold: { ratio: number; run: Run; best: number }[] = [];
  const wait: { coldLoads: number; slowLoads: number; run: Run }[] = [];
  const late: { ratio: number; run: Run; best: number; joinMs: number }[] = [];
  for (let i = 0; i < o.runs; i++) {
    const a = await warmBurst(`p9a-${i}`);
    o.log(`  run ${i + 1}: warm burst ${fmtNum(a.run.makespan)} ms vs even split ${fmtNum(a.even)} ms = ${fmtNum(a.ratio, 2)}, per node ${JSON.stringify(a.run.perNode)}`);
    warm.push(a);
    const b = await coldPays(`p9b-${i}`);
    o.log(`  run ${i + 1}: cold load pays ${fmtNum(b.run.makespan)} ms vs best split ${fmtNum(b.best)} ms = ${fmtNum(b.ratio, 2)}, per node ${JSON.stringify(b.run.perNode)}`);
    cold.push(b);
    const c = await waitCheaper(`p9c-${i}`);
    o.log(`  run ${i + 1}: waiting cheaper: cold loads ${c.coldLoads}, answers that paid a load ${c.slowLoads}, per node ${JSON.stringify(c.run.perNode)}`);
    wait.push(c);
    const d = await lateNodes(`p9d-${i}`);
    o.log(`  run ${i + 1}: late nodes ${fmtNum(d.run.makespan)} ms vs best split from the join (${fmtNum(d.joinMs)} ms) ${fmtNum(d.best)} ms = ${fmtNum(d.ratio, 2)}, per node ${JSON.stringify(d.run.perNode)}, moves ${String(d.run.stats['moves'])}`);
    late.push(d);
  }
  const runsOf = (xs: number[], digits = 2): string => `runs: ${xs.map((x) => fmtNum(x, digits)).join(', ')}`;
  const bad = (xs: { run: Run }[]): string => {
    const n = xs.reduce((s, x) => s + faults(x.run), 0);
    return n === 0 ? 'none answered twice or with an error' : `**${n} answered twice or with an error**`;
  };
  const clean = (xs: { run: Run }[]): boolean => xs.every((x) => faults(x.run) === 0);
  /** A row of makespan / a reference split, the median of the runs, met at or under `limit`. */
  const ratioRow = (measure: string, xs: { ratio: number; run: Run; ref: number }[], limit: number, more = ''): RowResult => {
    const value = median(xs.map((x) => x.ratio));
    return {
      row: 'P9',
      measure,
      detail: `${fmtNum(median(xs.map((x) => x.run.makespan)))} ms vs ${fmtNum(median(xs.map((x) => x.ref)))} ms (${runsOf(xs.map((x) => x.ratio))})${more}; ${bad(xs)}`,
      value,
      goal: `<= ${limit}`,
      met: value <= limit && clean(xs),
      runs: xs.map((x) => ({ ratio: x.ratio, makespan: x.run.makespan, reference: x.ref, perNode: x.run.perNode })),
    };
  };
  const coldLoads = Math.max(...wait.map((x) => x.coldLoads + x.slowLoads));
  return [
    ratioRow('burst of 30 onto 3 warm nodes: makespan / even split', warm.map((x) => ({ ...x, ref: x.even })), 1.25),
    ratioRow(
      'burst of 30, model on 1 of 3 nodes (a load pays): makespan / best split',
      cold.map((x) => ({ ...x, ref: x.best })),
      1.35,
      `; per node ${cold.map((x) => JSON.stringify(x.run.perNode)).join(' ')}`,
    ),
    {
      row: 'P9',
      measure: '3 requests, model on 1 of 2 nodes (waiting is cheaper): cold loads, most in a run',
      detail: `${runsOf(wait.map((x) => x.coldLoads), 0)} (the bridge's cold_loads); answers that paid a load: ${wait.map((x) => x.slowLoads).join(', ')}; avoided cold loads: ${wait.map((x) => String(x.run.stats['avoided_cold_loads'])).join(', ')}; ${bad(wait)}`,
      value: coldLoads,
      goal: '0',
      met: coldLoads === 0 && clean(wait),
      runs: wait.map((x) => ({ coldLoads: x.coldLoads, slowLoads: x.slowLoads, perNode: x.run.perNode })),
    },
    ratioRow(
      'burst of 30 queued on the only node up, 2 more come up: makespan / best split from then',
      late.map((x) => ({ ...x, ref: x.best })),
      1.25,
      `; per node ${late.map((x) => JSON.stringify(x.run.perNode)).join(' ')}; moves ${late.map((x) => String(x.run.stats['moves'])).join(', ')}`,
    ),
  ];
}
