/**
 * What the simulated bridge sees: each node's health as of its last heartbeat (every 5 s, the
 * nodes' phases spread over the 5 s), rebuilt into a routing snapshot about every second as the
 * real registry does (eligible nodes in the guide's order and a RoutingIndex), plus its own
 * placements at once: jobs waiting and running per node, and models it sent a node to load.
 * Exclusion has SPEC 6's hysteresis, decided by the bridge's own `nextHeld` and `exclusionOf`
 * (src/router/routing.ts): out above 75 °C / 90 % RAM, back below 70 °C / 85 %.
 */
import type { NodeHealth } from '../contracts/types.js';
import { RoutingIndex } from '../router/routing-index.js';
import { compareNodes, exclusionOf, nextHeld, type Held, type NodeView, type Thresholds } from '../router/routing.js';
import { expire, ramPercent, spec, type SimNode } from './cluster.js';

export const HEARTBEAT_MS = 5_000;
export const REFRESH_MS = 1_000;
export const MAX_TEMP = 75;
export const READMIT_TEMP = 70;
export const MAX_RAM = 90;
export const READMIT_RAM = 85;
/** SPEC 6's limits, as the bridge's defaults. */
export const THRESHOLDS: Thresholds = { maxTemp: MAX_TEMP, maxRam: MAX_RAM, staleAfterMs: 15_000, readmitTemp: READMIT_TEMP, readmitRam: READMIT_RAM };
/** How long the bridge counts a model it sent a node to load as loaded there (registry.ts). */
export const LOADING_TTL_MS = 60_000;

export class BridgeView {
  readonly views: NodeView[] = [];
  ordered: NodeView[] = [];
  index = new RoutingIndex([]);
  private readonly anticipated: Map<string, number>[];
  private readonly installed: ReadonlySet<string>[];
  /** Each node's `installed_sizes_mb`, as a worker reads it from `/api/tags` (MB of 10^6 bytes). */
  private readonly sizes: Record<string, number>[];
  /** Each node's hysteresis memory, as the registry keeps it between snapshots. */
  private readonly held: (Held | undefined)[] = [];
  private dirty = true;
  /** Every node's index, in routing order as of the last snapshot (eligible or not). */
  private readonly order: number[];

  constructor(
    private readonly nodes: readonly SimNode[],
    private readonly heat: boolean,
    /** Called at every heartbeat: copies may have expired, eligibility may have changed. */
    private readonly onHeartbeat: (n: SimNode, now: number) => void,
    /** Every node reports at every refresh (an ablation: a view at most 1 s old). */
    private readonly everyRefresh = false,
  ) {
    this.anticipated = nodes.map(() => new Map());
    this.order = nodes.map((_, i) => i);
    this.installed = nodes.map((n) => new Set(n.installed));
    this.sizes = nodes.map((n) => Object.fromEntries(n.installed.map((m) => [m, Math.max(1, Math.round(spec(m).diskBytes / 1e6))])));
    for (const n of nodes) this.heartbeat(n, 0);
    this.rebuild();
  }

