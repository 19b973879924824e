/** Two small hand-written SVG charts: lines (metric against offered load) and grouped bars. */

const COLORS = ['#8c564b', '#7f7f7f', '#d62728', '#ff7f0e', '#9467bd', '#1f77b4', '#2ca02c'];
const W = 640;
const H = 360;
const M = { l: 60, r: 150, t: 30, b: 45 };

export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function header(title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="13">${esc(title)}</text>`,
  ];
}

/** Lines on a log y axis. */
export function lineChart(title: string, xLabel: string, yLabel: string, series: readonly Series[]): string {
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const ys = series.flatMap((s) => s.points.map((p) => p.y)).filter((y) => y > 0 && Number.isFinite(y));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const ly0 = Math.floor(Math.log10(Math.min(...ys, 1)));
  const ly1 = Math.ceil(Math.log10(Math.max(...ys, 10)));
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const sx = (x: number): number => M.l + ((x - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number): number => M.t + ph - ((Math.log10(Math.max(y, 10 ** ly0)) - ly0) / (ly1 - ly0 || 1)) * ph;
  const out = header(title);
  for (let e = ly0; e <= ly1; e++) {
    const y = sy(10 ** e);
    out.push(`<line x1="${M.l}" y1="${y}" x2="${M.l + pw}" y2="${y}" stroke="#ddd"/>`, `<text x="${M.l - 6}" y="${y + 4}" text-anchor="end">${10 ** e}</text>`);
  }
  for (const x of [...new Set(xs)]) out.push(`<text x="${sx(x)}" y="${M.t + ph + 16}" text-anchor="middle">${x}</text>`);
  out.push(`<text x="${M.l + pw / 2}" y="${H - 8}" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(`<text transform="translate(14 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length]!;
    const pts = s.points.filter((p) => Number.isFinite(p.y)).map((p) => `${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`);
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.join(' ')}"/>`);
    for (const p of pts) out.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3" fill="${c}"/>`);
    out.push(`<rect x="${W - M.r + 12}" y="${M.t + i * 18}" width="12" height="4" fill="${c}"/>`, `<text x="${W - M.r + 30}" y="${M.t + i * 18 + 6}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Grouped bars: one group per category, one bar per series, linear y from 0. */
export function barChart(title: string, yLabel: string, categories: readonly string[], series: readonly { name: string; values: number[] }[]): string {
  const max = Math.max(1, ...series.flatMap((s) => s.values.filter((v) => Number.isFinite(v))));
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const gw = pw / categories.length;
  const bw = (gw * 0.8) / series.length;
  const out = header(title);
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    const y = M.t + ph - (v / max) * ph;
    out.push(`<line x1="${M.l}" y1="${y}" x2="${M.l + pw}" y2="${y}" stroke="#ddd"/>`, `<text x="${M.l - 6}" y="${y + 4}" text-anchor="end">${v.toFixed(v >= 10 ? 0 : 1)}</text>`);
  }
  categories.forEach((c, j) => out.push(`<text x="${M.l + gw * j + gw / 2}" y="${M.t + ph + 16}" text-anchor="middle">${esc(c)}</text>`));
  out.push(`<text transform="translate(14 ${M.t + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    const col = COLORS[i % COLORS.length]!;
    s.values.forEach((v, j) => {
      if (!Number.isFinite(v)) return;
      const h = (v / max) * ph;
      out.push(`<rect x="${(M.l + gw * j + gw * 0.1 + bw * i).toFixed(1)}" y="${(M.t + ph - h).toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${col}"/>`);
    });
    out.push(`<rect x="${W - M.r + 12}" y="${M.t + i * 18}" width="12" height="8" fill="${col}"/>`, `<text x="${W - M.r + 30}" y="${M.t + i * 18 + 8}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
