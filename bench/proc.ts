/**
 * Child processes for the benchmark: the built programs (bridge, worker) and the bench's own
 * helpers (bare BullMQ worker, bare addBulk) and the simulator as an instant backend, each with its own event loop and
 * its own resident memory, as in production. Output lines are kept so the bench can wait for a
 * readiness line and read what a helper prints.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `dist/` (this file is dist/bench/proc.js once built). */
export const DIST = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The programs measured: this build's, unless `useBins` points elsewhere (another build, to compare). */
const bins = { router: join(DIST, 'src', 'bin', 'router.js'), worker: join(DIST, 'src', 'bin', 'worker.js'), sim: join(DIST, 'src', 'bin', 'sim.js') };

export function useBins(o: { router?: string; worker?: string }): void {
  if (o.router) bins.router = o.router;
  if (o.worker) bins.worker = o.worker;
}
export const benchScript = (name: string): string => join(DIST, 'bench', `${name}.js`);
/**
 * The files an 8 GB Pi shows a worker (/proc/meminfo, /proc/stat, a thermal zone), from the test
 * fixtures: workers in the bench read these (--proc-root, --sys-root) as they would on a Pi,
 * rather than this machine's, which has no thermal sensor.
 */
export const PI_8G_ROOT = join(DIST, '..', 'test', 'fixtures', 'nodes', 'pi-8g');

export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  /** Every stdout line so far (stderr lines too, prefixed `stderr: `). */
  readonly lines: string[];
  /** Resolves with the first line (past or future) that `pred` accepts. */
  waitForLine(pred: (line: string) => boolean, timeoutMs?: number, what?: string): Promise<string>;
  /** Resident set size now, in bytes (VmRSS of /proc/<pid>/status). */
  rss(): number;
  /** CPU time used so far, ms. */
  cpuMs(): number;
  /** Pause (SIGSTOP) and resume (SIGCONT) the whole process. */
  pause(): void;
  resume(): void;
  /** Signal it (SIGTERM by default) and wait for the exit; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** CPU time (user + system) a process has used so far, in ms (/proc/<pid>/stat). */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime) counted from 1; here the list starts at field 3.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

/** Every child still running, so an interrupted bench can stop them (`stopAll`). */
const live = new Set<Child>();

/** Stop every child still running (SIGTERM, then SIGKILL after `graceMs`). */
export async function stopAll(graceMs = 5000): Promise<void> {
  await Promise.all([...live].map((c) => c.stop('SIGTERM', graceMs)));
}

/** Start `node [nodeArgs] script [args]`. */
export interface StartOptions {
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Sees every stdout line (the kept `lines` stop at 2,000). */
  onLine?: (line: string) => void;
}

export function startNode(script: string, args: string[], opts: StartOptions = {}): Child {
  const proc = spawn(process.execPath, [...(opts.nodeArgs ?? []), script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
  });
  if (proc.pid === undefined) throw new Error(`cannot start ${script}`);
  const pid = proc.pid;
  const { lines, waiters } = collectLines(proc, opts.onLine);
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const child: Child = {
    proc,
    pid,
    lines,
    exited,
    waitForLine: lineWaiter(script, lines, waiters, exited),
    rss: () => rssOf(pid),
    cpuMs: () => cpuMsOf(pid),
    pause: () => void proc.kill('SIGSTOP'),
    resume: () => void proc.kill('SIGCONT'),
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGCONT');
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  live.add(child);
  void exited.then(() => live.delete(child));
  return child;
}

/** Someone waiting for an output line that `pred` accepts. */
interface LineWaiter {
  pred: (l: string) => boolean;
  resolve: (l: string) => void;
}

/**
 * Splits a child's stdout and stderr into lines: each goes to `onLine`, is kept (the first
 * 2,000) and resolves the waiters it satisfies.
 */
function collectLines(proc: ChildProcess, onLineOpt?: (line: string) => void): { lines: string[]; waiters: LineWaiter[] } {
  const lines: string[] = [];
  const waiters: LineWaiter[] = [];
  const onLine = (line: string): void => {
    onLineOpt?.(line);
    // Keep the output bounded: a long soak must not grow the bench's own memory.
    if (lines.length < 2000) lines.push(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.pred(line)) waiters.splice(i, 1)[0]!.resolve(line);
    }
  };
  const splitter = (prefix: string) => {
    let rest = '';
    return (d: Buffer): void => {
      const parts = (rest + d.toString()).split('\n');
      rest = parts.pop() ?? '';
      for (const p of parts) onLine(prefix + p);
    };
  };
  proc.stdout!.on('data', splitter(''));
  proc.stderr!.on('data', splitter('stderr: '));
  return { lines, waiters };
}

