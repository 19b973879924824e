/**
 * `npm run simulate`: run the policy simulator and write ROUTING.md with its SVG plots.
 *
 *   --quick          a small grid (2 sizes, 3 loads, 2 seeds) for tests, into --out
 *   --out DIR        where ROUTING.md and routing/*.svg go (default: the repo root, docs/routing)
 *   --replay FILE    also replay a recorded arrivals log (JSONL, see workload.ts) on 10 nodes
 *   --scale N        requests for the scale measurement on 1,000 nodes (default 1000000; 0: skip)
 *   --seeds N        seeds per cell for the small clusters (default 10)
 *   --render FILE    rewrite the page and plots from a results.json of an earlier run, no simulation
 * Progress goes to stderr; the page and plots are the only files written.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { helpText, parseArgv, parsers, resolveOptions, type OptionSpec, type Resolved } from '../config/options.js';
import { ConfigError } from '../lib/errors.js';
import { runAblation, runAll, runGrid, emptyRuns, measureScale, type AblationCell, type Cell, type ScaleResult } from './grid.js';
import { buildReport } from './report.js';
import { parseReplay } from './workload.js';
import { INTRO } from './intro.js';

/** The simulator's flags, each with its ORION_SIMULATE_* twin (a flag wins). */
const simulateOptions = {
  quick: { flag: 'quick', env: 'ORION_SIMULATE_QUICK', description: 'A small grid (2 sizes, 3 loads, 2 seeds) for tests, into --out', default: false, defaultText: 'false', boolean: true, parse: parsers.bool } satisfies OptionSpec<boolean>,
  out: { flag: 'out', env: 'ORION_SIMULATE_OUT', description: 'Where ROUTING.md and docs/routing/*.svg go (--quick: routing/*.svg)', default: '.', defaultText: '.', parse: parsers.string } satisfies OptionSpec<string>,
  replay: { flag: 'replay', env: 'ORION_SIMULATE_REPLAY', description: 'Also replay a recorded arrivals log (JSONL, see workload.ts) on 10 nodes', parse: parsers.string } satisfies OptionSpec<string>,
  scale: { flag: 'scale', env: 'ORION_SIMULATE_SCALE', description: 'Requests for the scale measurement on 1,000 nodes (0: skip)', default: 1_000_000, defaultText: '1000000', parse: parsers.int(0) } satisfies OptionSpec<number>,
  seeds: { flag: 'seeds', env: 'ORION_SIMULATE_SEEDS', description: 'Seeds per cell for the small clusters', default: 10, defaultText: '10', parse: parsers.int(1) } satisfies OptionSpec<number>,
  render: { flag: 'render', env: 'ORION_SIMULATE_RENDER', description: 'Rewrite the page and plots from a results.json of an earlier run, no simulation', parse: parsers.string } satisfies OptionSpec<string>,
};

type Args = Resolved<typeof simulateOptions>;

const FULL_REQUESTS: Record<number, number> = { 3: 1500, 10: 3000, 100: 5000, 1000: 15000 };
const QUICK_REQUESTS: Record<number, number> = { 3: 300, 10: 600 };

export function main(argv: string[]): void {
  const { flags, positional } = parseArgv(argv, simulateOptions);
  if (flags['help']) {
    process.stdout.write(helpText('npm run simulate --', 'the policy simulator: writes ROUTING.md and its SVG plots', simulateOptions));
    return;
  }
  const a: Args = resolveOptions(simulateOptions, { flags, positional, env: process.env });
  const log = (line: string): void => void process.stderr.write(line + '\n');
  const requests = (size: number): number => (a.quick ? QUICK_REQUESTS : FULL_REQUESTS)[size] ?? 2000;
  if (a.render !== undefined) {
    const saved = JSON.parse(readFileSync(a.render, 'utf8')) as { cells: Cell[]; ablation?: AblationCell[]; heat: Cell[]; replay?: Cell; scale?: ScaleResult };
    write(a, requests, { cells: saved.cells, ablation: saved.ablation ?? [], heat: saved.heat, replay: saved.replay, scale: saved.scale }, log);
    return;
  }
  const cells: Cell[] = [];
  if (a.quick) {
    cells.push(...runGrid({ sizes: [3, 10], loads: [0.5, 0.8, 1.1], kinds: ['poisson'], seeds: 2, requests, heat: false, progress: log }));
  } else {
    const loads = [0.5, 0.8, 0.95, 1.1];
    cells.push(...runGrid({ sizes: [3, 10], loads, kinds: ['poisson', 'bursty'], seeds: a.seeds, requests, heat: false, progress: log }));
    cells.push(...runGrid({ sizes: [100], loads, kinds: ['poisson', 'bursty'], seeds: Math.min(a.seeds, 5), requests, heat: false, progress: log }));
    cells.push(...runGrid({ sizes: [1000], loads, kinds: ['poisson'], seeds: Math.min(a.seeds, 2), requests, heat: false, progress: log }));
  }
  const ablation = runAblation({ sizes: a.quick ? [3] : [3, 10], loads: a.quick ? [0.5] : [0.5, 0.8], seeds: a.quick ? 2 : a.seeds, requests, progress: log });
  const heat = a.quick ? [] : runGrid({ sizes: [10], loads: [0.5, 0.8], kinds: ['poisson'], seeds: a.seeds, requests, heat: true, progress: log });
  let replay: Cell | undefined;
  if (a.replay !== undefined) {
    const arrivals = parseReplay(readFileSync(a.replay, 'utf8'), 1);
    replay = { size: 10, kind: 'replay', load: Number.NaN, runs: emptyRuns(), bound: [] };
    runAll(replay, 10, arrivals, false);
    log(`replayed ${arrivals.length} arrivals from ${a.replay}`);
  }
  const scale: ScaleResult | undefined = a.scale > 0 ? measureScale(1000, a.scale, log) : undefined;
  write(a, requests, { cells, ablation, heat, replay, scale }, log);
}

interface Results {
  cells: Cell[];
  ablation: AblationCell[];
  heat: Cell[];
  replay: Cell | undefined;
  scale: ScaleResult | undefined;
}

function write(a: Args, requests: (size: number) => number, res: Results, log: (line: string) => void): void {
  const { cells, ablation, heat, replay, scale } = res;
  const svgDir = a.quick ? join(a.out, 'routing') : join(a.out, 'docs', 'routing');
  const report = buildReport({
    cells,
    ablation,
    heat,
    ...(replay ? { replay } : {}),
    ...(scale ? { scale } : {}),
    command: a.quick ? 'npm run simulate -- --quick' : 'npm run simulate',
    seeds: a.seeds,
    requests,
    svgDir: relative(a.out, svgDir) || '.',
    intro: INTRO,
  });
  mkdirSync(svgDir, { recursive: true });
  for (const [name, svg] of Object.entries(report.svgs)) writeFileSync(join(svgDir, name), svg);
  writeFileSync(join(a.out, 'ROUTING.md'), report.markdown);
  writeFileSync(join(svgDir, 'results.json'), JSON.stringify({ cells, ablation, heat, replay, scale }, null, 1) + '\n');
  log(`wrote ${join(a.out, 'ROUTING.md')} and ${Object.keys(report.svgs).length} plots in ${svgDir}`);
}

try {
  main(process.argv.slice(2));
} catch (err) {
  const lines = err instanceof ConfigError ? err.problems : [err instanceof Error ? err.message : String(err)];
  for (const line of lines) process.stderr.write(`simulate: ${line}\n`);
  process.exitCode = 2;
}
