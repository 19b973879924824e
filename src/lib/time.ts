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
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
