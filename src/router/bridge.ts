/**
 * The bridge, `orion-inference-router`: reads `{p}:requests` as group `orion-inference-router`,
 * routes each request from an in-memory registry snapshot, and enqueues it on the chosen
 * node's BullMQ queue; re-routes jobs workers hand back and jobs of dead nodes; answers
 * requests past their deadline; serves /health, /stats, /nodes, /metrics and Bull Board.
 *
 * Connections: one command connection (queues, scripts, registry) and one blocking connection
 * per stream read (`{p}:requests`, `{p}:reroute`).
 */
import type { RouterConfig } from '../config/router.js';
import { defineBusCommands } from '../lib/bus.js';
import { startHttpServer, type HttpServerHandle } from '../lib/http.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { ROUTER_GROUP, names, type Names } from '../lib/names.js';
import { connectRedis, describeRedis } from '../lib/redis.js';
import { Board } from './board.js';
import { GroupReader } from './consumer.js';
import { DeadlineSweeper } from './deadlines.js';
import { DeadNodeSweeper } from './deadnodes.js';
import { Dispatcher, withTimeout } from './dispatcher.js';
import { SERVICE, healthHandler, metricsHandler, nodesHandler, statsHandler, type HandlerContext } from './http.js';
import { Intake } from './intake.js';
import { RouterMetrics, type QueueDepth } from './metrics.js';
import { Registry, type Snapshot } from './registry.js';
import { RerouteHandler } from './reroute.js';
import { BridgeStats, type Counts } from './stats.js';

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
}

export interface BridgeHandle {
  readonly httpPort: number;
  readonly names: Names;
  /** This process's counters since start. */
  stats(): Counts;
  snapshot(): Snapshot;
  /** Requests held for lack of a node. */
  waiting(): number;
  /** Refresh the registry now and run what follows a refresh (tests). */
  refresh(): Promise<void>;
  /** Run a deadline sweep now (tests). */
  sweepDeadlines(): Promise<void>;
  /** Stop reading, finish the batch in hand, stop timers, close queues, HTTP and Redis. Safe twice. */
  close(): Promise<void>;
}

