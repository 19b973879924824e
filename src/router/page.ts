/**
 * The live cluster page the bridge serves at `/`: plain HTML, CSS and JS from `./page/` beside
 * this module (copied next to the built module by `npm run build`), read once, nothing fetched
 * from elsewhere. The page reads `GET /cluster` every two seconds and follows `GET /events`
 * (server-sent routing decisions, src/router/decisions.ts).
 */
import { readFileSync } from 'node:fs';
import type { HandlerResult } from '../lib/http.js';
import { VERSION } from '../lib/version.js';
import { BOARD_PATH } from './board.js';
import type { QueueDepth } from './metrics.js';
import type { Snapshot } from './registry.js';
import type { Thresholds } from './routing.js';
import type { TimelineView } from './timeline.js';

const ASSETS = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/page.css': { file: 'page.css', type: 'text/css; charset=utf-8' },
  '/page.js': { file: 'page.js', type: 'text/javascript; charset=utf-8' },
} as const;

export type AssetPath = keyof typeof ASSETS;
export const ASSET_PATHS = Object.keys(ASSETS) as AssetPath[];

const cache = new Map<AssetPath, string>();

/** One of the page's files. */
export function assetHandler(path: AssetPath): HandlerResult {
  const a = ASSETS[path];
  let text = cache.get(path);
  if (text === undefined) {
    text = readFileSync(new URL(`./page/${a.file}`, import.meta.url), 'utf8');
    cache.set(path, text);
  }
  return { status: 200, body: text, contentType: a.type };
}

export interface ClusterContext {
  consumer: string;
  thresholds: Thresholds;
  snapshot(): Snapshot;
  depths(): Promise<ReadonlyMap<string, QueueDepth>>;
  timeline(): TimelineView;
  /** Requests held for lack of a node. */
  held(): number;
  /** Whether Bull Board takes write actions. */
  boardWritable: boolean;
}

/** Numbers the page shows of a node, with what its queue holds. */
export interface NodeRow {
  node_id: string;
  eligible: boolean;
  excluded_reason?: string;
  reason?: string;
  temp_celsius: number | null;
  ram_percent: number;
  cpu_percent: number;
  ram_total_mb?: number;
  models: string[];
  installed_models?: string[];
  concurrency?: number;
  /** Jobs in its queue not started yet (waiting, prioritized, delayed). */
  waiting: number | null;
  /** Jobs running there. */
  running: number | null;
  failed: number | null;
  last_seen_s: number;
}

function nodeRows(s: Snapshot, depths: ReadonlyMap<string, QueueDepth>): NodeRow[] {
  const order = [...s.eligible.map((v) => v.health.node_id), ...[...s.views.keys()].filter((id) => !s.views.get(id)!.eligible).sort()];
  return order.map((id) => {
    const v = s.views.get(id)!;
    const h = v.health;
    const d = depths.get(id);
    const row: NodeRow = {
      node_id: id,
      eligible: v.eligible,
      temp_celsius: h.temp_celsius,
      ram_percent: h.ram_percent,
      cpu_percent: h.cpu_percent,
      models: h.models,
      waiting: d ? d.waiting + d.delayed : (h.waiting ?? null),
      running: d ? d.active : (h.active ?? null),
      failed: d ? d.failed : null,
      last_seen_s: Math.max(0, Math.round((s.at - v.lastSeenMs) / 1000)),
    };
    if (v.excludedReason !== undefined) row.excluded_reason = v.excludedReason;
    if (h.reason !== undefined) row.reason = h.reason;
    if (h.ram_total_mb !== undefined) row.ram_total_mb = h.ram_total_mb;
    if (h.installed_models !== undefined) row.installed_models = h.installed_models;
    if (h.concurrency !== undefined) row.concurrency = h.concurrency;
    return row;
  });
}

/** `GET /cluster`: everything the page shows but the decisions, in one answer. */
export async function clusterHandler(ctx: ClusterContext): Promise<HandlerResult> {
  const s = ctx.snapshot();
  const depths = await ctx.depths();
  const body = {
    at: Date.now(),
    version: VERSION,
    bridge: ctx.consumer,
    thresholds: { max_temp: ctx.thresholds.maxTemp, max_ram: ctx.thresholds.maxRam, stale_after_ms: ctx.thresholds.staleAfterMs },
    board: { path: BOARD_PATH, writable: ctx.boardWritable },
    held: ctx.held(),
    nodes: nodeRows(s, depths),
    timeline: ctx.timeline(),
  };
  return { status: 200, body };
}
