/** RFC 3339 UTC, second precision as the guide shows it (`2026-01-19T12:00:00Z`). */
export function rfc3339(ms: number = Date.now()): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Milliseconds since epoch encoded in a Redis stream entry id (`1700000000000-0`). */
export function streamIdMs(entryId: string): number {
  const dash = entryId.indexOf('-');
  const ms = Number(dash === -1 ? entryId : entryId.slice(0, dash));
  return Number.isFinite(ms) ? ms : Date.now();
}

/**
 * When a request arrived (SPEC.md section 7): its stream entry id's time, or `readAt` (the
 * moment the bridge read it, on the clock the caller judges deadlines by) when that is earlier.
 * An entry added with an explicit id in the future is not believed, and neither are the `*`
 * entries after it, to which Redis gives ids just above it.
 */
export function arrivalMs(entryId: string, readAt: number): number {
  return Math.min(streamIdMs(entryId), readAt);
}

/** The longest delay setTimeout honours; beyond it Node fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer that may be cleared. */
export interface LongTimer {
  clear(): void;
}

/**
 * setTimeout for any delay: a delay over MAX_TIMER_MS (about 24.8 days) is waited in steps
 * rather than clamped to 1 ms. A negative or NaN delay fires at once, like setTimeout.
 */
export function setLongTimeout(fn: () => void, ms: number, unref = false): LongTimer {
  let t: NodeJS.Timeout | undefined;
  const until = Date.now() + (Number.isFinite(ms) ? Math.max(0, ms) : 0);
  const arm = (): void => {
    const left = until - Date.now();
    t = left > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(fn, Math.max(0, left));
    if (unref) t.unref();
  };
  arm();
  return { clear: () => clearTimeout(t) };
}

/** Parse `15s`, `500ms`, `2m`, `1h`, or a bare number of seconds; null when malformed. */
export function parseDuration(v: string | number): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v * 1000 : null;
  const m = /^(-?\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) return null;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000;
  return n * factor;
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setLongTimeout(done, ms);
    function done(): void {
      t.clear();
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** What `withTimeout` rejects with. */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/**
 * `p`, or a TimeoutError once it has taken longer than `ms`: for a step that must not hang its
 * caller, where running late is a failure. The command itself may still complete later.
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new TimeoutError(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/**
 * `p`'s value, or undefined once `ms` have passed or `giveUp` is aborted first (already aborted:
 * at once): for a step whose result is welcome but whose absence is not a failure. Never
 * rejects on time; a rejection of `p` itself passes through.
 */
export function waitUpTo<T>(p: Promise<T>, ms: number, giveUp?: AbortSignal): Promise<T | undefined> {
  let t: NodeJS.Timeout | undefined;
  let stop: (() => void) | undefined;
  const late = new Promise<undefined>((resolve) => {
    stop = () => resolve(undefined);
    if (giveUp?.aborted) return stop();
    t = setTimeout(stop, ms);
    giveUp?.addEventListener('abort', stop, { once: true });
  });
  return Promise.race([p, late]).finally(() => {
    clearTimeout(t);
    if (stop) giveUp?.removeEventListener('abort', stop);
  });
}
