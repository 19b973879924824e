/** Means with 95 % confidence intervals over seeds (Student's t). */

const T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131];

export interface Ci {
  mean: number;
  half: number;
  n: number;
}

export function ci(xs: readonly number[]): Ci {
  const v = xs.filter((x) => Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { mean: Number.NaN, half: Number.NaN, n };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, half: 0, n };
  const sd = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  return { mean, half: ((T95[n - 2] ?? 1.96) * sd) / Math.sqrt(n), n };
}

/** "12.3 ± 0.4" with sensible digits. */
export function fmt(c: Ci, digits?: number): string {
  if (!Number.isFinite(c.mean)) return 'n/a';
  const d = digits ?? (Math.abs(c.mean) >= 100 ? 0 : Math.abs(c.mean) >= 10 ? 1 : 2);
  return c.n > 1 ? `${c.mean.toFixed(d)} ± ${c.half.toFixed(d)}` : c.mean.toFixed(d);
}
