/**
 * The fault suite's world: built programs as real processes (bridge, workers, the Ollama
 * simulator), a throwaway redis-server that can be killed and restarted, a Brain that sends
 * requests and reads every answer, and short intervals (heartbeat 1 s, stale 3 s) so each row
 * runs in seconds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { InferenceRequest, InferenceResponse } from '../../src/contracts/types.js';
import { names, type Names } from '../../src/lib/names.js';
import { projectRoot } from '../../src/lib/paths.js';
import { ROW_RESULTS, type RowReport } from '../../scripts/reliability.js';
import { requireBuilt as requireBuiltFiles } from '../helpers/built.js';
import { freePort, startRedis, testPrefix, type RedisServer, type RedisServerOptions } from '../helpers/redis.js';

// The project root from the sources (the tests) and from dist/ (the bench's P9 row) alike.
export const ROOT = projectRoot();
export const BIN = {
  router: join(ROOT, 'dist/src/bin/router.js'),
  worker: join(ROOT, 'dist/src/bin/worker.js'),
  sim: join(ROOT, 'dist/src/bin/sim.js'),
};
/** Fails the calling test file, saying why, when the programs are not built. */
export const requireBuilt = (): void => requireBuiltFiles(...Object.values(BIN));

/** Intervals of the fault suite: fast enough to run in minutes, in the guide's proportions. */
export const FAST = { heartbeat: '1s', healthTtl: '3s', staleAfter: '3s', lockDuration: '3s' };

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** A program under test, its output kept for the failure message. */
export class Proc {
  readonly output: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    const keep = (d: Buffer): void => {
      for (const line of d.toString().split('\n')) if (line) this.output.push(line);
      if (this.output.length > 2000) this.output.splice(0, this.output.length - 2000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child.kill(sig);
  }

  async kill(sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGCONT');
    this.child.kill(sig);
    await this.exited;
  }

  /** Log lines (JSON) matching a message text. */
  logs(msg: RegExp): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const l of this.output) {
      if (!l.startsWith('{')) continue;
      try {
        const o = JSON.parse(l) as Record<string, unknown>;
        if (msg.test(String(o['msg'] ?? ''))) out.push(o);
      } catch {
        /* not JSON */
      }
    }
    return out;
  }

  tail(n = 40): string {
    return `--- ${this.name} (last ${n} lines)\n${this.output.slice(-n).join('\n')}`;
  }
}

export function startProc(name: string, script: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  return new Proc(name, child);
}

export interface SimNodeSpec {
  id: string;
  profile?: string;
  loaded?: string[];
  /** The simulator writes the node's /proc and /sys files (RAM, temperature) for its worker to read. */
  files?: boolean;
}

export interface WorldOptions {
  redis?: RedisServerOptions;
  /** Simulated nodes, served by one simulator process (a port each). */
  nodes: SimNodeSpec[];
  /** Simulator speed (simulated durations divided by it). @defaultValue 50 */
  speed?: number;
  label?: string;
}

/** Everything one fault row needs; close() stops it all. */
export class World {
  readonly n: Names;
  readonly prefix: string;
  readonly procs = new Set<Proc>();
  readonly simPorts = new Map<string, number>();
  readonly dir: string;
  redis!: RedisServer;
  admin!: Redis;
  sim!: Proc;
  private readonly opts: WorldOptions;

  constructor(opts: WorldOptions) {
    this.opts = opts;
    this.prefix = testPrefix(opts.label ?? 'fault');
    this.n = names(this.prefix);
    this.dir = mkdtempSync(join(tmpdir(), 'orion-fault-'));
  }

