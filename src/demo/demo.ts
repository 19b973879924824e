/**
 * `npm run demo`: the whole system on this machine. A Redis (the one at --redis-addr, else a
 * throwaway redis-server), two simulated Raspberry Pi 5 nodes named as in the guide (pi-16g
 * with llama3.2:3b loaded, pi-8g with gemma3:1b), a worker on each, the bridge, and a scripted
 * Brain. Midway pi-8g overheats and is skipped until it cools. A real Ollama on
 * localhost:11434, when one answers, joins as a third node.
 */
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { loadRouterConfig } from '../config/router.js';
import { loadWorkerConfig } from '../config/worker.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { DEFAULT_PREFIX, names } from '../lib/names.js';
import { redisOptionsFor } from '../lib/redis.js';
import { createBridge, type BridgeHandle } from '../router/bridge.js';
import { startSimulatorCluster, type SimulatorCluster } from '../simulator/index.js';
import { createWorker, type WorkerHandle } from '../worker/worker.js';
import { Brain } from './brain.js';
import { portOr, realOllama, redisAnswers, startOwnRedis, type OwnRedis } from './infra.js';
import { PLAIN, newTally, nodeTable, record, screen, summarize, summaryText, type NodeRow, type ScreenSize, type Style, type Summary, type Tally } from './view.js';

export interface DemoOptions {
  durationS: number;
  redisAddr: string;
  /** Simulated time runs this many times faster than real time. */
  speed: number;
  /** Requests per second from the Brain. */
  rate: number;
  /** Stream prefix; undefined: the guide's on a Redis the demo started, `orion-demo:inference` on one it found. */
  prefix: string | undefined;
  /** Redraw in place (a terminal) or print line by line. */
  live: boolean;
  /** Colours (a terminal without NO_COLOR) or none. */
  style?: Style;
  /** The terminal's size for the live view. @defaultValue 80x24 */
  size?: () => ScreenSize;
  logFile: string;
  out: (text: string) => void;
  /** Stops the demo early (Ctrl-C). */
  signal: AbortSignal;
}

const HOT_NODE = 'pi-8g';
export const DEMO_PREFIX = 'orion-demo:inference';

/** `-p PORT ` when the address is not redis-cli's default. */
function redisCliArgs(addr: string): string {
  const port = addr.slice(addr.lastIndexOf(':') + 1);
  return port === '6379' ? '' : `-p ${port} `;
}

/** Delete every key matching `pattern` (SCAN, never KEYS). */
async function removeKeys(redisAddr: string, pattern: string): Promise<void> {
  const r = redisClient(redisAddr);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      if (keys.length) await r.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}

type Cleanup = () => Promise<void> | void;

/** What the demo started, undone in reverse order; a step that fails does not stop the rest. */
class Cleanups {
  private readonly steps: Cleanup[] = [];

  add(step: Cleanup): void {
    this.steps.push(step);
  }

  async run(): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step();
      } catch {
        /* keep closing the rest */
      }
    }
  }
}

/** The demo's lines: printed as they come in the line-by-line mode, the last 200 kept for the live view. */
class EventFeed {
  readonly lines: string[] = [];

  constructor(private readonly print: ((line: string) => void) | undefined) {}

  add(line: string): void {
    const stamped = `${new Date().toISOString().slice(11, 19)} ${line}`;
    this.lines.push(stamped);
    if (this.lines.length > 200) this.lines.shift();
    this.print?.(stamped);
  }
}

/** The bridge's view of the nodes, and an event each time a node's standing changes. */
class NodeWatch {
  rows: NodeRow[] = [];
  private readonly seen = new Map<string, string>();

  constructor(
    private readonly base: string,
    private readonly feed: EventFeed,
  ) {}

