/**
 * P1, P2, P3: how fast one bridge drains a backlog of `{p}:requests` into node queues while
 * its nodes heartbeat.
 *
 * The bridge is the built program (`dist/src/bin/router.js`) in a process of its own, as in
 * production: its event loop is not shared with the bench's filling and polling, and what is
 * measured includes everything the real bridge does meanwhile (registry refresh, deadline sweep,
 * stats flush). One run:
 *   1. write `nodes` fresh health documents and TTL keys (three models, each loaded on some
 *      nodes, RAM use varied), start the bridge and wait for its start line;
 *   2. stop it (SIGSTOP), XADD the backlog, CONFIG RESETSTAT, resume it (SIGCONT): the clock starts;
 *   3. poll XINFO GROUPS until every entry is delivered and acked (lag 0, pending 0): the
 *      clock stops; INFO commandstats gives the commands the bridge ran;
 *   4. check that every request is a job in a node queue, stop the bridge, FLUSHALL.
 * The baseline is bare BullMQ addBulk of the same documents, batches of 100, also in a process
 * of its own (`bare-addbulk.js`), and `redis-benchmark` XADD of the same document.
 */
import { Redis } from 'ioredis';
import { ROUTER_GROUP, names } from '../src/lib/names.js';
import { backlogDoc, redisBenchmarkXaddRate } from './baselines.js';
import { fmtNum, median, nowMs, type RowResult } from './lib.js';
import { nodeId } from './nodes.js';
import { benchScript, cpuMsOf, jsonLine, runHelper, startBridgeProcess, startNode, type Child } from './proc.js';

export interface DrainOptions {
  port: number;
  /** The redis-server process, for its CPU time. */
  redisPid: number | undefined;
  requests: number;
  /** Node counts to drain with; the first is the reference (3), the second the large registry. */
  sizes: readonly [number, number];
  runs: number;
  /** Extra node arguments for the bridge process (e.g. --cpu-prof). */
  bridgeNodeArgs?: string[];
  /** Requests redis-benchmark sends. */
  xaddRequests: number;
  /** How long the bridge runs before it gets the backlog (first refresh, queues for every node). */
  settleMs: number;
  log(line: string): void;
}

export interface DrainResult {
  nodes: number;
  rate: number;
  seconds: number;
  /** Every command Redis ran during the drain (including those inside scripts; not the nodes' health writes) per request. */
  commandsPerRequest: number;
  commands: Record<string, number>;
  /** Redis CPU per request (the redis-server process's CPU time), in microseconds. */
  redisUsPerRequest: number;
  /** The bridge process's CPU per request, in microseconds. */
  bridgeUsPerRequest: number;
  /** Health documents the nodes wrote per second while the bridge drained. */
  heartbeatsPerSecond: number;
  /**
   * Once drained, every node holding a backlog and no worker taking it: the bridge's CPU (ms a
   * second) and the job hashes it read (HGET a second) over `AFTER_MS`, its rebalancing passes
   * included. Measured for the large registry only.
   */
  after?: { cpuMsPerS: number; jobReadsPerS: number };
}

/** How long the bridge is watched once a large registry is drained. */
const AFTER_MS = 3000;

/**
 * Commands one health write costs Redis (`publishHealth`: EVALSHA, then HGET, HSET, SET, SADD,
 * TIME, ZREVRANGE, ZADD), as INFO commandstats counts them.
 */
const COMMANDS_PER_HEALTH_WRITE = 8;

/** How often each node reports (the worker's default `--heartbeat-interval`). */
const HEARTBEAT_MS = 5000;

const redisCpuOf = (o: DrainOptions): number => (o.redisPid === undefined ? NaN : cpuMsOf(o.redisPid));

export function parseCommandStats(info: string): Record<string, { calls: number; usec: number }> {
  const out: Record<string, { calls: number; usec: number }> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) out[m[1]!] = { calls: Number(m[2]), usec: Number(m[3]) };
  return out;
}

/** The bench's own commands during a drain, left out of the count. */
const BENCH_COMMANDS = /^(xinfo|info|config)/;

