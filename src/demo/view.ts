/** The demo's live view and summary: plain text, redrawn in place on a terminal. */
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

function pad(s: unknown, w: number): string {
  const t = s === null || s === undefined ? '-' : String(s);
  return t.length > w ? t.slice(0, w - 1) + '…' : t.padEnd(w);
}

export function nodeTable(rows: NodeRow[]): string[] {
  const out = [`  ${pad('NODE', 9)}${pad('ROUTING', 24)}${pad('TEMP °C', 9)}${pad('RAM %', 7)}${pad('JOBS', 6)}LOADED MODELS`];
  for (const r of rows) {
    const routing = r.eligible ? 'eligible' : `skipped: ${r.excluded_reason ?? '?'}`;
    out.push(`  ${pad(r.node_id, 9)}${pad(routing, 24)}${pad(r.temp_celsius, 9)}${pad(r.ram_percent, 7)}${pad(r.active ?? 0, 6)}${r.models.join(', ') || '-'}`);
  }
  return out;
}

export function screen(header: string[], rows: NodeRow[], t: Tally, events: string[], elapsedS: number, durationS: number): string {
  const lines = [
    ...header,
    '',
    ...nodeTable(rows),
    '',
    `  ${elapsedS.toFixed(0)}/${durationS} s   sent ${t.sent}   answered ${t.answered}   sticky ${t.sticky}   fallback ${t.fallback}   cold loads ${t.coldLoads}   errors ${Object.values(t.errors).reduce((a, b) => a + b, 0)}`,
    '',
    '  Recent decisions:',
    ...events.slice(-12).map((e) => `    ${e}`),
  ];
  return lines.join('\n');
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
  router_stats: unknown;
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
    router_stats: routerStats,
  };
}

export function summaryText(s: Summary): string {
  const onPi = (ms: number): string => `${ms} ms here, about ${((ms * s.speed) / 1000).toFixed(1)} s on real Pis`;
  return [
    'Summary',
    `  requests sent ${s.sent}, answered ${s.answered}, unanswered ${s.unanswered}`,
    `  sticky hits ${s.sticky_hits}, fallbacks ${s.fallbacks}, cold loads ${s.cold_loads}`,
    `  errors ${JSON.stringify(s.errors)}`,
    `  latency p50 ${onPi(s.p50_ms)}; p95 ${onPi(s.p95_ms)}`,
    `  bridge /stats ${JSON.stringify(s.router_stats)}`,
  ].join('\n');
}