  async refresh(): Promise<void> {
    try {
      this.rows = (await (await fetch(`${this.base}/nodes`, { signal: AbortSignal.timeout(1000) })).json()) as NodeRow[];
    } catch {
      return; // keep the last view
    }
    for (const r of this.rows) {
      const now = r.eligible ? 'eligible' : `skipped: ${r.excluded_reason ?? '?'}`;
      const before = this.seen.get(r.node_id);
      if (before !== now) this.feed.add(`bridge: ${r.node_id} ${now}${before ? ` (was ${before})` : ''}`);
      this.seen.set(r.node_id, now);
    }
  }

  /** How the bridge last showed a node: `eligible`, `skipped: <reason>`, or undefined before it did. */
  standing(nodeId: string): string | undefined {
    return this.seen.get(nodeId);
  }
}

/**
 * pi-8g overheats a third of the way in and cools again past the middle. The heat is held
 * until the bridge has shown the node skipped for temperature, and the run goes on past its
 * duration until the bridge shows it back in rotation: on a busy machine the bridge may see a
 * health report seconds late, and a fixed window would pass without it noticing.
 */
class HeatScript {
  private phase: 'before' | 'hot' | 'cooling' | 'done' = 'before';

  constructor(
    private readonly cluster: SimulatorCluster,
    private readonly durationS: number,
    private readonly watch: NodeWatch,
    private readonly feed: EventFeed,
  ) {}

  step(elapsedS: number): void {
    const standing = this.watch.standing(HOT_NODE);
    if (this.phase === 'before' && elapsedS >= this.durationS * 0.35) {
      this.phase = 'hot';
      this.cluster.node(HOT_NODE).node.setTemperature(82);
      this.feed.add(`${HOT_NODE} overheats to 82 °C: over --max-temp 75, the bridge routes around it`);
    } else if (this.phase === 'hot' && elapsedS >= this.durationS * 0.6 && standing === 'skipped: temperature') {
      this.phase = 'cooling';
      this.cluster.node(HOT_NODE).node.setTemperature(60);
      this.feed.add(`${HOT_NODE} cooled to 60 °C: back in rotation`);
    } else if (this.phase === 'cooling' && standing === 'eligible') {
      this.phase = 'done';
    }
  }

  /** Whether the run may end: the node was never heated (a short run) or is back in rotation. */
  get settled(): boolean {
    return this.phase === 'before' || this.phase === 'done';
  }
}

/** How long a run may go past its duration waiting for the heat script to settle. */
const SETTLE_GRACE_S = 60;

/** Everything the demo runs against. */
interface Stage {
  redisAddr: string;
  prefix: string;
  cluster: SimulatorCluster;
  /** The bridge's HTTP base URL. */
  base: string;
}

function redisClient(redisAddr: string): Redis {
  return new Redis(redisOptionsFor({ redisAddr, redisPassword: '', redisUsername: '', redisTls: false, redisTlsCa: '' }));
}

/** The Redis at --redis-addr, else a throwaway one; and the prefix to use on it. */
async function chooseRedis(o: DemoOptions, say: (line: string) => void, cleanups: Cleanups): Promise<{ redisAddr: string; prefix: string }> {
  if (await redisAnswers(o.redisAddr)) {
    // On a Redis that may serve a real ORION, keep the demo's simulated pi-16g and pi-8g
    // apart from real nodes of the same names: another prefix, removed again at the end.
    const prefix = o.prefix ?? DEMO_PREFIX;
    if (prefix === DEMO_PREFIX) cleanups.add(() => removeKeys(o.redisAddr, `${prefix}:*`));
    return { redisAddr: o.redisAddr, prefix };
  }
  say(`No Redis answers at ${o.redisAddr}: starting a throwaway redis-server.`);
  const own: OwnRedis = await startOwnRedis();
  cleanups.add(() => own.stop());
  return { redisAddr: own.addr, prefix: o.prefix ?? DEFAULT_PREFIX };
}

