/**
 * `npm run dev`: ORION on this machine as separate programs, started and stopped together.
 * A Redis (the one at --redis-addr when it answers, else a throwaway redis-server), the Ollama
 * simulator on :11434 with gemma3:1b loaded (unless --ollama-host names a real Ollama), one
 * worker on :8081, the bridge on :8080 and the gateway on :11435, each the built program in a
 * process of its own, its JSON log lines printed with its name in front. Ctrl-C (or SIGTERM)
 * stops them in order (gateway, bridge, worker, simulator, Redis), each with SIGINT as pm2 does, and waits for every one; if
 * one of them exits on its own, the rest are stopped too and the exit code is 1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../lib/paths.js';
import { portFree, redisAnswers, startOwnRedis, type OwnRedis } from '../demo/infra.js';

export interface DevOptions {
  redisAddr: string;
  /** A real Ollama to use; empty: start the simulator. */
  ollamaHost: string;
  nodeId: string;
  out(line: string): void;
  signal: AbortSignal;
}

interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

const SIM_PORT = 11434;
const WORKER_PORT = 8081;
const BRIDGE_PORT = 8080;
const GATEWAY_PORT = 11435;

function start(name: string, bin: string, args: string[], out: (line: string) => void, readyMsg: string): { proc: Proc; ready: Promise<void> } {
  // A process group of its own: the terminal's Ctrl-C reaches only this runner, which then
  // stops each program once, in order.
  const child = spawn(process.execPath, [join(projectRoot(), 'dist/src/bin', bin), ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    void exited.then((code) => reject(new Error(`${name} exited (code ${code}) before it was ready`)));
  });
  const pad = name.padEnd(6);
  for (const stream of [child.stdout!, child.stderr!]) {
    let rest = '';
    stream.on('data', (d: Buffer) => {
      const lines = (rest + d.toString()).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) {
        out(`${pad} | ${l}`);
        if (l.includes(`"msg":"${readyMsg}"`)) onReady();
      }
    });
  }
  return { proc: { name, child, exited }, ready };
}

async function stopAll(procs: Proc[], out: (line: string) => void): Promise<void> {
  for (const p of [...procs].reverse()) {
    if (p.child.exitCode !== null || p.child.signalCode !== null) continue;
    out(`dev    | stopping ${p.name}`);
    p.child.kill('SIGINT');
    const t = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
    await p.exited;
    clearTimeout(t);
  }
}

/** Ports the set needs that something else holds already: a clear message instead of a crash later. */
async function busyPorts(o: DevOptions): Promise<string[]> {
  const want: [number, string][] = [
    [WORKER_PORT, 'worker'],
    [BRIDGE_PORT, 'bridge'],
    [GATEWAY_PORT, 'gateway'],
  ];
  if (!o.ollamaHost) want.push([SIM_PORT, 'simulator']);
  const busy: string[] = [];
  for (const [port, what] of want) if (!(await portFree(port))) busy.push(`:${port} (${what})`);
  return busy;
}

const aborted = (signal: AbortSignal): Promise<void> =>
  signal.aborted ? Promise.resolve() : new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));

/** The programs of the set, in the order they start. */
function programs(o: DevOptions, redisAddr: string): Array<{ name: string; bin: string; args: string[]; ready: string }> {
  const list = [];
  if (!o.ollamaHost) list.push({ name: 'sim', bin: 'sim.js', args: ['--port', String(SIM_PORT), '--host', '127.0.0.1', '--profile', 'pi5-8g', '--loaded', 'gemma3:1b'], ready: 'simulator ready' });
  const ollama = o.ollamaHost || `http://127.0.0.1:${SIM_PORT}`;
  list.push({ name: 'worker', bin: 'worker.js', args: ['--node-id', o.nodeId, '--redis-addr', redisAddr, '--ollama-host', ollama, '--http-port', String(WORKER_PORT)], ready: 'worker started' });
  list.push({ name: 'bridge', bin: 'router.js', args: ['--redis-addr', redisAddr, '--http-port', String(BRIDGE_PORT)], ready: 'bridge started' });
  list.push({ name: 'gw', bin: 'gateway.js', args: ['--redis-addr', redisAddr, '--http-port', String(GATEWAY_PORT)], ready: 'gateway started' });
  return list;
}

/** Run the set until Ctrl-C (0) or until one program exits on its own (1). */
export async function runDev(o: DevOptions): Promise<number> {
  const busy = await busyPorts(o);
  if (busy.length > 0) {
    o.out(`dev: ports in use: ${busy.join(', ')}; stop what holds them (another npm run dev, the demo, pm2) and try again`);
    return 1;
  }
  const procs: Proc[] = [];
  const killLeft = (): void => procs.forEach((p) => p.child.exitCode === null && p.child.kill('SIGKILL'));
  process.once('exit', killLeft);
  let own: OwnRedis | undefined;
  try {
    let redisAddr = o.redisAddr;
    if (!(await redisAnswers(redisAddr))) {
      own = await startOwnRedis();
      redisAddr = own.addr;
      o.out(`dev    | no Redis answers at ${o.redisAddr}: started a throwaway redis-server at ${redisAddr}`);
    }
    // Each program starts once the one before it is ready.
    for (const p of programs(o, redisAddr)) {
      const { proc, ready } = start(p.name, p.bin, p.args, o.out, p.ready);
      procs.push(proc);
      if (!(await Promise.race([ready.then(() => true), aborted(o.signal).then(() => false)]))) return 0;
    }
    const port = redisAddr.slice(redisAddr.lastIndexOf(':') + 1);
    o.out(`dev    | ready: Redis ${redisAddr}, worker ${o.nodeId} http://localhost:${WORKER_PORT}/health, bridge http://localhost:${BRIDGE_PORT}/ (live page), Bull Board http://localhost:${BRIDGE_PORT}/admin/queues, gateway (OpenAI and Ollama APIs) http://localhost:${GATEWAY_PORT}`);
    o.out(`dev    | send: npx orion send --model gemma3:1b --prompt "Why is the sky blue?" --stream${port === '6379' ? '' : ` --redis-addr ${redisAddr}`}   Ctrl-C stops everything`);
    const firstExit = Promise.race(procs.map((p) => p.exited.then((c) => `${p.name} exited (code ${c})`)));
    const why = await Promise.race([firstExit, aborted(o.signal).then(() => undefined)]);
    if (why === undefined) return 0;
    o.out(`dev    | ${why}: stopping the rest`);
    return 1;
  } catch (err) {
    o.out(`dev    | ${(err as Error).message}`);
    return 1;
  } finally {
    await stopAll(procs, o.out);
    await own?.stop();
    process.removeListener('exit', killLeft);
  }
}
