/**
 * The bridge, `orion-inference-router`: reads `{p}:requests` as group `orion-inference-router`,
 * routes each request from an in-memory registry snapshot, and enqueues it on the chosen
 * node's BullMQ queue; re-routes jobs workers hand back and jobs of dead nodes; answers
 * requests past their deadline; keeps its two streams trimmed to what is not acknowledged yet;
 * serves /health, /stats, /nodes, /metrics, Bull Board, and the live cluster page (`/`, with
 * `/cluster` and the decision stream `/events`).
 *
 * Connections: one command connection (queues, scripts, registry), one for the claims and acks
 * of request batches (on the command connection a batch's claims would wait behind the adds of
 * the batch before it, and the bridge with them; its ack behind the adds of the batches after
 * it, holding a place among the batches in hand), and one blocking connection per stream read
 * (`{p}:requests`, `{p}:reroute`).
 */
import type { Redis } from 'ioredis';
import type { RouterConfig } from '../config/router.js';
import { defineBusCommands } from '../lib/bus.js';
import { startHttpServer, type HttpServerHandle } from '../lib/http.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { ROUTER_GROUP, names, type Names } from '../lib/names.js';
import { connectRedis, describeRedis } from '../lib/redis.js';
import { RedisWatch } from '../lib/redis-watch.js';
import { Serial } from '../lib/serial.js';
import { Board } from './board.js';
import { ConsumerGroup, GroupReader } from './consumer.js';
import { DeadlineSweeper } from './deadlines.js';
import { DecisionFeed } from './decisions.js';
import { DeadNodeSweeper } from './deadnodes.js';
import { Periodic } from '../lib/periodic.js';
import { withTimeout } from '../lib/time.js';
import { Dispatcher } from './dispatcher.js';
import { SERVICE, healthHandler, metricsHandler, nodesHandler, statsHandler, type HandlerContext } from './http.js';
import { HeldRequests } from './held.js';
import { Intake } from './intake.js';
import { RouterMetrics, type QueueDepth } from './metrics.js';
import { ASSET_PATHS, assetHandler, clusterHandler, type ClusterContext } from './page.js';
import { Registry, type Snapshot } from './registry.js';
import { RerouteHandler } from './reroute.js';
import { BridgeStats, type Counts } from './stats.js';
import { Timeline } from './timeline.js';
import { trimAcked } from './trim.js';
import type { Thresholds } from './routing.js';
import { Balancing } from './balancing.js';
import type { CostLearner } from './learner.js';
import type { Placer } from './placer.js';
import { requestStatusHandler } from './where.js';
import type { IncomingMessage } from 'node:http';

/** Knobs for tests and tuning; the defaults are the production values. */
export interface BridgeDeps {
  log?: Logger;
  /** Registry refresh (and retry of held requests, dead-node moves). @defaultValue 1000 */
  refreshMs?: number;
  /** Deadline sweep. @defaultValue 500 */
  deadlineTickMs?: number;
  /** XREADGROUP BLOCK. @defaultValue 1000 */
  blockMs?: number;
  /** How often to XAUTOCLAIM idle entries of other consumers. @defaultValue min(claimIdle / 2, 10 s) */
  claimEveryMs?: number;
  /** How often held entries get their idle time reset. @defaultValue claimIdle / 3 */
  touchEveryMs?: number;
  /** Bound on one Redis write of a placement. @defaultValue 5000 */
  addTimeoutMs?: number;
  /** How long an anticipated model load counts as loaded. @defaultValue 60 s */
  loadingTtlMs?: number;
  /** Job-count cache for /metrics and /stats. @defaultValue 2000 */
  depthCacheMs?: number;
  /** Statistics flush to Redis. @defaultValue 1000 */
  statsFlushMs?: number;
  /** Trimming of acknowledged entries from the request and reroute streams. @defaultValue 5000 */
  trimEveryMs?: number;
  /** Step of the live page's charts (one read of the cluster counters each). @defaultValue 5000 */
  timelineStepMs?: number;
  /** How often Redis's clock and maxmemory-policy are read. @defaultValue 5000 */
  redisWatchMs?: number;
}

export interface BridgeHandle {
  readonly httpPort: number;
  readonly names: Names;
  /** This process's counters since start. */
  stats(): Counts;
  snapshot(): Snapshot;
  /** What this bridge learned about answer and load times (read it; the bridge feeds it). */
  costs(): Readonly<Pick<CostLearner, 'answerMs' | 'loadMs' | 'loadRateMbps' | 'toJSON'>>;
  /** Requests held for lack of a node. */
  waiting(): number;
  /** Refresh the registry now and run what follows a refresh (tests). */
  refresh(): Promise<void>;
  /** Run a deadline sweep now (tests). */
  sweepDeadlines(): Promise<void>;
  /** Stop reading, finish the batch in hand, stop timers, close queues, HTTP and Redis. Safe twice. */
  close(): Promise<void>;
}

