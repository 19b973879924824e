/**
 * What the gateway knows of the cluster, from the health registry the bridge routes from (the
 * same Registry class, read-only: it never drops nodes): which models exist, where they are
 * installed and loaded, and whether a request for a model can be placed now. The gateway routes
 * nothing itself; it only refuses at once what the bridge would refuse or hold (SPEC.md section 9).
 */
import type { Redis } from 'ioredis';
import { normalizeModel } from '../contracts/index.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import { choose, Registry, type Snapshot } from '../router/registry.js';
import type { NodeView, Thresholds } from '../router/routing.js';

/** The guide's eligibility thresholds (the bridge's defaults). */
export const DEFAULT_THRESHOLDS: Thresholds = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };

export type Availability = { kind: 'ok' } | { kind: 'unknown' } | { kind: 'unavailable'; reason: string };

export interface ModelEntry {
  /** Normalised name (`gemma3:1b`, `llama3:latest`). */
  name: string;
  /** Nodes that have it installed or loaded. */
  nodes: string[];
  /** Nodes where it is loaded now. */
  loadedOn: string[];
  /** Latest `last_seen` of those nodes (ms). */
  seenMs: number;
}

export interface LoadedModel {
  name: string;
  node: string;
  seenMs: number;
}

export class Catalog {
  private readonly registry: Registry;

  constructor(o: { redis: Redis; n: Names; log: Logger; thresholds?: Thresholds; refreshMs?: number }) {
    this.registry = new Registry({
      redis: o.redis,
      n: o.n,
      log: o.log,
      thresholds: o.thresholds ?? DEFAULT_THRESHOLDS,
      refreshMs: o.refreshMs ?? 1000,
      // The gateway only reads the registry; dropping silent nodes is the bridge's job.
      dropAfterMs: Number.MAX_SAFE_INTEGER,
    });
  }

  start(): void {
    this.registry.start();
  }

  stop(): Promise<void> {
    return this.registry.stop();
  }

  /** The latest snapshot, read now if none has been taken yet. */
  async snapshot(): Promise<Snapshot> {
    const s = this.registry.current();
    return s.at > 0 ? s : this.registry.refresh();
  }

  /** Whether a request for `model` can be placed now, is unknown everywhere, or must wait. */
  async availability(model: string): Promise<Availability> {
    const s = await this.snapshot();
    const c = choose(s, model);
    if (c.kind === 'routed') return { kind: 'ok' };
    if (c.kind === 'model_not_found') return { kind: 'unknown' };
    const want = normalizeModel(model);
    const views = [...s.views.values()];
    const everyReports = views.length > 0 && views.every((v) => v.installed !== undefined);
    if (everyReports && !s.modelsAnywhere.has(want)) return { kind: 'unknown' };
    if (s.eligible.length === 0) return { kind: 'unavailable', reason: views.length === 0 ? 'no node has reported health' : 'no node is eligible now' };
    return { kind: 'unavailable', reason: `no eligible node has model '${model}'` };
  }

  /** Models on the nodes (eligible ones only when `eligibleOnly`), sorted by name. */
  async models(eligibleOnly: boolean): Promise<ModelEntry[]> {
    const s = await this.snapshot();
    const out = new Map<string, ModelEntry>();
    const nodes = eligibleOnly ? s.eligible : [...s.views.values()].filter((v) => v.excludedReason !== 'stale');
    for (const v of nodes) {
      const id = v.health.node_id;
      for (const name of new Set([...(v.installed ?? []), ...v.loaded])) {
        const e = out.get(name) ?? { name, nodes: [], loadedOn: [], seenMs: 0 };
        e.nodes.push(id);
        if (v.loaded.has(name)) e.loadedOn.push(id);
        e.seenMs = Math.max(e.seenMs, v.lastSeenMs);
        out.set(name, e);
      }
    }
    return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** One model by name (normalised), when some node has it. */
  async model(name: string, eligibleOnly: boolean): Promise<ModelEntry | undefined> {
    const want = normalizeModel(name);
    return (await this.models(eligibleOnly)).find((m) => m.name === want);
  }

  /** Every model loaded on a fresh node, with its node (as the nodes report it: `/api/ps`). */
  async loaded(): Promise<LoadedModel[]> {
    const s = await this.snapshot();
    const out: LoadedModel[] = [];
    for (const v of s.views.values()) {
      if (v.excludedReason === 'stale') continue;
      for (const name of v.health.models) out.push({ name: normalizeModel(name), node: v.health.node_id, seenMs: v.lastSeenMs });
    }
    return out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : a.name < b.name ? -1 : 1));
  }

  /** The lowest Ollama version the fresh nodes report, when any does. */
  async ollamaVersion(): Promise<string | undefined> {
    const s = await this.snapshot();
    const versions = [...s.views.values()]
      .filter((v: NodeView) => v.excludedReason !== 'stale')
      .map((v) => v.health.ollama_version)
      .filter((x): x is string => typeof x === 'string' && x !== '');
    return versions.sort(compareVersions)[0];
  }
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  const pb = b.split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
