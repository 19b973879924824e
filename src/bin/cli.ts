#!/usr/bin/env node
/** `orion`: a command line for a running ORION (send, nodes, stats, deadletter, validate). */
import { redisOptions } from '../config/common.js';
import { parseArgv, resolveOptions } from '../config/options.js';
import { runCommand, USAGE } from '../cli/commands.js';
import { ConfigError } from '../lib/errors.js';
import { silentLogger } from '../lib/logger.js';
import { names } from '../lib/names.js';
import { connectRedis } from '../lib/redis.js';
import type { Redis } from 'ioredis';

const { flags, positional } = parseArgv(process.argv.slice(2), new Set(['stream', 'json', 'redis-tls', 'file']));
const [cmd = '', ...args] = positional;
if (flags['help'] || flags['h'] || !cmd) {
  console.log(USAGE);
  process.exit(cmd || flags['help'] || flags['h'] ? 0 : 2);
}
const own = new Set(['role', 'password', 'user', 'file', 'node-id', 'model', 'prompt', 'chat', 'stream', 'system', 'priority', 'timeout', 'num-predict', 'seed', 'id', 'json', 'count', 'router']);
const redisFlags = Object.fromEntries(Object.entries(flags).filter(([k]) => !own.has(k)));
let conn: Redis | undefined;
try {
  const cfg = resolveOptions(redisOptions, { flags: redisFlags, env: process.env });
  const routerFlag = flags['router'];
  const code = await runCommand(cmd, args, flags, {
    n: names(cfg.streamPrefix),
    redis: () => (conn ??= connectRedis(cfg, silentLogger, 'orion-cli')),
    routerUrl: (typeof routerFlag === 'string' ? routerFlag : process.env['ORION_ROUTER_URL'] ?? 'http://localhost:8080').replace(/\/+$/, ''),
    out: (l) => console.log(l),
    err: (l) => console.error(l),
  });
  process.exitCode = code;
} catch (err) {
  console.error(err instanceof ConfigError ? err.problems.join('\n') : `orion ${cmd}: ${(err as Error).message}`);
  process.exitCode = err instanceof ConfigError ? 2 : 1;
} finally {
  conn?.disconnect();
}
