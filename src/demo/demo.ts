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
import { PLAIN, newTally, nodeTable, record, screen, summarize, summaryText, type NodeRow, type ScreenSize, type Style, type Summary } from './view.js';

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
  const r = new Redis(redisOptionsFor({ redisAddr, redisPassword: '', redisUsername: '', redisTls: false, redisTlsCa: '' }));
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

export async function runDemo(o: DemoOptions): Promise<Summary> {
  const cleanups: Array<() => Promise<void> | void> = [];
  const say = (line: string): void => o.out(line + '\n');
  mkdirSync(resolve(o.logFile, '..'), { recursive: true });
  const logStream = createWriteStream(o.logFile, { flags: 'a' });
  const log: Logger = createLogger({ level: 'info', sink: (l) => logStream.write(l + '\n') });
  cleanups.push(() => new Promise<void>((r) => logStream.end(() => r())));
  try {
    let redisAddr = o.redisAddr;
    let ownRedis = false;
    if (!(await redisAnswers(redisAddr))) {
      say(`No Redis answers at ${redisAddr}: starting a throwaway redis-server.`);
      const own: OwnRedis = await startOwnRedis();
      cleanups.push(() => own.stop());
      redisAddr = own.addr;
      ownRedis = true;
    }
    // On a Redis that may serve a real ORION, keep the demo's simulated pi-16g and pi-8g
    // apart from real nodes of the same names: another prefix, removed again at the end.
    const prefix = o.prefix ?? (ownRedis ? DEFAULT_PREFIX : DEMO_PREFIX);
    const n = names(prefix);
    if (!ownRedis && prefix === DEMO_PREFIX) cleanups.push(() => removeKeys(redisAddr, `${prefix}:*`));
    const root = mkdtempSync(join(tmpdir(), 'orion-demo-'));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));

    const cluster: SimulatorCluster = await startSimulatorCluster([
      { id: 'pi-16g', profile: 'pi5-16g', speed: o.speed, loaded: ['llama3.2:3b'], installed: ['llama3.2:3b', 'gemma3:1b', 'qwen2.5:0.5b'], numParallel: 2, sysRoot: join(root, 'pi-16g'), procRoot: join(root, 'pi-16g') },
      { id: 'pi-8g', profile: 'pi5-8g', speed: o.speed, loaded: ['gemma3:1b'], sysRoot: join(root, 'pi-8g'), procRoot: join(root, 'pi-8g') },
    ]);
    cleanups.push(() => cluster.close());

    const workers: WorkerHandle[] = [];
    cleanups.push(() => Promise.all(workers.map((w) => w.close({ force: true }))).then(() => undefined));
    const nodes: Array<{ id: string; url: string; root?: string }> = cluster.nodes.map((s) => ({ id: s.id, url: s.url, root: join(root, s.id) }));
    const local = await realOllama('http://localhost:11434');
    if (local) {
      say(`A real Ollama answers at localhost:11434 (${local.join(', ') || 'no models'}): it joins as node 'local'.`);
      nodes.push({ id: 'local', url: 'http://localhost:11434' });
    }
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
    const bridgePort = await portOr(8080);
    const bridge: BridgeHandle = await createBridge(
      loadRouterConfig({ flags: { 'redis-addr': redisAddr, 'stream-prefix': prefix, 'http-port': String(bridgePort), 'consumer-name': 'demo-bridge' }, env: {} }),
      { log },
    );
    cleanups.push(() => bridge.close());
    const base = `http://localhost:${bridgePort}`;

    const tally = newTally();
    const events: string[] = [];
    const event = (line: string): void => {
      const stamped = `${new Date().toISOString().slice(11, 19)} ${line}`;
      events.push(stamped);
      if (events.length > 200) events.shift();
      if (!o.live) say(stamped);
    };
    const send = new Redis(redisOptionsFor({ redisAddr, redisPassword: '', redisUsername: '', redisTls: false, redisTlsCa: '' }));
    const listen = send.duplicate();
    cleanups.push(() => {
      send.disconnect();
      listen.disconnect();
    });
    const brain = new Brain(send, listen, n, (out) => event(record(tally, out)));
    const listening = brain.listenLoop();
    cleanups.push(async () => {
      brain.stop();
      await listening;
    });

    // Short lines, the URLs first on theirs, so that they stay whole on an 80-column terminal.
    const header = [
      `ORION inference demo: 2 simulated Pi 5s, x${o.speed} time, ${o.rate} req/s, ${o.durationS} s`,
      `  Bull Board ${base}/admin/queues   Ctrl-C stops`,
      `  ${base}/nodes   ${base}/stats`,
      `  ${base}/metrics`,
      `  redis-cli ${redisCliArgs(redisAddr)}HGETALL ${n.health}`,
      `  Redis ${redisAddr} (prefix ${prefix}); logs ${o.logFile}`,
    ];
    if (!o.live) header.forEach(say);

    let rows: NodeRow[] = [];
    const seen = new Map<string, string>();
    const refreshRows = async (): Promise<void> => {
      try {
        rows = (await (await fetch(`${base}/nodes`, { signal: AbortSignal.timeout(1000) })).json()) as NodeRow[];
      } catch {
        return; // keep the last view
      }
      // Announce every change in how the bridge sees a node.
      for (const r of rows) {
        const now = r.eligible ? 'eligible' : `skipped: ${r.excluded_reason ?? '?'}`;
        const before = seen.get(r.node_id);
        if (before !== now) event(`bridge: ${r.node_id} ${now}${before ? ` (was ${before})` : ''}`);
        seen.set(r.node_id, now);
      }
    };
    const started = Date.now();
    const hotAt = o.durationS * 0.35;
    const coolAt = o.durationS * 0.6;
    let hot: 'before' | 'hot' | 'after' = 'before';
    let lastPlain = 0;
    const interval = 1000 / o.rate;
    let nextSend = started;
    while (!o.signal.aborted) {
      const now = Date.now();
      const elapsed = (now - started) / 1000;
      if (elapsed >= o.durationS) break;
      if (hot === 'before' && elapsed >= hotAt) {
        hot = 'hot';
        cluster.node(HOT_NODE).node.setTemperature(82);
        event(`${HOT_NODE} overheats to 82 °C: over --max-temp 75, the bridge routes around it`);
      } else if (hot === 'hot' && elapsed >= coolAt) {
        hot = 'after';
        cluster.node(HOT_NODE).node.setTemperature(60);
        event(`${HOT_NODE} cooled to 60 °C: back in rotation`);
      }
      while (nextSend <= now) {
        await brain.sendOne();
        tally.sent++;
        nextSend += interval;
      }
      await refreshRows();
      if (o.live) o.out('\x1b[H\x1b[2J' + screen(header, rows, tally, events, elapsed, o.durationS, o.size?.(), o.style ?? PLAIN));
      else if (now - lastPlain >= 5000) {
        lastPlain = now;
        say(`-- ${elapsed.toFixed(0)} s: sent ${tally.sent}, answered ${tally.answered}, sticky ${tally.sticky}, fallback ${tally.fallback}, cold loads ${tally.coldLoads}`);
        for (const l of nodeTable(rows)) say(l);
      }
      await new Promise((r) => setTimeout(r, Math.min(250, Math.max(10, nextSend - Date.now()))));
    }
    // Let what is in flight finish (bounded).
    const drainUntil = Date.now() + 20_000;
    while (brain.pending() > 0 && Date.now() < drainUntil && !o.signal.aborted) await new Promise((r) => setTimeout(r, 100));
    let stats: unknown = null;
    try {
      stats = await (await fetch(`${base}/stats`, { signal: AbortSignal.timeout(1000) })).json();
    } catch {
      /* the summary says null */
    }
    const summary = summarize(tally, o.speed, stats);
    say('');
    say(summaryText(summary));
    return summary;
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        /* keep closing the rest */
      }
    }
  }
}
