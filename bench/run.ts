/**
 * `npm run bench`: every row of the benchmark table as a ratio against a baseline measured in
 * the same run, on a throwaway redis-server of its own. Prints the table (and writes it as JSON
 * with --json); exits non-zero only when it cannot run. Goals not met are reported, not failures.
 *
 *   node dist/bench/run.js [--rows P1,P2,...] [--runs 3] [--quick] [--soak-seconds 600]
 *                          [--json FILE] [--cpu-prof DIR] [--router-bin FILE] [--worker-bin FILE] [--trace]
 *
 * --trace gives P4's per-step breakdown (the bridge and worker run with ORION_TRACE=1; the
 * figures then include the cost of the trace lines). --cpu-prof writes a CPU profile of each bridge process (P1-P3) into DIR; --router-bin and
 * --worker-bin measure other builds of the programs (e.g. an older commit's), to compare.
 * Every flag has its ORION_BENCH_* twin (--soak-seconds: ORION_BENCH_SOAK_SECONDS); a flag wins.
 */
import { writeFileSync } from 'node:fs';
import { helpText, parseArgv, parsers, resolveOptions, type OptionSpec, type Resolved } from '../src/config/options.js';
import { ConfigError } from '../src/lib/errors.js';
import { startRedis } from '../test/helpers/redis.js';
import { printTable, type RowResult } from './lib.js';
import { runDrainRows } from './p1-drain.js';
import { runRegistryRow } from './p3-registry.js';
import { runLatencyRows } from './p4-latency.js';
import { runGatewayRows } from './p8-gateway.js';
import { runP5 } from './p5-routing.js';
import { runBurstRows } from './p9-burst.js';
import { runMemoryRows } from './p6-memory.js';
import { runSoakRows } from './p7-soak.js';
import { stopAll, useBins } from './proc.js';

const ALL_ROWS = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8', 'P9'] as const;

const isRow = (r: string): r is (typeof ALL_ROWS)[number] => (ALL_ROWS as readonly string[]).includes(r);

/** The bench's flags, each with its ORION_BENCH_* twin (a flag wins). */
const benchOptions = {
  rows: {
    flag: 'rows',
    env: 'ORION_BENCH_ROWS',
    description: 'Rows to run, comma-separated',
    default: new Set<string>(ALL_ROWS),
    defaultText: ALL_ROWS.join(','),
    parse: (raw: string): Set<string> => {
      const rows = raw.split(',').map((r) => r.trim().toUpperCase()).filter(Boolean);
      const bad = rows.filter((r) => !isRow(r));
      if (bad.length > 0 || rows.length === 0) throw new Error(`unknown rows: ${bad.join(', ') || '(none)'} (have ${ALL_ROWS.join(', ')})`);
      return new Set(rows);
    },
  } satisfies OptionSpec<Set<string>>,
  runs: {
    flag: 'runs',
    env: 'ORION_BENCH_RUNS',
    description: 'Runs per row',
    default: 3,
    defaultText: '3',
    parse: parsers.int(1),
  } satisfies OptionSpec<number>,
  quick: { flag: 'quick', env: 'ORION_BENCH_QUICK', description: 'Fewer requests and a 20 s soak', default: false, defaultText: 'false', boolean: true, parse: parsers.bool } satisfies OptionSpec<boolean>,
  soakSeconds: {
    flag: 'soak-seconds',
    env: 'ORION_BENCH_SOAK_SECONDS',
    description: 'Length of the P7 soak',
    defaultText: '600 (20 with --quick)',
    parse: (raw: string): number => {
      const n = Number(raw);
      if (raw.trim() === '' || !(n > 0) || !Number.isFinite(n)) throw new Error('must be > 0');
      return n;
    },
  } satisfies OptionSpec<number>,
  json: { flag: 'json', env: 'ORION_BENCH_JSON', description: 'Also write the table as JSON to this file', parse: parsers.string } satisfies OptionSpec<string>,
  cpuProf: { flag: 'cpu-prof', env: 'ORION_BENCH_CPU_PROF', description: 'Write a CPU profile of each bridge process (P1-P3) into this directory', parse: parsers.string } satisfies OptionSpec<string>,
  routerBin: { flag: 'router-bin', env: 'ORION_BENCH_ROUTER_BIN', description: 'Bridge program to measure', defaultText: 'this build', parse: parsers.string } satisfies OptionSpec<string>,
  workerBin: { flag: 'worker-bin', env: 'ORION_BENCH_WORKER_BIN', description: 'Worker program to measure', defaultText: 'this build', parse: parsers.string } satisfies OptionSpec<string>,
  trace: { flag: 'trace', env: 'ORION_BENCH_TRACE', description: "P4's per-step breakdown", default: false, defaultText: 'false', boolean: true, parse: parsers.bool } satisfies OptionSpec<boolean>,
};