async function groupState(redis: Redis, stream: string): Promise<{ lag: number; pending: number; read: number }> {
  const groups = (await redis.xinfo('GROUPS', stream)) as unknown[][];
  for (const g of groups) {
    const f = new Map<string, unknown>();
    for (let i = 0; i + 1 < g.length; i += 2) f.set(String(g[i]), g[i + 1]);
    if (f.get('name') === ROUTER_GROUP) {
      return { lag: Number(f.get('lag') ?? 1), pending: Number(f.get('pending')), read: Number(f.get('entries-read') ?? 0) };
    }
  }
  return { lag: 1, pending: 0, read: 0 };
}

/** One drain of `requests` with `nodes` nodes in the registry. */
export async function drainOnce(o: DrainOptions, nodes: number, label: string): Promise<DrainResult> {
  const redis = new Redis(o.port, '127.0.0.1', { maxRetriesPerRequest: null });
  const prefix = `bench:${label}`;
  const n = names(prefix);
  try {
    await redis.flushall();
    const beats = startNode(benchScript('heartbeats'), [String(o.port), prefix, String(nodes), String(HEARTBEAT_MS)]);
    let child: Child | undefined;
    const beatsSoFar = heartbeatCounter(beats);
    try {
      await beats.waitForLine((l) => jsonLine(l)?.['ready'] === true, 60_000, 'heartbeats ready');
      ({ child } = await startBridgeProcess(
        { 'redis-addr': `127.0.0.1:${o.port}`, 'stream-prefix': prefix, 'consumer-name': 'bench' },
        o.bridgeNodeArgs,
      ));
      // Let the bridge settle (first refresh, queues for every node) before it gets work.
      await new Promise((r) => setTimeout(r, o.settleMs));
      child.pause();
      await fillBacklog(redis, n.requests, o.requests);
      await redis.config('RESETSTAT');
      const cpu0 = child.cpuMs();
      const redisCpu0 = redisCpuOf(o);
      const t0 = nowMs();
      const beats0 = await beatsSoFar();
      child.resume();
      await waitForDrain(redis, n.requests, o.requests, t0);
      const seconds = (nowMs() - t0) / 1000;
      const bridgeCpuMs = child.cpuMs() - cpu0;
      const beatsSeen = (await beatsSoFar()) - beats0;
      const { commands, total } = bridgeCommands(parseCommandStats(await redis.info('commandstats')), beatsSeen);
      await checkEveryRequestQueued(redis, n.nodeQueuePrefix, nodes, o.requests);
      const after = nodes === o.sizes[1] ? await watchAfter(redis, child) : undefined;
      return {
        ...(after ? { after } : {}),
        nodes,
        rate: o.requests / seconds,
        seconds,
        commandsPerRequest: total / o.requests,
        redisUsPerRequest: ((redisCpuOf(o) - redisCpu0) * 1000) / o.requests,
        bridgeUsPerRequest: (bridgeCpuMs * 1000) / o.requests,
        heartbeatsPerSecond: beatsSeen / Math.max(seconds, 1e-3),
        commands,
      };
    } finally {
      await child?.stop('SIGTERM');
      await beats.stop('SIGTERM');
    }
  } finally {
    await redis.flushall().catch(() => undefined);
    redis.disconnect();
  }
}

/** How many health documents the nodes have written so far (the helper says at SIGUSR2). */
function heartbeatCounter(beats: Child): () => Promise<number> {
  let asked = 0;
  return async () => {
    const k = ++asked;
    beats.proc.kill('SIGUSR2');
    return Number(jsonLine(await beats.waitForLine((l) => jsonLine(l)?.['asked'] === k, 10_000, 'heartbeat count'))!['written']);
  };
}

/** XADD the backlog of `requests` documents, 1,000 to a pipeline. */
async function fillBacklog(redis: Redis, stream: string, requests: number): Promise<void> {
  for (let start = 0; start < requests; start += 1000) {
    const pipe = redis.pipeline();
    for (let i = start; i < Math.min(requests, start + 1000); i++) pipe.xadd(stream, '*', 'data', JSON.stringify(backlogDoc(i)));
    await pipe.exec();
  }
}

/** Polls the bridge's group until every entry is delivered and acked; fails after 120 s. */
async function waitForDrain(redis: Redis, stream: string, requests: number, t0: number): Promise<void> {
  const deadline = t0 + 120_000;
  let s = await groupState(redis, stream);
  while (!(s.lag === 0 && s.pending === 0 && s.read >= requests)) {
    if (nowMs() > deadline) throw new Error(`drain did not finish in 120 s (${JSON.stringify(s)})`);
    await new Promise((r) => setTimeout(r, 2));
    s = await groupState(redis, stream);
  }
}

