/**
 * Structured JSON logs on stdout, one object per line: `log.info({ node }, 'message')`.
 * A small pino-shaped logger; pm2 captures and rotates stdout.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const LEVELS: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50, silent: 100 };

export interface Logger {
  debug(fields: object, msg?: string): void;
  info(fields: object, msg?: string): void;
  warn(fields: object, msg?: string): void;
  error(fields: object, msg?: string): void;
  child(fields: object): Logger;
  readonly level: LogLevel;
}

export type LogSink = (line: string) => void;

const stdoutSink: LogSink = (line) => {
  process.stdout.write(line + '\n');
};

/** Turn an Error (and its cause chain) into plain data. */
export function serializeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const out: Record<string, unknown> = { type: err.name, message: err.message };
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) out['code'] = code;
  if (err.stack) out['stack'] = err.stack;
  if (err.cause !== undefined) out['cause'] = serializeError(err.cause);
  return out;
}

export function isLogLevel(v: string): v is LogLevel {
  return v in LEVELS;
}

export function createLogger(
  options: { level?: LogLevel; base?: object; sink?: LogSink } = {},
): Logger {
  const level = options.level ?? 'info';
  const threshold = LEVELS[level];
  const sink = options.sink ?? stdoutSink;
  const base = options.base ?? {};

  const write = (lvl: Exclude<LogLevel, 'silent'>, fields: object, msg?: string): void => {
    if (LEVELS[lvl] < threshold) return;
    const record: Record<string, unknown> = { level: lvl, time: new Date().toISOString(), ...base };
    for (const [k, v] of Object.entries(fields)) {
      record[k] = k === 'err' || v instanceof Error ? serializeError(v) : v;
    }
    if (msg !== undefined) record['msg'] = msg;
    sink(JSON.stringify(record));
  };

  return {
    level,
    debug: (f, m) => write('debug', f, m),
    info: (f, m) => write('info', f, m),
    warn: (f, m) => write('warn', f, m),
    error: (f, m) => write('error', f, m),
    child: (fields) => createLogger({ level, sink, base: { ...base, ...fields } }),
  };
}

/** A logger that writes nothing (tests, benchmarks). */
export const silentLogger: Logger = createLogger({ level: 'silent' });