/** Every part of a bridge, built and connected but not started. */
interface Parts {
  log: Logger;
  n: Names;
  cmd: Redis;
  claims: Redis;
  blocking: Redis[];
  registry: Registry;
  dispatcher: Dispatcher;
  metrics: RouterMetrics;
  stats: BridgeStats;
  intake: Intake;
  held: HeldRequests;
  rerouter: RerouteHandler;
  deadNodes: DeadNodeSweeper;
  deadlines: DeadlineSweeper;
  board: Board;
  readers: GroupReader[];
  balancing: Balancing;
  decisions: DecisionFeed;
  timeline: Timeline;
  /** Redis's clock (every deadline and freshness judgement) and its maxmemory-policy. */
  watch: RedisWatch;
  depths(): Promise<ReadonlyMap<string, QueueDepth>>;
}

/** The eligibility thresholds of a configuration; a readmit threshold is at most its maximum. */
export function thresholdsOf(config: RouterConfig): Required<Thresholds> {
  return {
    maxTemp: config.maxTemp,
    maxRam: config.maxRam,
    staleAfterMs: config.staleAfter,
    readmitTemp: Math.min(config.readmitTemp, config.maxTemp),
    readmitRam: Math.min(config.readmitRam, config.maxRam),
  };
}

/** The parts the stream readers are built on, built before them. */
interface IntakeParts {
  redis: Redis;
  claims: Redis;
  blocking: readonly [Redis, Redis];
  n: Names;
  registry: Registry;
  dispatcher: Dispatcher;
  stats: BridgeStats;
  placer: Placer;
  watch: RedisWatch;
  decisions: DecisionFeed;
  now: () => number;
  part: (component: string) => Logger;
}

function assemble(config: RouterConfig, deps: BridgeDeps, root: Logger): Parts {
  const n = names(config.streamPrefix);
  const consumer = config.consumerName;
  const part = (component: string): Logger => root.child({ component });
  const cmd = connectRedis(config, root, 'orion-router');
  const blocking = [connectRedis(config, root, 'orion-router-requests'), connectRedis(config, root, 'orion-router-reroute')] as const;
  const claims = connectRedis(config, root, 'orion-router-claims');
  defineBusCommands(cmd);
  defineBusCommands(claims);
  const watch = new RedisWatch(cmd, part('redis'), deps.redisWatchMs ?? 5000);
  const now = (): number => watch.clock.now();
  const thresholds = thresholdsOf(config);
  const registry = new Registry({ redis: cmd, n, thresholds, log: part('registry'), refreshMs: deps.refreshMs, loadingTtlMs: deps.loadingTtlMs, now });
  const decisions = new DecisionFeed();
  const dispatcher = new Dispatcher({ redis: cmd, n, log: part('dispatcher'), addTimeoutMs: deps.addTimeoutMs, depthCacheMs: deps.depthCacheMs, decisions });
  const depths = (): Promise<ReadonlyMap<string, QueueDepth>> =>
    withTimeout(dispatcher.depths(registry.current().known), 1000, 'job counts').catch(() => new Map<string, QueueDepth>());
  const metrics = new RouterMetrics({ snapshot: () => registry.current(), depths });
  const stats = new BridgeStats(n, consumer, metrics);
  const balancing = new Balancing({ config, redis: cmd, n, registry, dispatcher, stats, log: part });
  const common = { redis: cmd, n, registry, dispatcher, stats, placer: balancing.placer, now };
  const { held, intake, rerouter, readers } = assembleIntake(config, deps, { ...common, claims, blocking, watch, decisions, part });
  return {
    log: part('bridge'),
    n,
    cmd,
    claims,
    blocking: [...blocking],
    registry,
    dispatcher,
    metrics,
    stats,
    intake,
    held,
    rerouter,
    deadNodes: new DeadNodeSweeper({ ...common, log: part('dead-nodes'), consumer }),
    deadlines: new DeadlineSweeper({ redis: cmd, n, dispatcher, held, stats, log: part('deadlines'), tickMs: deps.deadlineTickMs, now }),
    board: new Board({ redis: cmd, n, dispatcher, adminUser: config.adminUser, adminPassword: config.adminPassword, log: part('board') }),
    readers,
    watch,
    balancing,
    decisions,
    timeline: new Timeline({ redis: cmd, n, local: () => stats.snapshot(), stepMs: deps.timelineStepMs }),
    depths,
  };
}