export async function createBridge(config: RouterConfig, deps: BridgeDeps = {}): Promise<BridgeHandle> {
  const root = deps.log ?? createLogger({ level: config.logLevel, base: { service: SERVICE } });
  const log = root.child({ component: 'bridge' });
  const n = names(config.streamPrefix);
  const consumer = config.consumerName;
  const cmd = connectRedis(config, root, 'orion-router');
  const blockingRequests = connectRedis(config, root, 'orion-router-requests');
  const blockingReroute = connectRedis(config, root, 'orion-router-reroute');
  defineBusCommands(cmd);

  const registry = new Registry({
    redis: cmd,
    n,
    thresholds: { maxTemp: config.maxTemp, maxRam: config.maxRam, staleAfterMs: config.staleAfter },
    log: root.child({ component: 'registry' }),
    refreshMs: deps.refreshMs,
    loadingTtlMs: deps.loadingTtlMs,
  });
  const dispatcher = new Dispatcher({ redis: cmd, n, log: root.child({ component: 'dispatcher' }), addTimeoutMs: deps.addTimeoutMs, depthCacheMs: deps.depthCacheMs });
  const depths = (): Promise<ReadonlyMap<string, QueueDepth>> =>
    withTimeout(dispatcher.depths(registry.current().known), 1000, 'job counts').catch(() => new Map<string, QueueDepth>());
  let heldCount = (): number => 0;
  const metrics = new RouterMetrics({ snapshot: () => registry.current(), depths, waiting: () => heldCount() });
  const stats = new BridgeStats(n, consumer, metrics);
  const common = { redis: cmd, n, registry, dispatcher, stats };
  const intake = new Intake({ ...common, log: root.child({ component: 'intake' }), maxAttempts: config.maxAttempts });
  heldCount = () => intake.heldCount();
  const rerouter = new RerouteHandler({ ...common, log: root.child({ component: 'reroute' }) });
  const deadNodes = new DeadNodeSweeper({ ...common, log: root.child({ component: 'dead-nodes' }), consumer });
  const deadlines = new DeadlineSweeper({ redis: cmd, n, dispatcher, intake, stats, log: root.child({ component: 'deadlines' }), tickMs: deps.deadlineTickMs });
  const board = new Board({ redis: cmd, n, dispatcher, adminUser: config.adminUser, adminPassword: config.adminPassword });

  const readerBase = { cmd, group: ROUTER_GROUP, consumer, batchSize: config.batchSize, blockMs: deps.blockMs, claimIdleMs: config.claimIdle, claimEveryMs: deps.claimEveryMs };
  const requestsReader = new GroupReader({ ...readerBase, blocking: blockingRequests, stream: n.requests, log: root.child({ component: 'consumer' }), handle: (e) => intake.handle(e) });
  const rerouteReader = new GroupReader({ ...readerBase, blocking: blockingReroute, stream: n.reroute, log: root.child({ component: 'reroute' }), handle: (e) => rerouter.handle(e) });
  intake.reader = requestsReader;
  rerouter.reader = rerouteReader;

  // After every refresh: show new node queues, try held requests and notices, move dead nodes' jobs.
  registry.onRefresh(async (s) => {
    board.sync(s.known);
    await intake.retryHeld();
    await rerouter.retryPending();
    await deadNodes.sweep(s);
  });

  // Start: a first snapshot (bounded: Redis may be down; the bridge keeps trying), the readers'
  // groups, then HTTP, the readers and the timers.
  await withTimeout(registry.refresh(), 3000, 'first registry read').catch((err: Error) => log.warn({ err: err.message }, 'registry not read yet; routing waits for it'));
  board.sync(registry.current().known);

  const timers: NodeJS.Timeout[] = [];
  let http: HttpServerHandle;
  try {
    http = await startHttpServer({
      host: config.httpAddr,
      port: config.httpPort,
      log: root.child({ component: 'http' }),
      routes: httpRoutes({
        redis: cmd,
        n,
        consumer,
        counts: () => stats.snapshot(),
        waiting: () => intake.heldCount(),
        reroutesPending: () => rerouter.pendingCount(),
        snapshot: () => registry.current(),
        depths,
        metrics,
      }),
      extend: (app) => board.mount(app),
    });
  } catch (err) {
    for (const c of [cmd, blockingRequests, blockingReroute]) c.disconnect();
    throw err;
  }
  requestsReader.start();
  rerouteReader.start();
  registry.start();
  deadlines.start();
  const every = (ms: number, fn: () => Promise<void>): void => {
    let busy = false;
    const t = setInterval(() => {
      if (busy) return;
      busy = true;
      fn()
        .catch(() => undefined)
        .finally(() => (busy = false));
    }, ms);
    t.unref();
    timers.push(t);
  };
  every(deps.touchEveryMs ?? Math.max(250, Math.floor(config.claimIdle / 3)), async () => {
    await intake.touchHeld();
    await rerouter.touchPending();
  });
  every(deps.statsFlushMs ?? 1000, () => stats.flush(cmd));
  log.info(
    { redis: describeRedis(config), prefix: config.streamPrefix, consumer, http_port: http.port, board: board.writable ? 'writable (admin credentials set)' : 'read-only' },
    'bridge started',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      log.info({}, 'bridge closing');
      http.markClosing();
      intake.stop();
      const steps: [string, () => Promise<unknown>][] = [
        ['requests reader', () => requestsReader.stop()],
        ['reroute reader', () => rerouteReader.stop()],
        ['registry', () => registry.stop()],
        ['deadlines', () => deadlines.stop()],
        ['dead nodes', () => deadNodes.stop()],
        ['timers', async () => timers.forEach((t) => clearInterval(t))],
        ['stats flush', () => withTimeout(stats.flush(cmd), 1000, 'stats flush')],
        ['board', () => board.close()],
        ['queues', () => dispatcher.close()],
        ['http', () => http.close()],
        ['redis', () => withTimeout(cmd.quit(), 1000, 'redis quit').catch(() => cmd.disconnect())],
        ['blocking connections', async () => [blockingRequests, blockingReroute].forEach((c) => c.disconnect())],
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
    })();
    return closing;
  };

  return {
    httpPort: http.port,
    names: n,
    stats: () => stats.snapshot(),
    snapshot: () => registry.current(),
    waiting: () => intake.heldCount(),
    refresh: () => registry.refreshAndNotify(),
    sweepDeadlines: () => deadlines.tick(),
    close,
  };
}

function httpRoutes(ctx: HandlerContext) {
  return {
    '/health': () => healthHandler(),
    '/stats': () => statsHandler(ctx),
    '/nodes': () => nodesHandler(ctx),
    '/metrics': () => metricsHandler(ctx),
  };
}
