/**
 * A throwaway redis-server per test file (or per fault test), on a free port, keeping nothing
 * on disk unless asked. It can be killed, paused and restarted on the same port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface RedisServerOptions {
  /** Keep an append-only file, so a kill and restart loses nothing. */
  appendonly?: boolean;
  /** Extra arguments, e.g. ['--requirepass', 'x']. */
  args?: string[];
  port?: number;
}

export interface RedisServer {
  readonly port: number;
  readonly addr: string;
  readonly url: string;
  readonly dir: string;
  /** Stop it cleanly (SIGTERM) or with the given signal, and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Start it again on the same port and directory. */
  start(): Promise<void>;
  pause(): void;
  resume(): void;
  readonly process: ChildProcess | undefined;
}

export async function startRedis(opts: RedisServerOptions = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'orion-redis-'));
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', opts.appendonly ? 'yes' : 'no',
      '--appendfsync', 'always',
      '--dir', dir,
      '--protected-mode', 'no',
      ...(opts.args ?? []),
    ];
    child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${stderr}`);
      if (await canConnect(port)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`redis-server did not start on port ${port}: ${stderr}`);
  };

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    if (signal !== 'SIGKILL') c.kill('SIGCONT');
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill(signal);
    });
  };

  await start();
  return {
    port,
    addr: `127.0.0.1:${port}`,
    url: `redis://127.0.0.1:${port}`,
    dir,
    start,
    async stop(signal?: NodeJS.Signals) {
      await stop(signal);
      if (signal === undefined) rmSync(dir, { recursive: true, force: true });
    },
    pause: () => child?.kill('SIGSTOP'),
    resume: () => child?.kill('SIGCONT'),
    get process() {
      return child;
    },
  };
}

/** A prefix no other test uses. */
let counter = 0;
export function testPrefix(label = 't'): string {
  counter += 1;
  return `orion-test:${label}:${process.pid}:${counter}`;
}
