/**
 * A small declarative flag table shared by every program: each option has a flag, an
 * `ORION_*` environment twin, a default and a parser. `resolveOptions` is pure: flag > env >
 * default, and every problem is reported at once.
 */
import { parseArgs } from 'node:util';
import { ConfigError } from '../lib/errors.js';
import { parseDuration } from '../lib/time.js';

export interface OptionSpec<T> {
  /** Flag name without dashes, e.g. `node-id`. */
  flag: string;
  /** Environment twin, e.g. `ORION_NODE_ID`. */
  env: string;
  description: string;
  /** Shown in --help; undefined means required or no default. */
  defaultText?: string;
  default?: T;
  required?: boolean;
  /** True for on/off flags that take no value (`--redis-tls`). */
  boolean?: boolean;
  /** Never shown in logs or help output defaults. */
  secret?: boolean;
  /** Given more than once, the values are joined with commas (`--node a --node b`). */
  repeatable?: boolean;
  parse(raw: string): T;
}

export type Flags = Record<string, string | true>;

/** What a program's options are resolved from: its flags, the words that were not flags, and the environment. */
export interface OptionInput {
  flags: Flags;
  /** Words that are not flags: refused (no program takes any), when given. */
  positional?: readonly string[];
  env: Record<string, string | undefined>;
}

const ON_OFF_WORD = /^(1|0|true|false|yes|no|on|off)$/i;

type ArgsOptions = Record<string, { type: 'string' | 'boolean'; short?: string }>;

/** The table as `util.parseArgs` options: a string per flag, a boolean for on/off flags, and --help/-h, --version. */
export function argsOptionsOf(table: OptionTable): ArgsOptions {
  const options: ArgsOptions = { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } };
  for (const spec of Object.values(table)) options[spec.flag] = { type: spec.boolean ? 'boolean' : 'string' };
  return options;
}

/** `--x`: a word that is a flag, never taken as the value of the flag before it. */
const isLongFlag = (word: string | undefined): boolean => word !== undefined && word.startsWith('--') && word.length > 2;

/**
 * Read `--flag v`, `--flag=v` and bare on/off flags with `util.parseArgs`, in its lenient mode so
 * that every problem is reported at once by `resolveOptions` (not only the first): a flag of the
 * table given without a value (last, or followed by another `--flag`) is `true` ("needs a
 * value"), an unknown flag takes the word after it unless that is a flag (so `--bogus 1` is one
 * unknown flag, not a flag and a stray word), and a repeated flag marked `repeatable` gathers its
 * values, comma-separated. Positional words are returned apart.
 */
export function parseArgv(argv: readonly string[], table: OptionTable): { flags: Flags; positional: string[] } {
  const options = argsOptionsOf(table);
  const repeatable = new Set(Object.values(table).filter((s) => s.repeatable).map((s) => s.flag));
  const flags: Flags = {};
  const positional: string[] = [];
  const set = (name: string, value: string | true): void => {
    const before = flags[name];
    flags[name] = repeatable.has(name) && typeof before === 'string' && value !== true ? `${before},${value}` : value;
  };
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });
  let swallowed = -1;
  for (const token of tokens) {
    if (token.index === swallowed || token.kind === 'option-terminator') continue;
    if (token.kind === 'positional') {
      positional.push(token.value);
      continue;
    }
    const type = options[token.name]?.type;
    if (type === 'string' && !token.inlineValue && isLongFlag(token.value)) {
      // `--redis-password --node-id x`: the password was left out; read on from `--node-id`.
      set(token.name, true);
      const rest = parseArgv(argv.slice(token.index + 1), table);
      for (const [name, value] of Object.entries(rest.flags)) set(name, value);
      positional.push(...rest.positional);
      break;
    }
    if (type === undefined && token.value === undefined) {
      const next = argv[token.index + 1];
      if (next !== undefined && !isLongFlag(next)) {
        swallowed = token.index + 1;
        set(token.name, next);
        continue;
      }
    }
    set(token.name, token.value ?? true);
  }
  return { flags, positional };
}