/** The commands Redis ran for the bridge: all of them, less the bench's own and the nodes' health writes. */
function bridgeCommands(stats: Record<string, { calls: number; usec: number }>, beatsSeen: number): { commands: Record<string, number>; total: number } {
  const commands: Record<string, number> = {};
  let total = 0;
  for (const [name, c] of Object.entries(stats)) {
    if (BENCH_COMMANDS.test(name)) continue;
    commands[name] = c.calls;
    total += c.calls;
  }
  // The nodes' own writes are not the bridge's work: each is one script call running 7 commands.
  total -= beatsSeen * COMMANDS_PER_HEALTH_WRITE;
  return { commands, total };
}

/** The bridge's CPU and job reads over AFTER_MS, once drained (see `DrainResult.after`). */
async function watchAfter(redis: Redis, child: Child): Promise<{ cpuMsPerS: number; jobReadsPerS: number }> {
  await redis.config('RESETSTAT');
  const cpu0 = child.cpuMs();
  await new Promise((r) => setTimeout(r, AFTER_MS));
  const cpuMs = child.cpuMs() - cpu0;
  const hget = parseCommandStats(await redis.info('commandstats'))['hget']?.calls ?? 0;
  return { cpuMsPerS: cpuMs / (AFTER_MS / 1000), jobReadsPerS: hget / (AFTER_MS / 1000) };
}

/** Every request must be a job now (the bridge's own keep-warm jobs are not the bench's). */
async function checkEveryRequestQueued(redis: Redis, nodeQueuePrefix: string, nodes: number, requests: number): Promise<void> {
  const pipe = redis.pipeline();
  for (let i = 0; i < nodes; i++) pipe.zrange(`${nodeQueuePrefix}:${nodeId(i)}:prioritized`, 0, -1);
  const ids = ((await pipe.exec()) ?? []).flatMap(([, list]) => list as string[]);
  const jobs = ids.filter((id) => !id.startsWith('req_orion-keep-warm-')).length;
  if (jobs !== requests) throw new Error(`expected ${requests} jobs in node queues, found ${jobs}`);
}

export interface BareResult {
  rate: number;
  cpuUsPerJob: number;
  redisUsPerJob: number;
}

/** Time adding the backlog's jobs: bare `addBulk`, or (`batch`) the bridge's batch adds. */
export async function timeAdds(o: DrainOptions, how: 'addbulk' | 'batch' = 'addbulk'): Promise<BareResult> {
  const redis = new Redis(o.port, '127.0.0.1');
  await redis.flushall();
  const redisCpu0 = redisCpuOf(o);
  const r = await runHelper<{ rate: number; cpuUsPerJob: number }>('bare-addbulk', [String(o.port), 'bench:bare', String(o.requests), 'node-0000,node-0001,node-0002', how]);
  const redisUsPerJob = ((redisCpuOf(o) - redisCpu0) * 1000) / o.requests;
  await redis.flushall();
  redis.disconnect();
  return { ...r, redisUsPerJob };
}

const describe = (d: DrainResult): string =>
  `${fmtNum(d.rate)} req/s, ${fmtNum(d.commandsPerRequest, 2)} commands, bridge CPU ${fmtNum(d.bridgeUsPerRequest, 1)} us, redis CPU ${fmtNum(d.redisUsPerRequest, 1)} us per request; ` +
  `${fmtNum(d.heartbeatsPerSecond)} health documents written/s meanwhile` +
  (d.after ? `; once drained, bridge CPU ${fmtNum(d.after.cpuMsPerS)} ms/s, ${fmtNum(d.after.jobReadsPerS)} HGET/s` : '');

interface RunFigures {
  bare: number;
  bareCpu: [BareResult, BareResult];
  /** The same jobs added by the bridge's batch adds (P1 only). */
  batch?: BareResult;
  xadd: number;
  /** Drain rate with the small registry (the mean of the drains either side of the large one). */
  smallRate: number;
  small: DrainResult;
  large: DrainResult;
}

export async function runDrainRows(o: DrainOptions, rows: ReadonlySet<string>): Promise<RowResult[]> {
  const runs = await measureDrainRuns(o, rows);
  return [...(rows.has('P1') || rows.has('P2') ? baselineRows(o, rows, runs) : []), ...(rows.has('P3') ? registrySizeRows(o, runs) : [])];
}

