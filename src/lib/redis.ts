/**
 * Redis connections from the shared options. BullMQ needs `maxRetriesPerRequest: null` on
 * connections that block; every connection reconnects with capped backoff, quietly.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './logger.js';

export interface RedisSettings {
  redisAddr: string;
  redisPassword: string;
  redisUsername: string;
  redisTls: boolean;
  redisTlsCa: string;
  /** Sentinels (`host:port`); when there are any, the master is found through them. */
  redisSentinels?: readonly string[];
  /** The master's name at the Sentinels. @defaultValue mymaster */
  redisMasterName?: string;
  redisSentinelPassword?: string;
}

/** `host:port` or `[v6]:port` into its parts. */
function hostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?(?::(\d+))?$/.exec(addr);
  return { host: m?.[1] || 'localhost', port: m?.[2] ? Number(m[2]) : 6379 };
}

/** ioredis options for an address `host:port` or a `redis://` / `rediss://` URL. */
export function redisOptionsFor(s: RedisSettings): RedisOptions {
  const opts: RedisOptions = {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    // Back off 50 ms, 100 ms, ... up to 2 s between reconnects; never give up.
    retryStrategy: (times) => Math.min(times * 50, 2000),
  };
  let tls = s.redisTls;
  if (/^rediss?:\/\//.test(s.redisAddr)) {
    const u = new URL(s.redisAddr);
    opts.host = u.hostname.replace(/^\[|\]$/g, '');
    opts.port = u.port ? Number(u.port) : 6379;
    if (u.username) opts.username = decodeURIComponent(u.username);
    if (u.password) opts.password = decodeURIComponent(u.password);
    const db = u.pathname.replace('/', '');
    if (db) opts.db = Number(db);
    if (u.protocol === 'rediss:') tls = true;
  } else {
    const where = hostPort(s.redisAddr);
    opts.host = where.host;
    opts.port = where.port;
  }
  if (s.redisPassword) opts.password = s.redisPassword;
  if (s.redisUsername) opts.username = s.redisUsername;
  if (tls) {
    // SNI takes a host name only (an IP there is deprecated, and Node warns); the certificate
    // is checked against the host either way.
    const sni = isIP(opts.host) === 0 ? { servername: opts.host } : {};
    opts.tls = s.redisTlsCa ? { ca: readFileSync(s.redisTlsCa), ...sni } : sni;
  }
  if (s.redisSentinels?.length) withSentinels(opts, s, tls);
  return opts;
}

/**
 * Find the master through Sentinels and follow its failovers: ioredis asks them for the
 * master's address on every (re)connect, so a connection to a master that died reconnects to
 * the one they name next. Writes refused meanwhile (READONLY) are the callers' passing faults
 * (src/lib/transient.ts). ioredis's failover detector stays off: with it (ioredis 5.11), a
 * switch of master left connections failing with "Connection is closed" for good (fault row 33).
 */
function withSentinels(opts: RedisOptions, s: RedisSettings, tls: boolean): void {
  delete opts.host;
  delete opts.port;
  opts.sentinels = (s.redisSentinels ?? []).map(hostPort);
  opts.name = s.redisMasterName || 'mymaster';
  if (s.redisSentinelPassword) opts.sentinelPassword = s.redisSentinelPassword;
  // Keep asking the Sentinels while none answers (never give up), at most every 2 s.
  opts.sentinelRetryStrategy = (times) => Math.min(times * 100, 2000);
  if (tls) {
    // TLS to the master found; the Sentinels are reached the same way.
    opts.enableTLSForSentinelMode = true;
    opts.sentinelTLS = opts.tls;
    if (opts.tls && 'servername' in opts.tls) delete opts.tls.servername;
  }
}

/**
 * A connection that logs its state changes once per change (no error floods while Redis is
 * down) and never throws on its own.
 */
export function connectRedis(s: RedisSettings | RedisOptions, log: Logger, name: string): Redis {
  const opts = 'redisAddr' in s ? redisOptionsFor(s) : s;
  const client = new Redis({ ...opts, connectionName: name, lazyConnect: false });
  let down = false;
  client.on('error', (err: Error) => {
    if (!down && /WRONGPASS|NOAUTH/.test(err.message)) {
      log.error({ connection: name, err: err.message }, 'redis refused the credentials: check --redis-username and --redis-password; retrying with backoff');
    } else if (!down) {
      log.warn({ connection: name, err: err.message }, 'redis connection error; retrying with backoff');
    }
    down = true;
  });
  client.on('ready', () => {
    if (down) log.info({ connection: name }, 'redis connection restored');
    down = false;
  });
  return client;
}

/** Where to tell a person the connection goes, without secrets. */
export function describeRedis(s: RedisSettings): string {
  if (s.redisSentinels?.length) return `sentinel master ${s.redisMasterName || 'mymaster'} via ${s.redisSentinels.join(',')}`;
  if (/^rediss?:\/\//.test(s.redisAddr)) {
    const u = new URL(s.redisAddr);
    u.password = '';
    return u.toString();
  }
  return s.redisAddr;
}
