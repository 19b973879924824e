/** Small helpers shared by the benchmark rows: statistics, timing, table printing. */

export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo]! + (s[hi]! - s[lo]!) * (rank - lo);
}

export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export interface RowResult {
  row: string;
  measure: string;
  /** What was measured, in words with units, e.g. "31,200 req/s vs 40,100 jobs/s". */
  detail: string;
  /** The ratio (or value) compared with the goal. */
  value: number;
  goal: string;
  met: boolean;
  /** Figures of every run, for --json. */
  runs?: unknown;
}

export function fmtNum(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function printTable(rows: RowResult[]): string {
  const head = ['row', 'measure', 'value', 'goal', 'met', 'detail'];
  const lines = rows.map((r) => [r.row, r.measure, fmtNum(r.value, 3), r.goal, r.met ? 'yes' : 'NO', r.detail]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => '| ' + cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |';
  return [fmt(head), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...lines.map(fmt)].join('\n');
}

/** Run `fn` `runs` times and keep the run whose `key` is the median. */
export async function medianOf<T>(runs: number, fn: (i: number) => Promise<T>, key: (t: T) => number): Promise<{ median: T; all: T[] }> {
  const all: T[] = [];
  for (let i = 0; i < runs; i++) all.push(await fn(i));
  const sorted = [...all].sort((a, b) => key(a) - key(b));
  return { median: sorted[Math.floor((sorted.length - 1) / 2)]!, all };
}