function parseOptions(argv: string[]): Resolved<typeof benchOptions> & { soakSeconds: number } {
  const { flags, positional } = parseArgv(argv, benchOptions);
  if (flags['help']) {
    process.stdout.write(helpText('node dist/bench/run.js', 'benchmarks as ratios against baselines measured in the same run', benchOptions));
    process.exit(0);
  }
  try {
    const o = resolveOptions(benchOptions, { flags, positional, env: process.env });
    return { ...o, soakSeconds: o.soakSeconds ?? (o.quick ? 20 : 600) };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) process.stderr.write(`bench: ${p}\n`);
    process.exit(2);
  }
}

const o = parseOptions(process.argv.slice(2));
useBins({ router: o.routerBin, worker: o.workerBin });
const log = (line: string): void => void process.stderr.write(line + '\n');
const started = Date.now();
const redis = await startRedis().catch((err: Error) => {
  log(`bench: cannot start redis-server: ${err.message}`);
  process.exit(1);
});
// Interrupted: stop what the bench started (bridge, workers, helpers, redis-server), then exit.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`bench: ${signal}: stopping`);
    void stopAll(2000)
      .then(() => redis.stop())
      .finally(() => process.exit(130));
  });
}
const results: RowResult[] = [];
let failed = false;
const section = async (rows: string[], name: string, fn: () => Promise<RowResult[]>): Promise<void> => {
  if (!rows.some((r) => o.rows.has(r))) return;
  log(`bench: ${name}`);
  try {
    results.push(...(await fn()));
  } catch (err) {
    failed = true;
    log(`bench: ${name} could not run: ${(err as Error).stack ?? String(err)}`);
  }
};
try {
  await section(['P6'], 'P6 idle memory', () => runMemoryRows({ port: redis.port, runs: o.runs, settleMs: o.quick ? 3000 : 5000, log }));
  await section(['P1', 'P2', 'P3'], 'P1-P3 backlog drain', () =>
    runDrainRows(
      {
        port: redis.port,
        redisPid: redis.process?.pid,
        requests: o.quick ? 2000 : 20_000,
        sizes: [3, 1000],
        runs: o.runs,
        xaddRequests: o.quick ? 20_000 : 100_000,
        settleMs: o.quick ? 500 : 1500,
        bridgeNodeArgs: o.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProf}`] : [],
        log,
      },
      o.rows,
    ),
  );
  await section(['P3'], 'P3 registry refresh', () => runRegistryRow({ port: redis.port, nodes: 1000, changed: 200, rounds: o.quick ? 5 : 30 }));
  await section(['P4'], 'P4 added latency', () => runLatencyRows({ port: redis.port, runs: o.runs, requests: o.quick ? 100 : 2000, trace: o.trace, log }));
  await section(['P5'], 'P5 routing decision', () => runP5());
  await section(['P9'], 'P9 balanced routing bursts (built programs, simulated nodes)', () => runBurstRows({ runs: o.runs, log }));
  await section(['P8'], 'P8 gateway time to first token', () => runGatewayRows({ port: redis.port, runs: o.runs, requests: o.quick ? 50 : 300, log }));
  await section(['P7'], `P7 soak (${o.soakSeconds} s at 200 req/s)`, () =>
    runSoakRows({ port: redis.port, seconds: o.soakSeconds, rate: 200, log }),
  );
} finally {
  await redis.stop();
}

const order = (r: RowResult): number => ALL_ROWS.indexOf(r.row as (typeof ALL_ROWS)[number]);
results.sort((a, b) => order(a) - order(b));
process.stdout.write(printTable(results) + '\n');
log(`bench: ${o.runs} run(s) per row, ${((Date.now() - started) / 1000).toFixed(0)} s`);
if (o.json) {
  writeFileSync(o.json, JSON.stringify({ runs: o.runs, quick: o.quick, soakSeconds: o.soakSeconds, at: new Date().toISOString(), rows: results }, null, 2) + '\n');
}
process.exit(failed ? 1 : 0);
