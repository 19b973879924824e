/** Finding or starting what the demo needs: a Redis, free ports. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

export async function portFree(port: number, host = '0.0.0.0'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** `preferred` when free, else a free port the system picks. */
export async function portOr(preferred: number): Promise<number> {
  if (await portFree(preferred)) return preferred;
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export async function redisAnswers(addr: string): Promise<boolean> {
  const [host, port] = addr.includes(':') ? [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))] : [addr, 6379];
  const r = new Redis({ host: host || 'localhost', port, lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

export interface OwnRedis {
  addr: string;
  stop(): Promise<void>;
}

/** Start a redis-server that keeps nothing on disk; throws a clear message when there is none. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await portOr(6390);
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const failed = new Promise<never>((_, reject) => {
    child.once('error', () =>
      reject(new Error('no Redis answers and redis-server is not installed: install it (Debian: apt-get install redis-server) or pass --redis-addr host:port')),
    );
  });
  const addr = `127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const ok = await Promise.race([redisAnswers(addr), failed]);
    if (ok) {
      return {
        addr,
        stop: () =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`redis-server did not start on port ${port}`);
}

/** Whether a real Ollama answers at `url`, and the models it has. */
export async function realOllama(url: string): Promise<string[] | undefined> {
  try {
    const res = await fetch(`${url}/api/tags`, { signal: AbortSignal.timeout(800) });
    if (!res.ok) return undefined;
    const body = (await res.json()) as { models?: { name: string }[] };
    return (body.models ?? []).map((m) => m.name);
  } catch {
    return undefined;
  }
}
