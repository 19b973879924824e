/**
 * Shared by the bridge integration suites: a bridge on a throwaway Redis with short intervals,
 * simulated nodes (health written straight into the registry), requests sent as the Brain
 * sends them, and a look into the node queues through BullMQ's own API.
 */
import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import type { InferenceJobData } from '../../src/lib/bus.js';
import { loadRouterConfig, type RouterConfig } from '../../src/config/router.js';
import type { NodeHealth } from '../../src/contracts/types.js';
import { publishHealth } from '../../src/lib/health-registry.js';
import { names, type Names } from '../../src/lib/names.js';
import { rfc3339 } from '../../src/lib/time.js';
import { createBridge, type BridgeDeps, type BridgeHandle } from '../../src/router/bridge.js';
import { startRedis, testPrefix, type RedisServer } from '../helpers/redis.js';

export const FAST: BridgeDeps = {
  refreshMs: 100,
  deadlineTickMs: 100,
  blockMs: 100,
  claimEveryMs: 200,
  touchEveryMs: 200,
  depthCacheMs: 0,
  statsFlushMs: 100,
  addTimeoutMs: 2000,
};

export interface Harness {
  server: RedisServer;
  redis: Redis;
  /** Everything a test needs for one fresh prefix. */
  scope(label?: string): Scope;
  stop(): Promise<void>;
}

export interface Scope {
  prefix: string;
  n: Names;
  config(flags?: Record<string, string>): RouterConfig;
  start(flags?: Record<string, string>, deps?: BridgeDeps): Promise<BridgeHandle>;
  node(id: string, over?: Partial<NodeHealth> & { ttl?: number | false; age_ms?: number }): Promise<void>;
  send(doc: unknown): Promise<string>;
  sendRaw(...fields: string[]): Promise<string>;
  queue(node: string): Queue<InferenceJobData>;
  jobs(node: string): Promise<Job<InferenceJobData>[]>;
  replies(stream?: string): Promise<Record<string, unknown>[]>;
  deadletters(): Promise<Record<string, unknown>[]>;
  /** The dead letters once there is one: an error answer is published first, its letter just after. */
  lettered(): Promise<Record<string, unknown>[]>;
  get(path: string, bridge: BridgeHandle, init?: RequestInit): Promise<Response>;
}

/** The bridge suites test the guide's rule and the delivery machinery: `--routing guide` unless a test says otherwise (bridge-balanced.test.ts). */
export async function harness(): Promise<Harness> {
  const server = await startRedis();
  const redis = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: null });
  const bridges: BridgeHandle[] = [];
  const queues: Queue[] = [];

  const scope = (label = 'bridge'): Scope => {
    const prefix = testPrefix(label);
    const n = names(prefix);
    const qs = new Map<string, Queue<InferenceJobData>>();
    const docs = async (key: string) => (await redis.xrange(key, '-', '+')).map(([, f]) => JSON.parse(f[f.indexOf('data') + 1]!) as Record<string, unknown>);
    const config = (flags: Record<string, string> = {}): RouterConfig =>
      loadRouterConfig({
        flags: { 'redis-addr': server.addr, 'stream-prefix': prefix, 'http-port': '0', 'http-addr': '127.0.0.1', 'consumer-name': 'bridge-1', 'log-level': 'silent', routing: 'guide', ...flags },
        env: {},
      });
    return {
      prefix,
      n,
      config,
      async start(flags = {}, deps = {}) {
        const b = await createBridge(config(flags), { ...FAST, ...deps });
        bridges.push(b);
        return b;
      },
      async node(id, over = {}) {
        const { ttl = 15_000, age_ms = 0, ...fields } = over;
        const doc: NodeHealth = {
          node_id: id,
          cpu_percent: 10,
          ram_percent: 50,
          temp_celsius: 50,
          models: [],
          available: true,
          last_seen: rfc3339(Date.now() - age_ms),
          installed_models: ['gemma3:1b', 'llama3.2:3b'],
          ...fields,
        };
        const json = JSON.stringify(doc);
        await publishHealth(redis, n, id, json, ttl === false ? null : ttl);
      },
      send: (doc) => redis.xadd(n.requests, '*', 'data', typeof doc === 'string' ? doc : JSON.stringify(doc)) as Promise<string>,
      sendRaw: (...fields) => redis.xadd(n.requests, '*', ...fields) as Promise<string>,
      queue(node) {
        let q = qs.get(node);
        if (!q) {
          q = new Queue<InferenceJobData>(node, { prefix: n.nodeQueuePrefix, connection: redis });
          qs.set(node, q);
          queues.push(q);
        }
        return q;
      },
      async jobs(node) {
        return (await this.queue(node).getJobs(['wait', 'prioritized', 'delayed', 'active', 'failed'])).filter(Boolean);
      },
      replies: (stream = n.responses) => docs(stream),
      deadletters: () => docs(n.deadletter),
      lettered: () => until(() => docs(n.deadletter).then((d) => d.length > 0 && d), 5000, 'a dead letter'),
      get: (path, bridge, init) => fetch(`http://127.0.0.1:${bridge.httpPort}${path}`, init),
    };
  };

  return {
    server,
    redis,
    scope,
    async stop() {
      await Promise.all(bridges.map((b) => b.close()));
      await Promise.all(queues.map((q) => q.close()));
      redis.disconnect();
      await server.stop();
    },
  };
}

type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

/** Poll until `fn` returns a truthy value (or throw after `ms`). */
export async function until<T>(fn: () => Promise<T> | T, ms = 5000, what = 'condition'): Promise<Truthy<T>> {
  const end = Date.now() + ms;
  let last: T | undefined;
  for (;;) {
    last = await fn();
    if (last) return last as Truthy<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