/** A child's `waitForLine`: a kept line, or the next one that matches; fails on timeout or exit. */
function lineWaiter(script: string, lines: string[], waiters: LineWaiter[], exited: Promise<number | null>): Child['waitForLine'] {
  return (pred, timeoutMs = 20_000, what = 'a line') => {
    const seen = lines.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${script}: no ${what} within ${timeoutMs} ms; output:\n${lines.slice(-20).join('\n')}`)), timeoutMs);
      const w = {
        pred,
        resolve: (l: string) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      waiters.push(w);
      void exited.then((code) => {
        clearTimeout(t);
        const i = waiters.indexOf(w);
        if (i !== -1) {
          waiters.splice(i, 1);
          reject(new Error(`${script} exited (${code}) before ${what}; output:\n${lines.slice(-20).join('\n')}`));
        }
      });
    });
  };
}

/** A JSON log line's fields, or undefined when the line is not JSON. */
export function jsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Wait for a log line whose `msg` is `msg`; resolves with its fields. */
export async function waitForLog(child: Child, msg: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  const line = await child.waitForLine((l) => jsonLine(l)?.['msg'] === msg, timeoutMs, `'${msg}' log line`);
  return jsonLine(line)!;
}

/** Start the built bridge (`orion-inference-router`) and wait until it has started. */
export async function startBridgeProcess(flags: Record<string, string>, nodeArgs: string[] = [], opts: StartOptions = {}): Promise<{ child: Child; httpPort: number }> {
  const args = Object.entries({ 'http-addr': '127.0.0.1', 'http-port': '0', 'log-level': 'info', ...flags }).map(([k, v]) => `--${k}=${v}`);
  const child = startNode(bins.router, args, { ...opts, nodeArgs });
  const started = await waitForLog(child, 'bridge started');
  return { child, httpPort: Number(started['http_port']) };
}

/** Start the built worker (`orion-inference-worker`) and wait until it has started. */
export async function startWorkerProcess(flags: Record<string, string>, nodeArgs: string[] = [], opts: StartOptions = {}): Promise<{ child: Child; httpPort: number }> {
  const args = Object.entries({ 'http-addr': '127.0.0.1', 'http-port': '0', 'log-level': 'info', ...flags }).map(([k, v]) => `--${k}=${v}`);
  const child = startNode(bins.worker, args, { ...opts, nodeArgs });
  const started = await waitForLog(child, 'worker started');
  return { child, httpPort: Number(started['http_port']) };
}

/**
 * The backend that answers at once: the project's Ollama simulator (`orion-ollama-sim`) with its
 * `instant` profile (no load time, no generation time) and gemma3:1b loaded, in a process of its own.
 */
export async function startBackend(): Promise<{ child: Child; url: string }> {
  const child = startNode(bins.sim, ['--port=0', '--host=127.0.0.1', '--profile=instant', '--loaded=gemma3:1b', '--log-level=info']);
  const ready = await waitForLog(child, 'simulator ready');
  const url = (ready['nodes'] as { url: string }[] | undefined)?.[0]?.url;
  if (url === undefined) throw new Error(`simulator ready line without a node url: ${JSON.stringify(ready)}`);
  return { child, url };
}

/** Run a bench helper to its end and return its last stdout line parsed as JSON. */
export async function runHelper<T>(name: string, args: string[], timeoutMs = 120_000): Promise<T> {
  const child = startNode(benchScript(name), args);
  const t = setTimeout(() => child.proc.kill('SIGKILL'), timeoutMs);
  const code = await child.exited;
  clearTimeout(t);
  const last = [...child.lines].reverse().find((l) => l.startsWith('{'));
  if (code !== 0 || last === undefined) throw new Error(`${name} exited ${code}: ${child.lines.slice(-10).join('\n')}`);
  return JSON.parse(last) as T;
}
