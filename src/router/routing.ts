/**
 * The routing decision, pure: no Redis, no clock of its own. SPEC.md section 6.
 *
 * Eligible: fresh (last_seen within stale-after and the TTL key present), available,
 * temp <= max-temp (null = no sensor, not a reason to exclude), ram <= max-ram.
 * 1. eligible nodes sorted by ram_percent ascending, ties by node id;
 * 2. sticky: the first with the model loaded;
 * 3. fallback: the first, preferring nodes with the model installed; when every eligible node
 *    reports installed_models and none has the model: model_not_found.
 */
import type { NodeHealth, Routing } from '../contracts/types.js';
import { normalizeModel } from '../contracts/index.js';

/** `drained`: an operator took the node out of rotation (`orion drain`, the set `{p}:drained`). */
export type ExcludedReason = 'stale' | 'drained' | 'temperature' | 'ram' | 'unavailable';

export interface Thresholds {
  maxTemp: number;
  maxRam: number;
  staleAfterMs: number;
  /** A node excluded for temperature comes back only below this (°C). @defaultValue maxTemp (no hysteresis) */
  readmitTemp?: number;
  /** A node excluded for RAM comes back only below this (%). @defaultValue maxRam (no hysteresis) */
  readmitRam?: number;
}

/**
 * Hysteresis memory of one node: excluded for temperature or RAM and not yet below the
 * readmit threshold. Kept by the registry from one snapshot to the next.
 */
export interface Held {
  temperature: boolean;
  ram: boolean;
}

/**
 * The hysteresis memory after this health report: set when the node is over the maximum,
 * cleared once it is below the readmit threshold (a node without a sensor is never held for
 * temperature), unchanged in between.
 */
export function nextHeld(h: NodeHealth, prev: Held | undefined, t: Thresholds): Held {
  const temp = h.temp_celsius;
  const hotNow = temp !== null && temp !== undefined && temp > t.maxTemp;
  const coolNow = temp === null || temp === undefined || (t.readmitTemp === undefined ? !hotNow : temp < t.readmitTemp);
  const fullNow = !(h.ram_percent <= t.maxRam);
  const freeNow = t.readmitRam === undefined ? !fullNow : h.ram_percent < t.readmitRam;
  return {
    temperature: hotNow || (!coolNow && (prev?.temperature ?? false)),
    ram: fullNow || (!freeNow && (prev?.ram ?? false)),
  };
}

/** A node as the bridge's in-memory snapshot holds it, with its model names normalised. */
export interface NodeView {
  health: NodeHealth;
  lastSeenMs: number;
  /** Whether `{p}:health:{nodeID}` (TTL) still exists. */
  ttlAlive: boolean;
  loaded: ReadonlySet<string>;
  /** Undefined when the node does not report installed_models. */
  installed: ReadonlySet<string> | undefined;
  eligible: boolean;
  excludedReason?: ExcludedReason;
  /**
   * True when excluded for temperature or RAM although under the maximum now: it was over,
   * and is not yet below the readmit threshold.
   */
  hysteresis?: boolean;
}

export function exclusionOf(
  h: NodeHealth,
  lastSeenMs: number,
  ttlAlive: boolean,
  now: number,
  t: Thresholds,
  held?: Held,
): ExcludedReason | undefined {
  if (!ttlAlive || !(now - lastSeenMs <= t.staleAfterMs)) return 'stale';
  if (!h.available) return 'unavailable';
  if ((h.temp_celsius !== null && h.temp_celsius !== undefined && h.temp_celsius > t.maxTemp) || held?.temperature) return 'temperature';
  if (!(h.ram_percent <= t.maxRam) || held?.ram) return 'ram';
  return undefined;
}