  /** Node `n` publishes its health now; returns its new view. */
  heartbeat(n: SimNode, now: number): NodeView {
    if (this.heat) n.thermal.step(n.running > 0 ? 1 : 0, now);
    expire(n, now);
    const ramPct = Math.round(ramPercent(n) * 10) / 10;
    const tempC = this.heat ? Math.round(n.thermal.temperature * 10) / 10 : null;
    // Exclusion and its hysteresis by the bridge's own code, on the figures a health report carries.
    const probe = { temp_celsius: tempC, ram_percent: ramPct, available: true } as NodeHealth;
    const held = nextHeld(probe, this.held[n.index], THRESHOLDS);
    this.held[n.index] = held;
    const reason = exclusionOf(probe, now, true, now, THRESHOLDS, held);
    n.hot = reason === 'temperature';
    n.full = reason === 'ram';
    const pending = this.anticipated[n.index]!;
    for (const [m, until] of pending) {
      const c = n.copies.get(m);
      if (until <= now || (c !== undefined && c.readyAt <= now)) pending.delete(m);
    }
    const eligible = reason === undefined;
    const old = this.views[n.index];
    this.onHeartbeat(n, now);
    // Routing reads eligibility, RAM order and models: when none changed, keep the view (and
    // spare the snapshot a rebuild), only refreshing the figures /nodes would show.
    if (old !== undefined && old.eligible === eligible && old.health.ram_percent === ramPct && this.sameModels(n, old.loaded, now)) {
      old.health.temp_celsius = tempC;
      old.health.cpu_percent = n.running > 0 ? 100 : 0;
      old.lastSeenMs = now;
      return old;
    }
    const models: string[] = [];
    for (const [m, c] of n.copies) if (c.readyAt <= now) models.push(m);
    const health: NodeHealth = {
      node_id: n.id,
      cpu_percent: n.running > 0 ? 100 : 0,
      ram_percent: ramPct,
      temp_celsius: tempC,
      models,
      available: true,
      last_seen: '',
      installed_models: n.installed,
      concurrency: n.slots,
      installed_sizes_mb: this.sizes[n.index]!,
    };
    const loaded = new Set(models);
    for (const m of pending.keys()) loaded.add(m);
    const view: NodeView = { health, lastSeenMs: now, ttlAlive: true, loaded, installed: this.installed[n.index]!, eligible };
    if (reason !== undefined) view.excludedReason = reason;
    this.views[n.index] = view;
    this.dirty = true;
    return view;
  }

  /** Whether the ready copies plus anticipated loads of `n` are exactly `loaded`. */
  private sameModels(n: SimNode, loaded: ReadonlySet<string>, now: number): boolean {
    const pending = this.anticipated[n.index]!;
    let count = pending.size;
    for (const m of pending.keys()) if (!loaded.has(m)) return false;
    for (const [m, c] of n.copies) {
      if (c.readyAt > now || pending.has(m)) continue;
      if (!loaded.has(m)) return false;
      count++;
    }
    return count === loaded.size;
  }

  /** The nodes whose turn it is heartbeat at this refresh tick, then the snapshot is rebuilt. */
  tick(now: number): void {
    const every = this.everyRefresh ? 1 : HEARTBEAT_MS / REFRESH_MS;
    const phase = Math.round(now / REFRESH_MS) % every;
    for (let i = phase; i < this.nodes.length; i += every) this.heartbeat(this.nodes[i]!, now);
    this.rebuild();
  }

  /**
   * `eligibleInOrder(this.views)`, sorted from the last snapshot's order: between two snapshots
   * a few nodes move, so the sort meets an almost sorted list and compares each node about once
   * instead of log n times (the routing order is a total order: the answer is the same).
   */
  private rebuild(): void {
    if (!this.dirty) return;
    const views = this.views;
    this.order.sort((a, b) => compareNodes(views[a]!, views[b]!));
    const ordered: NodeView[] = [];
    for (const i of this.order) if (views[i]!.eligible) ordered.push(views[i]!);
    this.ordered = ordered;
    this.index = new RoutingIndex(ordered);
    this.dirty = false;
  }

  /**
   * The job that made the bridge expect `model` on `n` moved away before the load began: stop
   * counting it there (the snapshot is rebuilt, as the registry would on its next refresh).
   */
  forgetLoading(n: SimNode, model: string): void {
    if (!this.anticipated[n.index]!.delete(model)) return;
    const view = this.views[n.index]!;
    if (!view.health.models.includes(model)) {
      // The view's set is its own (built at its heartbeat): changed in place, and the index with
      // it, the same snapshot a rebuild would give without sorting every node again.
      (view.loaded as Set<string>).delete(model);
      if (view.eligible) this.index.unmarkLoaded(view, model);
    }
  }

  /** The bridge placed a job for `model` on `n` as a fallback: count it loading there (registry.noteLoading). */
  noteLoading(n: SimNode, model: string, now: number): void {
    this.anticipated[n.index]!.set(model, now + LOADING_TTL_MS);
    const view = this.views[n.index]!;
    if (view.loaded.has(model)) return;
    (view.loaded as Set<string>).add(model);
    if (view.eligible) this.index.markLoaded(view, model);
  }
}
