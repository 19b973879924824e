/** Options every program shares: Redis connection, stream prefix, HTTP, logging. */
import { hostname } from 'node:os';
import { DEFAULT_PREFIX } from '../lib/names.js';
import { isLogLevel, type LogLevel } from '../lib/logger.js';
import { parsers, type OptionSpec } from './options.js';

export const redisOptions = {
  redisAddr: {
    flag: 'redis-addr',
    env: 'ORION_REDIS_ADDR',
    description: 'Redis server address (host:port, or redis:// / rediss:// URL)',
    default: 'localhost:6379',
    defaultText: 'localhost:6379',
    parse: (raw: string): string => {
      if (!/^rediss?:\/\//.test(raw) && !/^\[?[A-Za-z0-9.:_-]+\]?(:\d{1,5})?$/.test(raw)) {
        throw new Error('must be host:port or a redis:// or rediss:// URL');
      }
      return raw;
    },
  } satisfies OptionSpec<string>,
  redisPassword: {
    flag: 'redis-password',
    env: 'ORION_REDIS_PASSWORD',
    description: 'Redis password',
    default: '',
    defaultText: '""',
    secret: true,
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  redisUsername: {
    flag: 'redis-username',
    env: 'ORION_REDIS_USERNAME',
    description: 'Redis ACL user name',
    default: '',
    defaultText: '""',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  redisTls: {
    flag: 'redis-tls',
    env: 'ORION_REDIS_TLS',
    description: 'Connect to Redis over TLS (implied by a rediss:// address)',
    default: false,
    defaultText: 'false',
    boolean: true,
    parse: parsers.bool,
  } satisfies OptionSpec<boolean>,
  redisTlsCa: {
    flag: 'redis-tls-ca',
    env: 'ORION_REDIS_TLS_CA',
    description: 'CA certificate file (PEM) that signed the Redis server certificate',
    default: '',
    defaultText: '""',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  redisSentinels: {
    flag: 'redis-sentinels',
    env: 'ORION_REDIS_SENTINELS',
    description: 'Redis Sentinels (host:port,host:port,...): ask them for the master of --redis-master-name and follow its failovers (--redis-addr is then not used)',
    default: [] as string[],
    defaultText: '"" (no Sentinel)',
    parse: parseSentinels,
  } satisfies OptionSpec<string[]>,
  redisMasterName: {
    flag: 'redis-master-name',
    env: 'ORION_REDIS_MASTER_NAME',
    description: 'Name of the master the Sentinels watch (with --redis-sentinels)',
    default: 'mymaster',
    defaultText: 'mymaster',
    parse: (raw: string): string => {
      if (!/^[A-Za-z0-9._-]{1,100}$/.test(raw)) throw new Error('must be 1-100 of [A-Za-z0-9._-]');
      return raw;
    },
  } satisfies OptionSpec<string>,
  redisSentinelPassword: {
    flag: 'redis-sentinel-password',
    env: 'ORION_REDIS_SENTINEL_PASSWORD',
    description: 'Password of the Sentinels themselves (requirepass in sentinel.conf), when they have one',
    default: '',
    defaultText: '""',
    secret: true,
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  streamPrefix: {
    flag: 'stream-prefix',
    env: 'ORION_STREAM_PREFIX',
    description: 'Redis stream prefix',
    default: DEFAULT_PREFIX,
    defaultText: DEFAULT_PREFIX,
    parse: (raw: string): string => {
      if (!/^[A-Za-z0-9._:-]{1,100}$/.test(raw) || raw.endsWith(':')) throw new Error('must be 1-100 of [A-Za-z0-9._:-], not ending in ":"');
      return raw;
    },
  } satisfies OptionSpec<string>,
};

/** `host:port,host:port` (IPv6 in brackets) into a list; each port is required. */
export function parseSentinels(raw: string): string[] {
  const list = raw.split(',').map((x) => x.trim()).filter((x) => x !== '');
  for (const x of list) {
    const m = /^\[?([A-Za-z0-9.:_-]+?)\]?:(\d{1,5})$/.exec(x);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`'${x}' is not host:port (a comma-separated list of Sentinels)`);
  }
  return list;
}

export const logOption = {
  logLevel: {
    flag: 'log-level',
    env: 'ORION_LOG_LEVEL',
    description: 'debug, info, warn, error or silent',
    default: 'info' as LogLevel,
    defaultText: 'info',
    parse: (raw: string): LogLevel => {
      if (!isLogLevel(raw)) throw new Error('must be debug, info, warn, error or silent');
      return raw;
    },
  } satisfies OptionSpec<LogLevel>,
};

export function httpOptions(defaultPort: number) {
  return {
    httpPort: {
      flag: 'http-port',
      env: 'ORION_HTTP_PORT',
      description: 'HTTP endpoints port (0 picks a free one)',
      default: defaultPort,
      defaultText: String(defaultPort),
      parse: parsers.int(0, 65535),
    } satisfies OptionSpec<number>,
    httpAddr: {
      flag: 'http-addr',
      env: 'ORION_HTTP_ADDR',
      description: 'HTTP listen address',
      default: '0.0.0.0',
      defaultText: '0.0.0.0',
      parse: parsers.string,
    } satisfies OptionSpec<string>,
  };
}

export const defaultHostname = (): string => hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'orion';
