/**
 * The demo's live view and summary: text redrawn in place on a terminal, fitted to its size
 * (80x24 at least: the title and the URLs always stay on screen, lines are cut at a word with
 * `…`, never wrapped), in colour on a terminal unless NO_COLOR is set.
 */
import type { NodeHealth } from '../contracts/types.js';
import type { Outcome } from './brain.js';

export type NodeRow = NodeHealth & { eligible: boolean; excluded_reason?: string };

export interface Tally {
  sent: number;
  answered: number;
  sticky: number;
  fallback: number;
  coldLoads: number;
  errors: Record<string, number>;
  latenciesMs: number[];
}

export function newTally(): Tally {
  return { sent: 0, answered: 0, sticky: 0, fallback: 0, coldLoads: 0, errors: {}, latenciesMs: [] };
}

/** A load of more than a second (as on a Pi) means the model was not in memory. */
export const COLD_LOAD_MS = 1000;

export function record(t: Tally, o: Outcome): string {
  const f = o.final!;
  t.answered++;
  const ms = (o.doneAt ?? Date.now()) - o.sentAt;
  t.latenciesMs.push(ms);
  if (f.error) {
    t.errors[f.error.code] = (t.errors[f.error.code] ?? 0) + 1;
    return `${o.requestId} ${o.model} → ${f.error.code}: ${f.error.message}`;
  }
  if (f.routing === 'sticky') t.sticky++;
  else t.fallback++;
  const loading = (f.load_duration_ms ?? 0) > COLD_LOAD_MS;
  // A sticky request that still waited for a load joined one already under way (the bridge
  // sends the next requests for a model to the node that is loading it).
  const cold = loading && f.routing === 'fallback';
  if (cold) t.coldLoads++;
  const parts = [`${o.requestId} ${o.model} → ${f.node_id} ${f.routing}`, `${ms} ms`];
  if (cold) parts.push(`COLD LOAD ${(f.load_duration_ms! / 1000).toFixed(1)} s on a Pi`);
  else if (loading) parts.push(`joined the load under way (${(f.load_duration_ms! / 1000).toFixed(1)} s on a Pi)`);
  if ((f.attempt ?? 1) > 1) parts.push(`attempt ${f.attempt}`);
  return parts.join(', ');
}

export function percentile(xs: number[], p: number): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** ANSI styles, or none (NO_COLOR set, or output that is not a terminal). */
export interface Style {
  bold(s: string): string;
  good(s: string): string;
  warn(s: string): string;
  bad(s: string): string;
  dim(s: string): string;
}

const ansi = (code: number) => (s: string) => `\x1b[${code}m${s}\x1b[0m`;
const COLOR: Style = { bold: ansi(1), good: ansi(32), warn: ansi(33), bad: ansi(31), dim: ansi(2) };
export const PLAIN: Style = { bold: (s) => s, good: (s) => s, warn: (s) => s, bad: (s) => s, dim: (s) => s };

/** Colour when writing to a terminal and NO_COLOR is unset or empty (no-color.org). */
export function styleFor(isTTY: boolean, env: NodeJS.ProcessEnv = process.env): Style {
  return isTTY && !env['NO_COLOR'] ? COLOR : PLAIN;
}

/** A line cut to `width` columns at a word boundary, with `…` when something was cut. */
export function fit(line: string, width: number): string {
  if ([...line].length <= width) return line;
  const chars = [...line].slice(0, Math.max(1, width - 1));
  const cut = chars.join('');
  const space = cut.lastIndexOf(' ');
  return (space > width / 2 ? cut.slice(0, space) : cut).trimEnd() + '…';
}

/** Colour an event line by what it says (after fitting, so cutting never splits a colour code). */
function colourEvent(line: string, st: Style): string {
  if (/COLD LOAD|overheats|skipped/.test(line)) return st.warn(line);
  if (/ → [a-z_]+: |error/.test(line)) return st.bad(line);
  if (/eligible|cooled/.test(line)) return st.good(line);
  return line;
}

function pad(s: unknown, w: number): string {
  const t = s === null || s === undefined ? '-' : String(s);
  return t.length > w ? t.slice(0, w - 1) + '…' : t.padEnd(w);
}