  async start(): Promise<this> {
    this.redis = await startRedis(this.opts.redis);
    this.admin = new Redis({ port: this.redis.port, host: '127.0.0.1', maxRetriesPerRequest: null, retryStrategy: () => 100 });
    this.admin.on('error', () => undefined);
    const nodeArgs: string[] = [];
    for (const node of this.opts.nodes) {
      const port = await freePort();
      this.simPorts.set(node.id, port);
      nodeArgs.push('--node', `${node.id}:${node.profile ?? 'pi5-16g'}:${port}`);
    }
    const cfg = join(this.dir, 'sim.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        speed: this.opts.speed ?? 50,
        nodes: this.opts.nodes.map((node) => ({
          id: node.id,
          profile: node.profile ?? 'pi5-16g',
          port: this.simPorts.get(node.id),
          loaded: node.loaded ?? ['gemma3:1b'],
          ...(node.files ? { sysRoot: this.nodeRoot(node.id), procRoot: this.nodeRoot(node.id) } : {}),
        })),
      }),
    );
    this.sim = this.track(startProc('ollama-sim', BIN.sim, ['--config', cfg, '--log-level', 'warn']));
    for (const node of this.opts.nodes) await waitFor(`simulator node ${node.id}`, () => this.simOk(node.id), 15_000);
    return this;
  }

  private track(p: Proc): Proc {
    this.procs.add(p);
    return p;
  }

  /** Where the simulator writes a node's /proc and /sys files (`files: true`). */
  nodeRoot(id: string): string {
    return join(this.dir, 'nodes', id);
  }

  simUrl(id: string): string {
    return `http://127.0.0.1:${this.simPorts.get(id)}`;
  }

  private async simOk(id: string): Promise<boolean> {
    try {
      return (await fetch(this.simUrl(id), { signal: AbortSignal.timeout(500) })).ok;
    } catch {
      return false;
    }
  }

  /** Set fault knobs on one simulated node (see docs/SIMULATOR.md). */
  async simFaults(id: string, faults: Record<string, unknown>): Promise<void> {
    const res = await fetch(`${this.simUrl(id)}/_sim/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(faults) });
    if (!res.ok) throw new Error(`setting faults on ${id}: ${res.status} ${await res.text()}`);
  }

  async clearSimFaults(id: string): Promise<void> {
    await fetch(`${this.simUrl(id)}/_sim/faults`, { method: 'DELETE' });
  }

  common(): string[] {
    return ['--redis-addr', this.redis.addr, '--stream-prefix', this.prefix, '--http-addr', '127.0.0.1', '--http-port', '0', '--log-level', 'info'];
  }

  startWorker(id: string, extra: string[] = [], env: Record<string, string> = {}): Proc {
    if (this.opts.nodes.find((node) => node.id === id)?.files) extra = ['--proc-root', this.nodeRoot(id), '--sys-root', this.nodeRoot(id), ...extra];
    return this.track(
      startProc(
        `worker ${id}`,
        BIN.worker,
        [...this.common(), '--node-id', id, '--ollama-host', this.simUrl(id), '--concurrency', '2', '--heartbeat-interval', FAST.heartbeat, '--health-ttl', FAST.healthTtl, '--lock-duration', FAST.lockDuration, ...extra],
        env,
      ),
    );
  }

  startBridge(name = 'bridge-a', extra: string[] = [], env: Record<string, string> = {}): Proc {
    return this.track(startProc(`bridge ${name}`, BIN.router, [...this.common(), '--consumer-name', name, '--stale-after', FAST.staleAfter, '--claim-idle', '3s', ...extra], env));
  }

  /** Wait until the node's TTL health key exists (it published health). */
  async healthy(id: string, timeoutMs = 15_000): Promise<void> {
    await waitFor(`${id} healthy`, async () => {
      const doc = await this.admin.get(this.n.healthKey(id));
      return doc !== null && (JSON.parse(doc) as { available: boolean }).available;
    }, timeoutMs);
  }

  /** Send requests as the Brain does (one pipeline); returns their ids. */
  async send(docs: Array<Partial<InferenceRequest> & { request_id: string }>): Promise<string[]> {
    const pipe = this.admin.pipeline();
    for (const d of docs) pipe.xadd(this.n.requests, '*', 'data', JSON.stringify({ model: 'gemma3:1b', prompt: `question ${d.request_id}`, ...d }));
    await pipe.exec();
    return docs.map((d) => d.request_id);
  }

  /** Every document on a reply stream, by request id. */
  async answers(stream = this.n.responses): Promise<Map<string, InferenceResponse[]>> {
    const out = new Map<string, InferenceResponse[]>();
    let cursor = '-';
    for (;;) {
      const entries = await this.admin.xrange(stream, cursor, '+', 'COUNT', 5000);
      for (const [, fields] of entries) {
        const doc = JSON.parse(fields[1] ?? '{}') as InferenceResponse;
        if (!doc.done) continue;
        const list = out.get(doc.request_id) ?? [];
        list.push(doc);
        out.set(doc.request_id, list);
      }
      if (entries.length < 5000) break;
      cursor = `(${entries[entries.length - 1]![0]}`;
    }
    return out;
  }

  /** Wait until every id has a final answer; returns the answers. */
  async allAnswered(ids: string[], timeoutMs = 60_000, stream = this.n.responses): Promise<Map<string, InferenceResponse[]>> {
    return waitFor(`${ids.length} answers`, async () => {
      const a = await this.answers(stream);
      return ids.every((id) => a.has(id)) ? a : undefined;
    }, timeoutMs, 250);
  }

  async deadLetters(): Promise<Record<string, unknown>[]> {
    const entries = await this.admin.xrange(this.n.deadletter, '-', '+');
    return entries.map(([, f]) => JSON.parse(f[1] ?? '{}') as Record<string, unknown>);
  }

  /** Jobs left in a node queue, by state. */
  async queueCounts(id: string): Promise<{ wait: number; active: number; prioritized: number; delayed: number; failed: number }> {
    const q = `${this.n.nodeQueuePrefix}:${id}`;
    const [wait, active, prioritized, delayed, failed] = await Promise.all([
      this.admin.llen(`${q}:wait`),
      this.admin.llen(`${q}:active`),
      this.admin.zcard(`${q}:prioritized`),
      this.admin.zcard(`${q}:delayed`),
      this.admin.zcard(`${q}:failed`),
    ]);
    return { wait, active, prioritized, delayed, failed };
  }

  /** Output of every process, for a failure message. */
  dump(): string {
    return [...this.procs].map((p) => p.tail()).join('\n');
  }

  async close(): Promise<void> {
    await Promise.all([...this.procs].map((p) => p.kill('SIGKILL')));
    this.admin?.disconnect();
    await this.redis?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One row of the RELIABILITY table, written by the row's test to build/reports/faults/ and gathered at the end. */
export type { RowReport };
export const RESULTS_DIR = ROW_RESULTS;

export function report(r: RowReport): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `row-${String(r.row).padStart(2, '0')}.json`), JSON.stringify(r, null, 2));
}

// ------------------------------------------------------------ helpers for rows 2-6, 13, 14

/** The simulator's `/_sim/state` document of one node (counters, queue, faults). */
export interface SimState {
  counters: { requests: number; generate: number; chat: number; completed: number; aborted: number; errors: number; faultsInjected: number };
  queue: { pending: number; active: number; generating: number };
}

export async function simState(w: World, id: string): Promise<SimState> {
  const res = await fetch(`${w.simUrl(id)}/_sim/state`, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`sim state of ${id}: ${res.status}`);
  return (await res.json()) as SimState;
}

/** Entries of `{p}:requests` delivered to a consumer and not acked yet. */
export async function pendingAt(w: World, consumer: string): Promise<number> {
  const rows = (await w.admin.xpending(w.n.requests, 'orion-inference-router', '-', '+', 100_000, consumer)) as unknown[];
  return rows.length;
}

/** Jobs a node queue holds that are not finished: waiting, prioritized, delayed or active. */
export async function held(w: World, id: string): Promise<number> {
  const c = await w.queueCounts(id);
  return (c['wait'] ?? 0) + (c['prioritized'] ?? 0) + (c['delayed'] ?? 0) + (c['active'] ?? 0);
}

/** The HTTP port a worker or bridge logged at start (`--http-port 0`). */
export async function httpPortOf(p: Proc): Promise<number> {
  return waitFor(`${p.name} port`, () => {
    const line = p.logs(/^(worker|bridge) started$/)[0];
    return typeof line?.['http_port'] === 'number' ? line['http_port'] : undefined;
  }, 15_000);
}

/** A worker's `orion_worker_jobs_total` counters, by outcome. */
export async function workerOutcomes(p: Proc): Promise<Record<string, number>> {
  const port = await httpPortOf(p);
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^orion_worker_jobs_total\{([^}]*)\} (\d+)/gm)) {
    const outcome = /outcome="([^"]*)"/.exec(m[1]!)?.[1] ?? '?';
    out[outcome] = (out[outcome] ?? 0) + Number(m[2]);
  }
  return out;
}

/** How many final answers each node gave, and how many answers had each attempt number. */
export function tally(answers: Map<string, InferenceResponse[]>, ids: string[]): { perNode: Record<string, number>; perAttempt: Record<string, number>; twice: string[]; errors: string[] } {
  const perNode: Record<string, number> = {};
  const perAttempt: Record<string, number> = {};
  const twice: string[] = [];
  const errors: string[] = [];
  for (const id of ids) {
    const list = answers.get(id) ?? [];
    if (list.length > 1) twice.push(id);
    const a = list[0];
    if (!a) continue;
    if (a.error) errors.push(`${id}: ${a.error.code} ${a.error.message}`);
    perNode[a.node_id ?? '?'] = (perNode[a.node_id ?? '?'] ?? 0) + 1;
    perAttempt[String(a.attempt ?? '?')] = (perAttempt[String(a.attempt ?? '?')] ?? 0) + 1;
  }
  return { perNode, perAttempt, twice, errors };
}

/** Run `fn`; on failure, add every process's output to the error. */
export async function withDump<T>(w: World, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    e.message = `${e.message}\n${w.dump()}`;
    throw e;
  }
}

/** Wait until a bridge's `/nodes` shows every given node eligible (its snapshot is up to date). */
export async function routable(bridge: Proc, ids: string[], timeoutMs = 15_000): Promise<void> {
  const port = await httpPortOf(bridge);
  await waitFor(`${ids.join(', ')} eligible at ${bridge.name}`, async () => {
    const nodes = (await (await fetch(`http://127.0.0.1:${port}/nodes`, { signal: AbortSignal.timeout(2000) })).json()) as { node_id: string; eligible: boolean }[];
    return ids.every((id) => nodes.some((x) => x.node_id === id && x.eligible));
  }, timeoutMs);
}