/** What the bridge reads with: the two stream readers and what they hand their batches to. */
function assembleIntake(config: RouterConfig, deps: BridgeDeps, o: IntakeParts): Pick<Parts, 'held' | 'intake' | 'rerouter' | 'readers'> {
  const { redis: cmd, n, stats, blocking, watch, decisions, part } = o;
  const consumer = config.consumerName;
  const groups = {
    requests: new ConsumerGroup({ cmd: o.claims, stream: n.requests, group: ROUTER_GROUP, consumer, log: part('consumer') }),
    reroute: new ConsumerGroup({ cmd, stream: n.reroute, group: ROUTER_GROUP, consumer, log: part('reroute') }),
  };
  // Batches, retries of held requests and their expiry take turns in one lane.
  const lane = new Serial();
  const held = new HeldRequests({ redis: cmd, n, group: groups.requests, lane, log: part('intake'), stats, decisions, now: o.now });
  const intake = new Intake({ ...o, log: part('intake'), maxAttempts: config.maxAttempts, group: groups.requests, held, lane, decisions });
  const rerouter = new RerouteHandler({ ...o, log: part('reroute'), group: groups.reroute });
  const readerBase = { batchSize: config.batchSize, blockMs: deps.blockMs, claimIdleMs: config.claimIdle, claimEveryMs: deps.claimEveryMs };
  const readers = [
    // depth 8: batches are read and claimed, routed and sent, and waited for all at once
    // (Intake.handle), so that neither the bridge nor Redis waits for the other under a
    // backlog. 8 drained faster than 3 or 5, and as fast as 16 (P1 in BENCHMARKS.md).
    // readAhead 3: under a backlog the next reads are on their way while a batch is handled.
    // Under a maxmemory-policy that evicts, no new request is read (SPEC.md section 7).
    new GroupReader({ ...readerBase, group: groups.requests, blocking: blocking[0], depth: 8, readAhead: 3, log: part('consumer'), handle: (b) => intake.handle(b), paused: () => watch.policy.refusing() }),
    new GroupReader({ ...readerBase, group: groups.reroute, blocking: blocking[1], log: part('reroute'), handle: (b) => rerouter.handle(b) }),
  ];
  return { held, intake, rerouter, readers };
}

/** Run `fn` every `ms` from now on, never twice at once; failures are the callee's to log. */
function every(ms: number, fn: () => Promise<void>): Periodic {
  const p = new Periodic(ms, () => fn().catch(() => undefined), { unref: true });
  p.start();
  return p;
}

export async function createBridge(config: RouterConfig, deps: BridgeDeps = {}): Promise<BridgeHandle> {
  const root = deps.log ?? createLogger({ level: config.logLevel, base: { service: SERVICE } });
  const p = assemble(config, deps, root);
  const { log, n, registry, intake, held, rerouter, deadNodes, deadlines, board, stats, watch } = p;
  // Redis's clock and policy before anything is judged or read (bounded: Redis may be down).
  await watch.start();

  // After every refresh: count the queues and learn, show new node queues, try held requests and
  // notices, move dead nodes' jobs, rebalance waiting jobs and keep models warm.
  registry.onRefresh(async (s) => {
    await p.balancing.afterRefresh(s);
    board.sync(s.known);
    if (!watch.policy.refusing()) await intake.retryHeld();
    await rerouter.retryPending();
    await deadNodes.sweep(s);
  });
  // A first snapshot before reading (bounded: Redis may be down; the bridge keeps trying).
  await withTimeout(registry.refresh(), 3000, 'first registry read').catch((err: Error) => log.warn({ err: err.message }, 'registry not read yet; routing waits for it'));
  board.sync(registry.current().known);

  const http = await serveHttp(config, p, root);
  const timers = startWork(config, deps, p);
  const access = board.writable ? 'writable (admin credentials set)' : 'read-only';
  log.info({ redis: describeRedis(config), prefix: config.streamPrefix, consumer: config.consumerName, http_port: http.port, board: access }, 'bridge started');

  let closing: Promise<void> | undefined;
  return {
    httpPort: http.port,
    names: n,
    stats: () => stats.snapshot(),
    snapshot: () => registry.current(),
    costs: () => p.balancing.learner,
    waiting: () => held.count,
    refresh: () => registry.refreshAndNotify(),
    sweepDeadlines: () => deadlines.tick(),
    close: () => (closing ??= closeBridge(p, http, timers)),
  };
}

