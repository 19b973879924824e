/** Text output of the CLI: tables whose columns never run into each other, durations, bars. */

export interface Column<T> {
  title: string;
  value(row: T): string;
  /** Numbers are right-aligned. */
  right?: boolean;
}

/**
 * A table as lines: every column as wide as its widest cell, two spaces between columns, the
 * last column not padded (so long lists of models never push anything out of place).
 */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string[] {
  const cells = rows.map((r) => columns.map((c) => c.value(r)));
  const widths = columns.map((c, i) => Math.max(c.title.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]): string =>
    values
      .map((v, i) => {
        if (i === values.length - 1 && !columns[i]!.right) return v;
        return columns[i]!.right ? v.padStart(widths[i]!) : v.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.title)), ...cells.map(line)];
}

/** `850 ms`, `12.3 s`, `4 min 05 s`. */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

export function num(v: number | null | undefined, digits = 0): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);
}

/** `[#########...........]` for a fraction from 0 to 1. */
export function bar(fraction: number, width = 24): string {
  const f = Math.max(0, Math.min(1, fraction));
  const full = Math.round(f * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}
