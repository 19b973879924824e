/**
 * The `orion` command line as a function of its arguments: `runCli(argv, io)` parses (node's
 * util.parseArgs, strict: an unknown flag is an error naming it), prints help (`orion --help`,
 * `orion help CMD`, `orion CMD --help`), resolves the connection settings (flag > ORION_* > default)
 * and runs one command. Nothing here touches `process`: src/bin/cli.ts does.
 */
import { parseArgs } from 'node:util';
import type { Redis } from 'ioredis';
import { redisOptions } from '../config/common.js';
import { resolveOptions, type Flags } from '../config/options.js';
import { ConfigError } from '../lib/errors.js';
import { silentLogger } from '../lib/logger.js';
import { names } from '../lib/names.js';
import { connectRedis, describeRedis, redisOptionsFor } from '../lib/redis.js';
import { VERSION } from '../lib/version.js';
import { forget, drain, undrain } from './admin.js';
import { ask, send } from './ask.js';
import { UsageError, type CliContext, type Command, type OptionsConfig, type Values } from './context.js';
import { preload } from './preload.js';
import { status } from './status.js';
import { tail } from './tail.js';
import { acl, deadletter, validate } from './tools.js';
import { nodes, stats } from './view.js';

export const COMMANDS: readonly Command[] = [ask, send, status, tail, nodes, stats, preload, drain, undrain, forget, deadletter, validate, acl];

/** Flags every command takes: the connection (each with its ORION_* twin), --json, --help. */
const COMMON: OptionsConfig = {
  ...Object.fromEntries(Object.values(redisOptions).map((o) => [o.flag, { type: 'boolean' in o && o.boolean ? 'boolean' : 'string' } as const])),
  router: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const COMMON_HELP = `Connection (every command; flag > environment > default):
  --redis-addr host:port   Redis (ORION_REDIS_ADDR, default localhost:6379)
  --redis-password PW      (ORION_REDIS_PASSWORD)   --redis-username NAME (ORION_REDIS_USERNAME)
  --redis-tls              (ORION_REDIS_TLS)        --redis-tls-ca FILE   (ORION_REDIS_TLS_CA)
  --stream-prefix P        (ORION_STREAM_PREFIX, default orion:inference)
  --router URL             the bridge's HTTP address (ORION_ROUTER_URL, default http://localhost:8080)
Every other flag has its twin too, ORION_ and the flag's name (--json: ORION_JSON=1, --node: ORION_NODE).`;

export function generalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return `orion ${VERSION}: the operator's command line of ORION inference

Usage: orion <command> [arguments] [flags]

Commands:
${lines.join('\n')}

"orion <command> --help" (or "orion help <command>") tells more about one; --json on each prints
documents instead of text.

${COMMON_HELP}
`;
}

export function commandHelp(c: Command): string {
  return `Usage: orion ${c.name} ${c.usage}\n\n${c.help}\n\n${COMMON_HELP}\n`;
}

export interface CliIo {
  env: Record<string, string | undefined>;
  out(text: string): void;
  err(text: string): void;
  tty: boolean;
  signal: AbortSignal;
}

/** The command word: the first argument that is neither a flag nor a common flag's value. */
function findCommand(argv: readonly string[]): { name: string | undefined; rest: string[] } {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a.startsWith('-')) {
      const key = a.replace(/^--?/, '');
      if (!a.includes('=') && COMMON[key]?.type === 'string') i++;
      continue;
    }
    return { name: a, rest: [...argv.slice(0, i), ...argv.slice(i + 1)] };
  }
  return { name: undefined, rest: [...argv] };
}

function settings(values: Values, env: Record<string, string | undefined>): { flags: Flags; routerUrl: string } {
  const flags: Flags = {};
  for (const o of Object.values(redisOptions)) {
    const v = values[o.flag];
    if (v !== undefined) flags[o.flag] = v === true ? true : String(v);
  }
  const router = typeof values['router'] === 'string' ? values['router'] : (env['ORION_ROUTER_URL'] ?? 'http://localhost:8080');
  if (!/^https?:\/\/[^/]+/.test(router)) throw new ConfigError([`--router '${router}': must be an http:// or https:// URL`]);
  return { flags, routerUrl: router.replace(/\/+$/, '') };
}