/**
 * The figures of each run. The machine is shared: each figure compared with another is measured
 * on both sides of it (baseline, drain, baseline; 3 nodes, 1,000 nodes, 3 nodes) and the two sides averaged.
 */
async function measureDrainRuns(o: DrainOptions, rows: ReadonlySet<string>): Promise<RunFigures[]> {
  const runs: RunFigures[] = [];
  const [smallN, largeN] = o.sizes;
  const logBare = (r: number, b: BareResult): void =>
    o.log(`  run ${r + 1}: bare addBulk ${fmtNum(b.rate)} jobs/s, client CPU ${fmtNum(b.cpuUsPerJob, 1)} us, redis CPU ${fmtNum(b.redisUsPerJob, 1)} us per job`);
  for (let r = 0; r < o.runs; r++) {
    const before = await timeAdds(o);
    logBare(r, before);
    const small = await drainOnce(o, smallN, `p1:${r}`);
    o.log(`  run ${r + 1}: drain with ${smallN} nodes ${describe(small)}`);
    let large = small;
    let smallRate = small.rate;
    if (rows.has('P3')) {
      large = await drainOnce(o, largeN, `p3:${r}`);
      o.log(`  run ${r + 1}: drain with ${largeN} nodes ${describe(large)}`);
      const again = await drainOnce(o, smallN, `p1b:${r}`);
      o.log(`  run ${r + 1}: drain with ${smallN} nodes ${describe(again)}`);
      smallRate = (small.rate + again.rate) / 2;
    }
    const after = await timeAdds(o);
    logBare(r, after);
    const batch = rows.has('P1') ? await timeAdds(o, 'batch') : undefined;
    if (batch) o.log(`  run ${r + 1}: batch adds ${fmtNum(batch.rate)} jobs/s, client CPU ${fmtNum(batch.cpuUsPerJob, 1)} us, redis CPU ${fmtNum(batch.redisUsPerJob, 1)} us per job`);
    const xadd = rows.has('P2') ? await redisBenchmarkXadd(o) : NaN;
    if (rows.has('P2')) o.log(`  run ${r + 1}: redis-benchmark XADD ${fmtNum(xadd)}/s`);
    runs.push({ bare: (before.rate + after.rate) / 2, bareCpu: [before, after], ...(batch ? { batch } : {}), xadd, smallRate, small, large });
  }
  return runs;
}

/** The median over the runs of one figure. */
const medianOver = (runs: RunFigures[], f: (x: RunFigures) => number): number => median(runs.map(f));

/** P1 and P2 (those asked for): the drain rate against bare addBulk and against redis-benchmark XADD. */
function baselineRows(o: DrainOptions, rows: ReadonlySet<string>, runs: RunFigures[]): RowResult[] {
  const out: RowResult[] = [];
  const med = (f: (x: RunFigures) => number): number => medianOver(runs, f);
  const drain = med((x) => x.smallRate);
  /** Redis CPU per job of bare addBulk (us): what BullMQ's add script costs Redis, whoever calls it. */
  const bareRedisUs = (x: RunFigures): number => (x.bareCpu[0].redisUsPerJob + x.bareCpu[1].redisUsPerJob) / 2;
  if (rows.has('P1')) {
    const ratio = med((x) => x.smallRate / x.bare);
    out.push({
      row: 'P1',
      measure: `drain ${fmtNum(o.requests)} backlog (${o.sizes[0]} nodes) / bare addBulk`,
      detail: `${fmtNum(drain)} req/s vs ${fmtNum(med((x) => x.bare))} jobs/s (runs: ${runs.map((x) => fmtNum(x.smallRate / x.bare, 2)).join(', ')})`,
      value: ratio,
      goal: '>= 0.9',
      met: ratio >= 0.9,
      runs,
    });
    // The bridge's add path alone, against addBulk's: the same jobs, batches and queues.
    const bareCpu = (x: RunFigures): number => (x.bareCpu[0].cpuUsPerJob + x.bareCpu[1].cpuUsPerJob) / 2;
    const cpuRatio = med((x) => x.batch!.cpuUsPerJob / bareCpu(x));
    out.push({
      row: 'P1',
      measure: 'client CPU per job: the bridge\'s batch adds / bare addBulk',
      detail:
        `${fmtNum(med((x) => x.batch!.cpuUsPerJob), 1)} us vs ${fmtNum(med(bareCpu), 1)} us (runs: ${runs.map((x) => fmtNum(x.batch!.cpuUsPerJob / bareCpu(x), 2)).join(', ')}); ` +
        `Redis CPU per job ${fmtNum(med((x) => x.batch!.redisUsPerJob), 1)} us vs ${fmtNum(med(bareRedisUs), 1)} us; ${fmtNum(med((x) => x.batch!.rate))} vs ${fmtNum(med((x) => x.bare))} jobs/s (the goal is ours)`,
      value: cpuRatio,
      goal: '<= 0.5',
      met: cpuRatio <= 0.5,
    });
  }
  if (rows.has('P2')) {
    const ratio = med((x) => x.smallRate / x.xadd);
    out.push({
      row: 'P2',
      measure: 'drain rate / redis-benchmark XADD (50 clients)',
      detail:
        `${fmtNum(drain)} req/s vs ${fmtNum(med((x) => x.xadd))} XADD/s (runs: ${runs.map((x) => fmtNum(x.smallRate / x.xadd, 2)).join(', ')}); ` +
        `bare addBulk / XADD in the same runs: ${fmtNum(med((x) => x.bare / x.xadd), 2)}; ` +
        `ceiling: Redis alone, at the ${fmtNum(med(bareRedisUs), 1)} us of its CPU bare addBulk costs per job, adds at most ${fmtNum(med((x) => 1e6 / bareRedisUs(x)))} jobs/s = ${fmtNum(med((x) => 1e6 / bareRedisUs(x) / x.xadd), 2)} of XADD`,
      value: ratio,
      goal: '>= 0.35',
      met: ratio >= 0.35,
    });
  }
  return out;
}