/** `held`: the node's hysteresis memory after this report (`nextHeld`); none = no hysteresis. */
export function toNodeView(h: NodeHealth, ttlAlive: boolean, now: number, t: Thresholds, held?: Held): NodeView {
  const parsed = Date.parse(h.last_seen);
  const lastSeenMs = Number.isFinite(parsed) ? parsed : 0;
  const reason = exclusionOf(h, lastSeenMs, ttlAlive, now, t, held);
  const view: NodeView = {
    health: h,
    lastSeenMs,
    ttlAlive,
    loaded: new Set((h.models ?? []).map(normalizeModel)),
    installed: Array.isArray(h.installed_models) ? new Set(h.installed_models.map(normalizeModel)) : undefined,
    eligible: reason === undefined,
  };
  if (reason !== undefined) view.excludedReason = reason;
  if (reason !== undefined && reason === exclusionOf(h, lastSeenMs, ttlAlive, now, t, undefined)) return view;
  if (reason === 'temperature' || reason === 'ram') view.hysteresis = true;
  return view;
}

/**
 * The view of a node an operator drained: not eligible, reason `drained`, unless it is stale
 * already (a dead node stays `stale`, so its running jobs are recovered as a dead node's).
 */
export function drainedView(view: NodeView): NodeView {
  if (view.excludedReason === 'stale') return view;
  return { ...view, eligible: false, excludedReason: 'drained' };
}

/** Routing order: ram_percent ascending, ties by node id. */
export function compareNodes(a: NodeView, b: NodeView): number {
  return a.health.ram_percent - b.health.ram_percent || (a.health.node_id < b.health.node_id ? -1 : a.health.node_id > b.health.node_id ? 1 : 0);
}

/** Eligible nodes in routing order; build once per snapshot, not per request. */
export function eligibleInOrder(nodes: Iterable<NodeView>): NodeView[] {
  const out: NodeView[] = [];
  for (const n of nodes) if (n.eligible) out.push(n);
  return out.sort(compareNodes);
}

export type Decision =
  | { kind: 'routed'; node: NodeView; routing: Routing }
  | { kind: 'model_not_found' }
  | { kind: 'no_healthy_node' };

/**
 * Pick a node for `model` among `ordered` (eligible, in routing order). `avoid` names nodes
 * to pass over when another choice exists (where the request already failed).
 */
export function pickNode(model: string, ordered: readonly NodeView[], avoid?: ReadonlySet<string>): Decision {
  if (ordered.length === 0) return { kind: 'no_healthy_node' };
  const want = normalizeModel(model);
  const avoided = (n: NodeView): boolean => avoid !== undefined && avoid.has(n.health.node_id);
  // Sticky: the model is loaded.
  let stickyAvoided: NodeView | undefined;
  for (const n of ordered) {
    if (n.loaded.has(want)) {
      if (!avoided(n)) return { kind: 'routed', node: n, routing: 'sticky' };
      stickyAvoided ??= n;
    }
  }
  // Fallback: least-loaded, preferring nodes with the model installed.
  let allReport = true;
  let firstInstalled: NodeView | undefined;
  let firstUnknown: NodeView | undefined;
  let firstInstalledAvoided: NodeView | undefined;
  let firstUnknownAvoided: NodeView | undefined;
  for (const n of ordered) {
    if (n.installed === undefined) {
      allReport = false;
      if (avoided(n)) firstUnknownAvoided ??= n;
      else firstUnknown ??= n;
    } else if (n.installed.has(want)) {
      if (avoided(n)) firstInstalledAvoided ??= n;
      else firstInstalled ??= n;
    }
  }
  const pick = firstInstalled ?? firstUnknown;
  if (pick) return { kind: 'routed', node: pick, routing: 'fallback' };
  if (stickyAvoided) return { kind: 'routed', node: stickyAvoided, routing: 'sticky' };
  const again = firstInstalledAvoided ?? firstUnknownAvoided;
  if (again) return { kind: 'routed', node: again, routing: 'fallback' };
  if (allReport) return { kind: 'model_not_found' };
  return { kind: 'no_healthy_node' };
}