/**
 * On a started world whose only node is `pi-a`: delay each chunk of its answers by `slowStreamMs`,
 * start its worker and a bridge, and wait until the bridge routes to it.
 */
export async function slowSingleNode(w: World, slowStreamMs: number): Promise<void> {
  await w.simFaults('pi-a', { slowStreamMs });
  w.startWorker('pi-a');
  const bridge = w.startBridge();
  await withDump(w, () => w.healthy('pi-a', 30_000));
  await withDump(w, () => routable(bridge, ['pi-a']));
}

/** The nodes a bridge's `/nodes` shows eligible now. */
export async function eligibleAt(bridge: Proc): Promise<string[]> {
  const port = await httpPortOf(bridge);
  const nodes = (await (await fetch(`http://127.0.0.1:${port}/nodes`, { signal: AbortSignal.timeout(2000) })).json()) as { node_id: string; eligible: boolean }[];
  return nodes.filter((x) => x.eligible).map((x) => x.node_id);
}

// ------------------------------------------------------------ helpers for rows 7-12, 15

/** Warn and error log lines of a program, written at or after `sinceMs` (ms since epoch). */
export function warnings(p: Proc, sinceMs = 0): Record<string, unknown>[] {
  return p.logs(/./).filter((o) => (o['level'] === 'warn' || o['level'] === 'error') && Date.parse(String(o['time'])) >= sinceMs);
}