export const parsers = {
  string: (raw: string): string => raw,
  int(min: number, max: number = Number.MAX_SAFE_INTEGER) {
    return (raw: string): number => {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
        throw new Error(max === Number.MAX_SAFE_INTEGER ? `must be a whole number >= ${min}` : `must be a whole number from ${min} to ${max}`);
      }
      return n;
    };
  },
  number(min: number, max: number) {
    return (raw: string): number => {
      const n = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max) throw new Error(`must be a number from ${min} to ${max}`);
      return n;
    };
  },
  /** Milliseconds from `15s`, `500ms`, `2m` or bare seconds. */
  duration(minMs: number) {
    return (raw: string): number => {
      const ms = parseDuration(raw);
      if (ms === null || ms < minMs) throw new Error(`must be a duration like 15s, 500ms or 2m, at least ${minMs} ms`);
      return ms;
    };
  },
  bool(raw: string): boolean {
    const v = raw.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
    throw new Error('must be true or false');
  },
  url(raw: string): string {
    try {
      const u = new URL(raw);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    } catch {
      throw new Error('must be an http:// or https:// URL');
    }
    return raw.replace(/\/+$/, '');
  },
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a table of options of different value types
export type OptionTable = Record<string, OptionSpec<any>>;
export type Resolved<T extends OptionTable> = {
  [K in keyof T]: T[K] extends OptionSpec<infer V> ? (T[K]['required'] extends true ? V : T[K]['default'] extends V ? V : V | undefined) : never;
};

/**
 * @param check - problems that involve several options, run on what parsed (a value that
 *   failed to parse is undefined there), reported with the rest.
 */
export function resolveOptions<T extends OptionTable>(
  table: T,
  input: OptionInput,
  check?: (partial: Partial<Resolved<T>>) => string[],
): Resolved<T> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  const known = new Set(['help', 'h', 'version']);
  for (const [key, spec] of Object.entries(table)) {
    known.add(spec.flag);
    const fromFlag = input.flags[spec.flag];
    const fromEnv = input.env[spec.env];
    let raw: string | undefined;
    let where = '';
    if (fromFlag !== undefined) {
      raw = fromFlag === true ? (spec.boolean ? 'true' : undefined) : fromFlag;
      where = `--${spec.flag}`;
      if (raw === undefined) {
        problems.push(`--${spec.flag} needs a value`);
        continue;
      }
    } else if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      where = spec.env;
    }
    if (raw === undefined) {
      if (spec.required) problems.push(`--${spec.flag} (or ${spec.env}) is required: ${spec.description}`);
      else out[key] = spec.default;
      continue;
    }
    try {
      out[key] = spec.parse(raw);
    } catch (err) {
      const shown = spec.secret ? '' : ` '${raw}'`;
      problems.push(`${where}${shown}: ${(err as Error).message}`);
    }
  }
  for (const flag of Object.keys(input.flags)) {
    if (!known.has(flag)) problems.push(`unknown flag --${flag} (see --help)`);
  }
  for (const word of input.positional ?? []) {
    // `--redis-tls false` reads as --redis-tls and a stray "false": say how an on/off flag is turned off.
    const hint = ON_OFF_WORD.test(word) ? '; an on/off flag takes a value only as --flag=value' : '';
    problems.push(`unexpected argument '${word}' (see --help${hint})`);
  }
  if (check) problems.push(...check(out as Partial<Resolved<T>>));
  if (problems.length) throw new ConfigError(problems);
  return out as Resolved<T>;
}

export function helpText(program: string, summary: string, table: OptionTable): string {
  const rows = Object.values(table).map((s) => {
    const left = `  --${s.flag}${s.boolean ? '' : ' <value>'}`;
    const def = s.required ? ' (required)' : s.defaultText !== undefined ? ` (default ${s.defaultText})` : '';
    return `${left.padEnd(34)} ${s.description}${def}\n${''.padEnd(35)}env ${s.env}`;
  });
  return `${program}: ${summary}\n\nUsage: ${program} [flags]\n\n${rows.join('\n')}\n  --help                           show this text\n`;
}