/** The two simulated Pis, and a real Ollama on localhost:11434 when one answers. */
async function startNodes(speed: number, say: (line: string) => void, cleanups: Cleanups): Promise<{ cluster: SimulatorCluster; nodes: DemoNode[] }> {
  const root = mkdtempSync(join(tmpdir(), 'orion-demo-'));
  cleanups.add(() => rmSync(root, { recursive: true, force: true }));
  const cluster = await startSimulatorCluster([
    { id: 'pi-16g', profile: 'pi5-16g', speed, loaded: ['llama3.2:3b'], installed: ['llama3.2:3b', 'gemma3:1b', 'qwen2.5:0.5b'], numParallel: 2, sysRoot: join(root, 'pi-16g'), procRoot: join(root, 'pi-16g') },
    { id: 'pi-8g', profile: 'pi5-8g', speed, loaded: ['gemma3:1b'], sysRoot: join(root, 'pi-8g'), procRoot: join(root, 'pi-8g') },
  ]);
  cleanups.add(() => cluster.close());
  const nodes: DemoNode[] = cluster.nodes.map((s) => ({ id: s.id, url: s.url, root: join(root, s.id) }));
  const local = await realOllama('http://localhost:11434');
  if (local) {
    say(`A real Ollama answers at localhost:11434 (${local.join(', ') || 'no models'}): it joins as node 'local'.`);
    nodes.push({ id: 'local', url: 'http://localhost:11434' });
  }
  return { cluster, nodes };
}

interface DemoNode {
  id: string;
  url: string;
  /** Where a simulated node's /proc and /sys files are (a real node has the machine's own). */
  root?: string;
}

/** A worker for each node, on ports from 8081 up. */
async function startWorkers(nodes: DemoNode[], redisAddr: string, prefix: string, log: Logger, cleanups: Cleanups): Promise<void> {
  const workers: WorkerHandle[] = [];
  cleanups.add(() => Promise.all(workers.map((w) => w.close({ force: true }))).then(() => undefined));
  let port = 8081;
  for (const node of nodes) {
    port = await portOr(port);
    const flags: Record<string, string> = {
      'node-id': node.id,
      'redis-addr': redisAddr,
      'stream-prefix': prefix,
      'ollama-host': node.url,
      'http-port': String(port),
      'heartbeat-interval': '1s',
    };
    if (node.root) Object.assign(flags, { 'proc-root': node.root, 'sys-root': node.root });
    else flags['concurrency'] = '1';
    workers.push(await createWorker(loadWorkerConfig({ flags, env: {} }), { log }));
    port++;
  }
}

/** Redis, the nodes, their workers and the bridge (on 8080 when free). */
async function startStage(o: DemoOptions, say: (line: string) => void, log: Logger, cleanups: Cleanups): Promise<Stage> {
  const { redisAddr, prefix } = await chooseRedis(o, say, cleanups);
  const { cluster, nodes } = await startNodes(o.speed, say, cleanups);
  await startWorkers(nodes, redisAddr, prefix, log, cleanups);
  const bridgePort = await portOr(8080);
  const bridge: BridgeHandle = await createBridge(
    loadRouterConfig({ flags: { 'redis-addr': redisAddr, 'stream-prefix': prefix, 'http-port': String(bridgePort), 'consumer-name': 'demo-bridge' }, env: {} }),
    { log },
  );
  cleanups.add(() => bridge.close());
  return { redisAddr, prefix, cluster, base: `http://localhost:${bridgePort}` };
}

/** The Brain, sending on one connection and reading answers on another. */
function startBrain(stage: Stage, tally: Tally, feed: EventFeed, cleanups: Cleanups): Brain {
  const send = redisClient(stage.redisAddr);
  const listen = send.duplicate();
  cleanups.add(() => {
    send.disconnect();
    listen.disconnect();
  });
  const brain = new Brain(send, listen, names(stage.prefix), (out) => feed.add(record(tally, out)));
  const listening = brain.listenLoop();
  cleanups.add(async () => {
    brain.stop();
    await listening;
  });
  return brain;
}