/** The Brain sending steadily (see `startFlow`). */
export interface Flow {
  /** Every request id sent so far, in order. */
  readonly ids: string[];
  /** When each was sent (ms since epoch). */
  readonly sentAt: ReadonlyMap<string, number>;
  /** Stop sending; resolves once every send has reached Redis. */
  stop(): Promise<void>;
}

/**
 * `perBatch` requests every `everyMs` until `stop()`, ids `<label>-<batch>-<n>`. A send does not
 * wait for the one before: while Redis is down, the Brain's client queues what it sends.
 */
export function startFlow(w: World, label: string, o: { everyMs: number; perBatch?: number; options?: Record<string, unknown> }): Flow {
  const ids: string[] = [];
  const sentAt = new Map<string, number>();
  const sends: Promise<unknown>[] = [];
  let sending = true;
  const loop = (async () => {
    // Also ends when the world is closed under it (a test that failed before stop()).
    for (let i = 0; sending && w.admin.status !== 'end'; i++) {
      const batch = Array.from({ length: o.perBatch ?? 2 }, (_, k) => `${label}-${i}-${k}`);
      for (const id of batch) sentAt.set(id, Date.now());
      ids.push(...batch);
      const sent = w.send(batch.map((request_id) => ({ request_id, options: o.options })));
      sent.catch(() => undefined); // seen by stop(); not an unhandled rejection meanwhile
      sends.push(sent);
      await sleep(o.everyMs);
    }
  })();
  return {
    ids,
    sentAt,
    async stop() {
      sending = false;
      await loop;
      await Promise.all(sends);
    },
  };
}

/** Ms from `sinceMs` to the first final answer written after it (a stream id carries its XADD time). */
export function firstAnswerAfter(w: World, sinceMs: number, timeoutMs = 30_000): Promise<number> {
  return waitFor('an answer', async () => {
    const [last] = await w.admin.xrevrange(w.n.responses, '+', '-', 'COUNT', 1);
    const at = last ? Number(last[0].split('-')[0]) : 0;
    return at >= sinceMs ? at - sinceMs : undefined;
  }, timeoutMs, 20);
}

/** Wait until at least one job runs on the given nodes; returns how many do. */
export function someRunning(w: World, nodes: string[], timeoutMs = 10_000): Promise<number> {
  return waitFor('a job running', async () => {
    const active = (await Promise.all(nodes.map((id) => w.queueCounts(id)))).reduce((a, c) => a + c.active, 0);
    return active > 0 ? active : undefined;
  }, timeoutMs, 10);
}