/** The node table, each line at most `width` columns (the models column is cut first). */
export function nodeTable(rows: NodeRow[], width = 80, st: Style = PLAIN): string[] {
  const out = [st.bold(fit(`  ${pad('NODE', 9)}${pad('ROUTING', 22)}${pad('TEMP °C', 8)}${pad('RAM %', 6)}${pad('JOBS', 5)}LOADED MODELS`, width))];
  for (const r of rows) {
    const routing = r.eligible ? 'eligible' : `skipped: ${r.excluded_reason ?? '?'}`;
    const line = fit(`  ${pad(r.node_id, 9)}${pad(routing, 22)}${pad(r.temp_celsius, 8)}${pad(r.ram_percent, 6)}${pad(r.active ?? 0, 5)}${r.models.join(', ') || '-'}`, width);
    const at = line.indexOf(routing);
    out.push(at === -1 ? line : line.slice(0, at) + (r.eligible ? st.good(routing) : st.bad(routing)) + line.slice(at + routing.length));
  }
  return out;
}

export interface ScreenSize {
  columns: number;
  rows: number;
}

/**
 * One frame of the live view, at most `size.rows` lines of at most `size.columns` columns: the
 * header (title and URLs) first and always, then the nodes, the counts, and as many of the
 * latest decisions as fit.
 */
export function screen(header: string[], rows: NodeRow[], t: Tally, events: string[], elapsedS: number, durationS: number, size: ScreenSize = { columns: 80, rows: 24 }, st: Style = PLAIN): string {
  const w = Math.max(40, size.columns);
  const errors = Object.values(t.errors).reduce((a, b) => a + b, 0);
  const counts = `  ${elapsedS.toFixed(0)}/${durationS} s  sent ${t.sent}  answered ${t.answered}  sticky ${t.sticky}  fallback ${t.fallback}  cold ${t.coldLoads}  errors ${errors}`;
  const top = [
    ...header.map((h, i) => (i === 0 ? st.bold(fit(h, w)) : fit(h, w))),
    ...nodeTable(rows, w, st),
    fit(counts, w),
    st.dim('  Recent decisions:'),
  ];
  // Leave the last line free: a terminal scrolls when the cursor ends on a full last line.
  const room = Math.max(0, Math.max(12, size.rows) - 1 - top.length);
  const recent = room > 0 ? events.slice(-room).map((e) => colourEvent(fit(`    ${e}`, w), st)) : [];
  return [...top, ...recent].join('\n');
}

export interface Summary {
  sent: number;
  answered: number;
  unanswered: number;
  sticky_hits: number;
  fallbacks: number;
  cold_loads: number;
  errors: Record<string, number>;
  p50_ms: number;
  p95_ms: number;
  speed: number;
  /** This bridge's own counters from its /stats (requests it placed), or null when it did not answer. */
  bridge: BridgeCounts | null;
}

/** The counters of the demo's bridge since it started (the first keys of /stats). */
export interface BridgeCounts {
  total_routed: number;
  sticky_hits: number;
  fallbacks: number;
  errors: number;
}

/** This bridge's own counters out of a /stats answer (the cluster-wide keys are left out). */
export function bridgeCounts(stats: unknown): BridgeCounts | null {
  const s = stats as Partial<Record<keyof BridgeCounts, unknown>> | null;
  if (!s || typeof s !== 'object') return null;
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return { total_routed: num(s.total_routed), sticky_hits: num(s.sticky_hits), fallbacks: num(s.fallbacks), errors: num(s.errors) };
}

export function summarize(t: Tally, speed: number, routerStats: unknown): Summary {
  return {
    sent: t.sent,
    answered: t.answered,
    unanswered: t.sent - t.answered,
    sticky_hits: t.sticky,
    fallbacks: t.fallback,
    cold_loads: t.coldLoads,
    errors: t.errors,
    p50_ms: percentile(t.latenciesMs, 50),
    p95_ms: percentile(t.latenciesMs, 95),
    speed,
    bridge: bridgeCounts(routerStats),
  };
}

export function summaryText(s: Summary): string {
  const onPi = (ms: number): string => `${ms} ms here, about ${((ms * s.speed) / 1000).toFixed(1)} s on real Pis`;
  return [
    'Summary',
    `  requests sent ${s.sent}, answered ${s.answered}, unanswered ${s.unanswered}`,
    `  sticky hits ${s.sticky_hits}, fallbacks ${s.fallbacks}, cold loads ${s.cold_loads}`,
    `  errors ${JSON.stringify(s.errors)}`,
    `  latency p50 ${onPi(s.p50_ms)}`,
    `          p95 ${onPi(s.p95_ms)}`,
    s.bridge
      ? `  the bridge's /stats: ${s.bridge.total_routed} placed on a node (${s.bridge.sticky_hits} sticky + ${s.bridge.fallbacks} fallback), ${s.bridge.errors} refused`
      : "  the bridge's /stats: no answer",
    '  (above: the answers the Brain read, by how they were served at the end; the bridge counts',
    '  a request once, when it first places it, in flight or not)',
  ].join('\n');
}
