/**
 * What every `orion` command gets: names, a lazily opened Redis connection, the bridge's URL,
 * where to write, and a signal that ends following commands (Ctrl-C). Commands never touch
 * `process`: the bin wires this to the terminal, tests to strings.
 */
import type { ParseArgsConfig } from 'node:util';
import type { Redis } from 'ioredis';
import type { Names } from '../lib/names.js';

export interface CliContext {
  n: Names;
  /** Opens a Redis connection (only commands that need one call it); the CLI closes it. */
  redis(): Redis;
  /** Another connection, for a command that blocks on one (XREAD BLOCK) while using the first. */
  redisBlocking(): Redis;
  /** The bridge's HTTP base URL, without a trailing slash. */
  routerUrl: string;
  env: Record<string, string | undefined>;
  /** Print a line on stdout. */
  out(line: string): void;
  /** Print text on stdout as it is (streamed tokens, a progress bar). */
  write(text: string): void;
  /** Print a line on stderr. */
  err(line: string): void;
  /** Whether stdout is a terminal (progress bars redraw in place only there). */
  tty: boolean;
  /** Aborted when the user stops the command (Ctrl-C). */
  signal: AbortSignal;
}

export type OptionsConfig = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | undefined>;

/** A usage error: the command's help follows the message, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface Command {
  name: string;
  /** One line for the general help. */
  summary: string;
  /** Arguments after the name, e.g. `NODE [--wait 30s]`. */
  usage: string;
  /** What the command does, its flags and an example (for `orion CMD --help`). */
  help: string;
  options: OptionsConfig;
  run(ctx: CliContext, values: Values, args: string[]): Promise<number>;
}

export function str(values: Values, key: string): string | undefined {
  const v = values[key];
  return typeof v === 'string' ? v : undefined;
}

/** GET a JSON document from the bridge (bounded). */
export async function getJson(ctx: CliContext, path: string): Promise<unknown> {
  const url = `${ctx.routerUrl}${path}`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.any([AbortSignal.timeout(5000), ctx.signal]) });
  } catch (err) {
    throw new Error(`the bridge does not answer at ${ctx.routerUrl} (${(err as Error).cause ? String((err as { cause: Error }).cause.message) : (err as Error).message}); set --router or ORION_ROUTER_URL`);
  }
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return res.json();
}