/** Run `orion` with these arguments; resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const { name, rest } = findCommand(argv);
  if (name === undefined || name === 'help') {
    const about = name === 'help' ? COMMANDS.find((c) => c.name === rest.find((a) => !a.startsWith('-'))) : undefined;
    io.out(about ? commandHelp(about) : generalHelp());
    const asked = name === 'help' || rest.includes('--help') || rest.includes('-h');
    return asked ? 0 : 2;
  }
  if (name === 'version' || name === '--version') {
    io.out(`${VERSION}\n`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    io.err(`orion: unknown command '${name}'\n\n${generalHelp()}`);
    return 2;
  }
  let values: Values;
  let args: string[];
  try {
    const options = { ...COMMON, ...cmd.options };
    const parsed = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
    values = withEnvTwins(parsed.values as Values, options, io.env);
    args = parsed.positionals;
  } catch (err) {
    io.err(`orion ${cmd.name}: ${(err as Error).message.replace(/\. To specify a positional.*$/s, '')}\n(see orion ${cmd.name} --help)\n`);
    return 2;
  }
  if (values['help']) {
    io.out(commandHelp(cmd));
    return 0;
  }
  return runCommand(cmd, values, args, io);
}

/**
 * Every flag's ORION_* twin (`--node-id` reads ORION_NODE_ID, `--json` reads ORION_JSON=1):
 * used where the flag is not given, so a flag always wins.
 */
function withEnvTwins(values: Values, options: Record<string, { type: 'string' | 'boolean' }>, env: Record<string, string | undefined>): Values {
  const out: Values = { ...values };
  for (const [flag, spec] of Object.entries(options)) {
    if (flag === 'help' || out[flag] !== undefined) continue;
    const raw = env[`ORION_${flag.replace(/-/g, '_').toUpperCase()}`];
    if (raw === undefined || raw === '') continue;
    if (spec.type === 'string') out[flag] = raw;
    else if (/^(1|true|yes|on)$/i.test(raw)) out[flag] = true;
    else if (/^(0|false|no|off)$/i.test(raw)) out[flag] = false;
    else throw new Error(`ORION_${flag.replace(/-/g, '_').toUpperCase()}='${raw}': must be true or false`);
  }
  return out;
}

function redisAddrOf(env: Record<string, string | undefined>, values: Values): string {
  const addr = typeof values['redis-addr'] === 'string' ? values['redis-addr'] : (env['ORION_REDIS_ADDR'] ?? redisOptions.redisAddr.default);
  return describeRedis({ redisAddr: addr, redisPassword: '', redisUsername: '', redisTls: false, redisTlsCa: '' });
}

async function runCommand(cmd: Command, values: Values, args: string[], io: CliIo): Promise<number> {
  const conns: Redis[] = [];
  try {
    const { flags, routerUrl } = settings(values, io.env);
    const cfg = resolveOptions(redisOptions, { flags, env: io.env });
    // A command gives up after a few seconds without Redis (the programs wait for it forever);
    // a follow (tail) keeps trying until it is stopped.
    const open = (label: string, patient = false): Redis => {
      const base = redisOptionsFor(cfg);
      const r = connectRedis(patient ? base : { ...base, maxRetriesPerRequest: 1, connectTimeout: 3000, retryStrategy: (times: number) => (times > 5 ? null : 300) }, silentLogger, label);
      conns.push(r);
      return r;
    };
    let main: Redis | undefined;
    const ctx: CliContext = {
      n: names(cfg.streamPrefix),
      redis: () => (main ??= open('orion-cli')),
      redisBlocking: () => open('orion-cli-follow', true),
      routerUrl,
      env: io.env,
      out: (line) => io.out(`${line}\n`),
      write: (text) => io.out(text),
      err: (line) => io.err(`${line}\n`),
      tty: io.tty,
      signal: io.signal,
    };
    return await cmd.run(ctx, values, args);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`orion ${cmd.name}: ${err.message}\n(see orion ${cmd.name} --help)\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      io.err(`orion ${cmd.name}: ${err.problems.join('\n')}\n`);
      return 2;
    }
    const message = (err as Error).message;
    const noRedis = /max retries per request|Connection is closed|ECONNREFUSED|ETIMEDOUT|ENOTFOUND/.test(message);
    io.err(`orion ${cmd.name}: ${noRedis ? `Redis does not answer at ${redisAddrOf(io.env, values)} (${message}); set --redis-addr or ORION_REDIS_ADDR` : message}\n`);
    return 1;
  } finally {
    for (const c of conns) c.disconnect();
  }
}
