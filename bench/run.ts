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
 */
import { writeFileSync } from 'node:fs';
import { startRedis } from '../test/helpers/redis.js';
import { printTable, type RowResult } from './lib.js';
import { runDrainRows } from './p1-drain.js';
import { runLatencyRows } from './p4-latency.js';
import { runGatewayRows } from './p8-gateway.js';
import { runP5 } from './p5-routing.js';
import { runMemoryRows } from './p6-memory.js';
import { runSoakRows } from './p7-soak.js';
import { stopAll, useBins } from './proc.js';

const ALL_ROWS = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8'] as const;

interface Options {
  rows: Set<string>;
  runs: number;
  quick: boolean;
  soakSeconds: number;
  json: string | undefined;
  cpuProf: string | undefined;
  routerBin: string | undefined;
  workerBin: string | undefined;
  trace: boolean;
}

function usage(problem: string): never {
  process.stderr.write(`bench: ${problem}\nusage: node dist/bench/run.js [--rows P1,P2,...] [--runs 3] [--quick] [--soak-seconds N] [--json FILE] [--cpu-prof DIR] [--router-bin FILE] [--worker-bin FILE] [--trace]\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  const o: Options = { rows: new Set(ALL_ROWS), runs: 3, quick: false, soakSeconds: 600, json: undefined, cpuProf: undefined, routerBin: undefined, workerBin: undefined, trace: false };
  let soakSet = false;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--rows': {
        const rows = value().split(',').map((r) => r.trim().toUpperCase()).filter(Boolean);
        const bad = rows.filter((r) => !(ALL_ROWS as readonly string[]).includes(r));
        if (bad.length > 0 || rows.length === 0) usage(`unknown rows: ${bad.join(', ') || '(none)'} (have ${ALL_ROWS.join(', ')})`);
        o.rows = new Set(rows);
        break;
      }
      case '--runs':
        o.runs = Number(value());
        if (!Number.isInteger(o.runs) || o.runs < 1) usage('--runs must be a whole number >= 1');
        break;
      case '--quick':
        o.quick = true;
        break;
      case '--trace':
        o.trace = true;
        break;
      case '--soak-seconds':
        o.soakSeconds = Number(value());
        soakSet = true;
        if (!(o.soakSeconds > 0)) usage('--soak-seconds must be > 0');
        break;
      case '--json':
        o.json = value();
        break;
      case '--cpu-prof':
        o.cpuProf = value();
        break;
      case '--router-bin':
        o.routerBin = value();
        break;
      case '--worker-bin':
        o.workerBin = value();
        break;
      case '--help':
      case '-h':
        usage('benchmarks as ratios');
        break;
      default:
        usage(`unknown flag ${flag}`);
    }
  }
  if (o.quick && !soakSet) o.soakSeconds = 20;
  return o;
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
  await section(['P4'], 'P4 added latency', () => runLatencyRows({ port: redis.port, runs: o.runs, requests: o.quick ? 100 : 2000, trace: o.trace, log }));
  await section(['P5'], 'P5 routing decision', () => runP5());
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
