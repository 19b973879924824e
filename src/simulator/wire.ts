/**
 * Small pure helpers for Ollama's wire conventions: model names, keep_alive durations, error
 * texts, and byte sizes in Ollama's human form.
 */

/**
 * Ollama's name rule: a name without a tag means `:latest`, and the library path of a registry
 * (`<host>/library/`, or `library/` alone) is implied, so it is dropped.
 */
export function normalizeModelName(raw: string): string {
  let name = raw.trim().replace(/^([^/]+\.[^/]+\/)?library\//i, '');
  const lastSlash = name.lastIndexOf('/');
  const tail = name.slice(lastSlash + 1);
  if (tail !== '' && !tail.includes(':')) name += ':latest';
  return name;
}

/** What Ollama compares names by: the normalized name, case-insensitively. */
export function modelKey(name: string): string {
  return normalizeModelName(name).toLowerCase();
}

/** Returned when a keep_alive value cannot be read; `message` is Go's wording. */
export class DurationError extends Error {}

const GO_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Go's time.ParseDuration (`300ms`, `1.5h`, `2h45m`, `-1m`), in milliseconds. A bare number
 * string (`"-1"`, `"300"`) is taken as seconds: Ollama itself refuses that form, but clients send
 * it and nothing is lost by reading it the obvious way.
 */
function parseGoDuration(text: string): number {
  const s = text.trim();
  if (/^[-+]?\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const m = /^([-+]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/.exec(s);
  if (!m) throw new DurationError(`time: invalid duration "${text}"`);
  const sign = s.startsWith('-') ? -1 : 1;
  let total = 0;
  for (const part of s.replace(/^[-+]/, '').matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * GO_UNITS[part[2]!]!;
  }
  return sign * total;
}

/**
 * A request's keep_alive in simulated milliseconds, as Ollama reads it: a number is whole
 * seconds, a string is a Go duration, anything negative means forever (returned as -1).
 * undefined/null means "not given".
 */
export function parseKeepAlive(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  let ms: number;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new DurationError(`Unsupported keep_alive value: ${v}`);
    ms = v < 0 ? -1 : Math.trunc(v) * 1000;
  } else if (typeof v === 'string') {
    ms = parseGoDuration(v);
  } else {
    throw new DurationError(`Unsupported type: '${Array.isArray(v) ? '[]interface {}' : typeof v}'`);
  }
  return ms < 0 ? -1 : ms;
}

/** Ollama's format.HumanBytes2: binary units with one decimal, e.g. `5.4 GiB`. */
function humanBytes2(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Error texts exactly as Ollama words them. */
export const OLLAMA_ERRORS = {
  busy: 'server busy, please try again.  maximum pending requests exceeded',
  modelRequired: 'model is required',
  missingBody: 'missing request body',
  notFound: (model: string): string => `model '${model}' not found`,
  notFoundTryPulling: (model: string): string => `model "${model}" not found, try pulling it first`,
  pullUnknown: 'pull model manifest: file does not exist',
  tooLarge: (need: number, available: number): string =>
    `model requires more system memory (${humanBytes2(need)}) than is available (${humanBytes2(available)})`,
} as const;