/** The HTTP server: the routes, the decision stream and Bull Board; the connections are closed if it cannot start. */
async function serveHttp(config: RouterConfig, p: Parts, root: Logger): Promise<HttpServerHandle> {
  const { n, cmd, registry, held, rerouter, board, stats, watch } = p;
  const boardListener = board.listener();
  try {
    return await startHttpServer({
      host: config.httpAddr,
      port: config.httpPort,
      log: root.child({ component: 'http' }),
      routes: httpRoutes(
        {
          redis: cmd,
          n,
          consumer: config.consumerName,
          counts: () => stats.snapshot(),
          waiting: () => held.count,
          reroutesPending: () => rerouter.pendingCount(),
          snapshot: () => registry.current(),
          depths: p.depths,
          metrics: p.metrics,
          routing: config.routing,
          load: (id) => p.balancing.load.get(id),
          where: { redis: cmd, n, eta: p.balancing.etaSource((id) => held.has(id)) },
          readmit: { temp: thresholdsOf(config).readmitTemp, ram: thresholdsOf(config).readmitRam },
        },
        {
          consumer: config.consumerName,
          thresholds: thresholdsOf(config),
          snapshot: () => registry.current(),
          depths: p.depths,
          timeline: () => p.timeline.view(),
          held: () => held.count,
          boardWritable: board.writable,
        },
        watch,
      ),
      // The decision stream is long-lived, so not a plain route; everything else goes to Bull Board.
      fallback: (req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (path === '/events' && req.method === 'GET') p.decisions.serve(req, res);
        else boardListener(req, res);
      },
    });
  } catch (err) {
    for (const c of [cmd, p.claims, ...p.blocking]) c.disconnect();
    throw err;
  }
}

/** Start reading, refreshing, sweeping and the periodic work; returns the periodic work to stop. */
function startWork(config: RouterConfig, deps: BridgeDeps, p: Parts): Periodic[] {
  const { log, n, cmd, held, rerouter, stats } = p;
  for (const r of p.readers) r.start();
  p.registry.start();
  p.deadlines.start();
  p.timeline.start();
  return [
    every(deps.touchEveryMs ?? Math.max(250, Math.floor(config.claimIdle / 3)), async () => {
      await held.touch();
      await rerouter.touchPending();
    }),
    every(deps.statsFlushMs ?? 1000, () => stats.flush(cmd)),
    every(deps.trimEveryMs ?? 5000, async () => {
      for (const stream of [n.requests, n.reroute]) {
        await trimAcked(cmd, stream).catch((err: Error) => log.debug({ stream, err: err.message }, 'stream not trimmed; trying again later'));
      }
    }),
  ];
}

/** Stop intake first, then the background work, then queues, HTTP and connections. */
async function closeBridge(p: Parts, http: HttpServerHandle, timers: Periodic[]): Promise<void> {
  const { log, cmd } = p;
  log.info({}, 'bridge closing');
  http.markClosing();
  p.decisions.close();
  p.intake.stop();
  const steps: [string, () => Promise<unknown>][] = [
    ['stream readers', () => Promise.all(p.readers.map((r) => r.stop()))],
    ['registry', () => p.registry.stop()],
    ['redis watch', async () => p.watch.stop()],
    ['deadlines', () => p.deadlines.stop()],
    ['timeline', () => p.timeline.stop()],
    ['dead nodes', () => p.deadNodes.stop()],
    ['balancing', () => p.balancing.stop()],
    ['timers', async () => timers.forEach((t) => void t.stop())],
    ['stats flush', () => p.stats.flush(cmd)],
    ['board', () => p.board.close()],
    ['queues', () => p.dispatcher.close()],
    ['http', () => http.close()],
    ['redis', () => Promise.all([cmd, p.claims].map((c) => withTimeout(c.quit(), 1000, 'redis quit').catch(() => c.disconnect())))],
    ['blocking connections', async () => p.blocking.forEach((c) => c.disconnect())],
  ];
  for (const [what, step] of steps) {
    try {
      // Bounded: with Redis down a step could otherwise wait for a reconnect forever.
      await withTimeout(step(), 2000, what);
    } catch (err) {
      log.warn({ step: what, err: (err as Error).message }, 'close step failed');
    }
  }
  log.info({}, 'bridge closed');
}

function httpRoutes(ctx: HandlerContext, page: ClusterContext, watch: RedisWatch) {
  return {
    '/health': () => healthHandler(() => watch.view()),
    '/stats': () => statsHandler(ctx),
    '/nodes': () => nodesHandler(ctx),
    '/metrics': () => metricsHandler(ctx),
    '/requests/*': (req: IncomingMessage) => requestStatusHandler(ctx.where, (req.url ?? '').split('?')[0]!.slice('/requests/'.length)),
    '/cluster': () => clusterHandler(page),
    ...Object.fromEntries(ASSET_PATHS.map((path) => [path, () => assetHandler(path)])),
  };
}