/** Short lines, the URLs first on theirs, so that they stay whole on an 80-column terminal. */
function headerLines(o: DemoOptions, stage: Stage): string[] {
  const { base, redisAddr, prefix } = stage;
  return [
    `ORION inference demo: 2 simulated Pi 5s, x${o.speed} time, ${o.rate} req/s, ${o.durationS} s`,
    `  Bull Board ${base}/admin/queues   Ctrl-C stops`,
    `  ${base}/nodes   ${base}/stats`,
    `  ${base}/metrics`,
    `  redis-cli ${redisCliArgs(redisAddr)}HGETALL ${names(prefix).health}`,
    `  Redis ${redisAddr} (prefix ${prefix}); logs ${o.logFile}`,
  ];
}

interface Show {
  header: string[];
  watch: NodeWatch;
  tally: Tally;
  feed: EventFeed;
  say: (line: string) => void;
}

/** Send at the Brain's rate, follow the heat script and redraw, until the time is up and the heat script has settled, or Ctrl-C. */
async function drive(o: DemoOptions, brain: Brain, heat: HeatScript, show: Show): Promise<void> {
  const { header, watch, tally, feed, say } = show;
  const started = Date.now();
  const interval = 1000 / o.rate;
  let nextSend = started;
  let lastPlain = 0;
  while (!o.signal.aborted) {
    const now = Date.now();
    const elapsed = (now - started) / 1000;
    if (elapsed >= o.durationS && (heat.settled || elapsed >= o.durationS + SETTLE_GRACE_S)) break;
    heat.step(elapsed);
    // Past the duration nothing more is sent; the watch runs on until the heat script settles.
    for (; nextSend <= now && elapsed < o.durationS; nextSend += interval) {
      await brain.sendOne();
      tally.sent++;
    }
    await watch.refresh();
    if (o.live) o.out('\x1b[H\x1b[2J' + screen(header, watch.rows, tally, feed.lines, elapsed, o.durationS, o.size?.(), o.style ?? PLAIN));
    else if (now - lastPlain >= 5000) {
      lastPlain = now;
      say(`-- ${elapsed.toFixed(0)} s: sent ${tally.sent}, answered ${tally.answered}, sticky ${tally.sticky}, fallback ${tally.fallback}, cold loads ${tally.coldLoads}`);
      for (const l of nodeTable(watch.rows)) say(l);
    }
    await new Promise((r) => setTimeout(r, Math.min(250, Math.max(10, nextSend - Date.now()))));
  }
}

/** Let what is in flight finish (20 s at most), then sum up against the bridge's /stats. */
async function finish(o: DemoOptions, brain: Brain, base: string, tally: Tally): Promise<Summary> {
  const drainUntil = Date.now() + 20_000;
  while (brain.pending() > 0 && Date.now() < drainUntil && !o.signal.aborted) await new Promise((r) => setTimeout(r, 100));
  let stats: unknown = null;
  try {
    stats = await (await fetch(`${base}/stats`, { signal: AbortSignal.timeout(1000) })).json();
  } catch {
    /* the summary says null */
  }
  return summarize(tally, o.speed, stats);
}

export async function runDemo(o: DemoOptions): Promise<Summary> {
  const cleanups = new Cleanups();
  const say = (line: string): void => o.out(line + '\n');
  mkdirSync(resolve(o.logFile, '..'), { recursive: true });
  const logStream = createWriteStream(o.logFile, { flags: 'a' });
  const log: Logger = createLogger({ level: 'info', sink: (l) => logStream.write(l + '\n') });
  cleanups.add(() => new Promise<void>((r) => logStream.end(() => r())));
  try {
    const stage = await startStage(o, say, log, cleanups);
    const tally = newTally();
    const feed = new EventFeed(o.live ? undefined : say);
    const brain = startBrain(stage, tally, feed, cleanups);
    const header = headerLines(o, stage);
    if (!o.live) header.forEach(say);
    const watch = new NodeWatch(stage.base, feed);
    await drive(o, brain, new HeatScript(stage.cluster, o.durationS, watch, feed), { header, watch, tally, feed, say });
    const summary = await finish(o, brain, stage.base, tally);
    say('');
    say(summaryText(summary));
    return summary;
  } finally {
    await cleanups.run();
  }
}