/** The two P3 rows: drain rate and Redis commands per request, large registry against small. */
function registrySizeRows(o: DrainOptions, runs: RunFigures[]): RowResult[] {
  const [smallN, largeN] = o.sizes;
  const med = (f: (x: RunFigures) => number): number => medianOver(runs, f);
  const drain = med((x) => x.smallRate);
  const ratio = med((x) => x.large.rate / x.smallRate);
  const cmdRatio = med((x) => x.large.commandsPerRequest / x.small.commandsPerRequest);
  const afterCpu = med((x) => x.large.after?.cpuMsPerS ?? Number.NaN);
  return [
    {
      row: 'P3',
      measure: `drain rate ${fmtNum(largeN)} nodes / ${smallN} nodes, every node heartbeating (5 s)`,
      detail:
        `${fmtNum(med((x) => x.large.rate))} req/s vs ${fmtNum(drain)} req/s (runs: ${runs.map((x) => fmtNum(x.large.rate / x.smallRate, 2)).join(', ')}); ` +
        `${fmtNum(med((x) => x.large.heartbeatsPerSecond))} health documents written/s during the ${fmtNum(largeN)}-node drains`,
      value: ratio,
      goal: '>= 0.8',
      met: ratio >= 0.8,
    },
    {
      row: 'P3',
      measure: `Redis commands per request ${fmtNum(largeN)} / ${smallN} nodes`,
      detail: `${fmtNum(med((x) => x.large.commandsPerRequest), 2)} vs ${fmtNum(med((x) => x.small.commandsPerRequest), 2)} (INFO commandstats: every command, those run by scripts included; the nodes' health writes, 8 commands each, left out)`,
      value: cmdRatio,
      goal: 'within 10%',
      met: Math.abs(cmdRatio - 1) <= 0.1,
    },
    {
      row: 'P3',
      measure: `bridge CPU once ${fmtNum(largeN)} nodes hold a backlog and none takes it (ms per s)`,
      detail: `${fmtNum(med((x) => x.large.after?.jobReadsPerS ?? Number.NaN))} job hashes read/s by its rebalancing passes (runs: ${runs.map((x) => fmtNum(x.large.after?.cpuMsPerS ?? Number.NaN)).join(', ')} ms/s; over ${AFTER_MS / 1000} s after each ${fmtNum(largeN)}-node drain; the goal is ours: a quarter of one core)`,
      value: afterCpu,
      goal: '<= 250',
      met: afterCpu <= 250,
    },
  ];
}

async function redisBenchmarkXadd(o: DrainOptions): Promise<number> {
  return redisBenchmarkXaddRate(o.port, JSON.stringify(backlogDoc(0)), o.xaddRequests);
}
