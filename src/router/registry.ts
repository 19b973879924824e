/**
 * The in-memory snapshot of the health registry the bridge routes from (SPEC.md section 6).
 * Refreshed in the background about every second with two round trips, whatever the number of
 * nodes: one script call for the health documents written since the last refresh (their
 * versions in `{p}:health-versions`, `src/lib/health-registry.ts`) with SMEMBERS `{p}:nodes`
 * and `{p}:drained`, then one script call telling which TTL keys exist. Only documents that
 * changed are read and parsed: with a thousand nodes heartbeating every 5 s, about two hundred
 * a second instead of a thousand. The whole hash is read at the first refresh, when its number
 * of fields differs from what this bridge holds (a field added or deleted without a version:
 * `orion forget`, an operator's HSET or HDEL, junk), when the versions went back (Redis
 * restarted from an older state), and every `fullReadMs` (a field overwritten without a
 * version); even then a document identical to the one held is not parsed again. Routing
 * decisions read only the snapshot, never Redis. A node in `{p}:drained` (set by `orion drain`)
 * is shown with the exclusion reason `drained` and gets no new work.
 *
 * Anticipated loads: when a request for model M goes to node X as a fallback, X is about to
 * load M. For a short while (`loadingTtlMs`) the snapshot counts M as loaded on X, so the next
 * requests for M stick to X instead of causing cold loads on other nodes before X's next
 * health report shows M. Such placements are counted as sticky hits (and as `anticipated`).
 */
import type { Redis, Result } from 'ioredis';
import { normalizeModel } from '../contracts/index.js';
import type { NodeHealth, Routing } from '../contracts/types.js';
import type { Logger } from '../lib/logger.js';
import { healthAll, healthSince, versionBelow } from '../lib/health-registry.js';
import { isValidNodeId, type Names } from '../lib/names.js';
import { Periodic } from '../lib/periodic.js';
import { InstanceTracker, JunkWarnings } from './registry-watch.js';
import { RoutingIndex } from './routing-index.js';
import { drainedView, eligibleInOrder, nextHeld, toNodeView, type Held, type NodeView, type Thresholds } from './routing.js';

export interface Snapshot {
  /** When it was taken (ms since epoch); 0 before the first refresh. */
  readonly at: number;
  /** Every node in the health hash that parsed, by id. */
  readonly views: ReadonlyMap<string, NodeView>;
  /** The health documents exactly as published, by id (for `/nodes`). */
  readonly published: ReadonlyMap<string, Record<string, unknown>>;
  /** Eligible nodes in routing order. */
  readonly eligible: readonly NodeView[];
  /** The routing decision over `eligible`, built once per snapshot. */
  readonly index: RoutingIndex;
  /** Every node id known (health hash and `{p}:nodes`). */
  readonly known: readonly string[];
  /** Known nodes whose TTL key is gone. */
  readonly dead: readonly string[];
  /** Models (normalised) installed or loaded on any node of the registry, eligible or not. */
  readonly modelsAnywhere: ReadonlySet<string>;
  /**
   * Nodes whose health comes from more than one worker process lately (two started with the
   * same --node-id): node id -> every instance id seen, as the workers report it and as this
   * bridge saw the document flip between them.
   */
  readonly duplicates: ReadonlyMap<string, readonly string[]>;
}

/** What the refreshes have read so far (for tests and the curious). */
export interface RegistryReads {
  /** Refreshes that read the whole health hash. */
  full: number;
  /** Refreshes that read only the documents written since the previous one. */
  delta: number;
  /** Health documents received from Redis. */
  docsRead: number;
  /** Health documents parsed (JSON.parse): those not identical to the one held. */
  docsParsed: number;
}

export interface RegistryOptions {
  redis: Redis;
  n: Names;
  thresholds: Thresholds;
  log: Logger;
  /** @defaultValue 1000 */
  refreshMs?: number;
  /** A node silent this long leaves the registry. @defaultValue 24 h */
  dropAfterMs?: number;
  /** How long an anticipated load counts as loaded. @defaultValue 60 s */
  loadingTtlMs?: number;
  /** How often the whole health hash is read anyway (see above). @defaultValue 30 s */
  fullReadMs?: number;
  now?: () => number;
}

/**
 * alive: which nodes' TTL keys exist.
 * ARGV: 1 TTL key prefix (key = prefix .. node id), 2 node ids, one per line
 * Returns one character per node id, '1' (exists) or '0'.
 */
const ALIVE = `
local out, i = {}, 0
for id in string.gmatch(ARGV[2], '[^\\n]+') do
  i = i + 1
  out[i] = redis.call('EXISTS', ARGV[1] .. id) == 1 and '1' or '0'
end
return table.concat(out)
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    orionAlive(prefix: string, ids: string): Result<string, Context>;
  }
}

/** The nodes among `ids` whose TTL key exists, in one script call. */
async function aliveNodes(redis: Redis, n: Names, ids: readonly string[]): Promise<Set<string>> {
  if (typeof (redis as Partial<Redis>).orionAlive !== 'function') redis.defineCommand('orionAlive', { numberOfKeys: 0, lua: ALIVE });
  const prefix = n.healthKey('');
  if (n.healthKey('x') !== `${prefix}x`) throw new Error('names.ts: a TTL key must be its prefix followed by the node id');
  // Ids that cannot travel one per line are no node's (node ids are [A-Za-z0-9._-]): not alive.
  const asked = ids.filter((id) => id !== '' && !id.includes('\n'));
  const alive = new Set<string>();
  if (asked.length === 0) return alive;
  const flags = await redis.orionAlive(prefix, asked.join('\n'));
  if (flags.length !== asked.length) throw new Error(`alive script answered ${flags.length} of ${asked.length} nodes`);
  asked.forEach((id, i) => {
    if (flags[i] === '1') alive.add(id);
  });
  return alive;
}

type ParsedHealth = Extract<ReturnType<typeof parseHealth>, { ok: true }>;

const EMPTY: Snapshot = {
  at: 0,
  views: new Map(),
  published: new Map(),
  eligible: [],
  index: new RoutingIndex([]),
  known: [],
  dead: [],
  modelsAnywhere: new Set(),
  duplicates: new Map(),
};

/** A health document from the hash, or why not. Lenient: only what routing needs is checked. */
export function parseHealth(nodeId: string, raw: string): { ok: true; doc: Record<string, unknown>; health: NodeHealth } | { ok: false; reason: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return { ok: false, reason: 'not a JSON object' };
  const d = doc as Record<string, unknown>;
  const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (!num(d['ram_percent'])) return { ok: false, reason: 'ram_percent is not a number' };
  if (typeof d['available'] !== 'boolean') return { ok: false, reason: 'available is not a boolean' };
  if (typeof d['last_seen'] !== 'string' || !Number.isFinite(Date.parse(d['last_seen']))) return { ok: false, reason: 'last_seen is not a time' };
  if (d['temp_celsius'] !== null && d['temp_celsius'] !== undefined && !num(d['temp_celsius'])) return { ok: false, reason: 'temp_celsius is not a number or null' };
  const strings = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined);
  const health: NodeHealth = {
    ...(d as unknown as NodeHealth),
    node_id: nodeId,
    cpu_percent: num(d['cpu_percent']) ? d['cpu_percent'] : 0,
    temp_celsius: num(d['temp_celsius']) ? d['temp_celsius'] : null,
    models: strings(d['models']) ?? [],
  };
  const installed = strings(d['installed_models']);
  if (installed) health.installed_models = installed;
  else delete health.installed_models;
  return { ok: true, doc: d, health };
}

export class Registry {
  private snap: Snapshot = EMPTY;
  private readonly junk = new JunkWarnings();
  private readonly instances = new InstanceTracker();
  private readonly warned = new Map<string, string>();
  /** The last refresh's health documents as read and as parsed, by node id. */
  private parsed = new Map<string, { raw: string; p: ParsedHealth }>();
  /** Every field of the health hash as last read (junk included), kept current from the versions. */
  private readonly docs = new Map<string, string>();
  /** The highest document version read; undefined before the first full read. */
  private cursor: string | undefined;
  private lastFullAt = 0;
  private readonly counts: RegistryReads = { full: 0, delta: 0, docsRead: 0, docsParsed: 0 };
  /** Hysteresis memory: nodes excluded for temperature or RAM, not yet below readmit. */
  private held = new Map<string, Held>();
  /** node id -> model -> until (ms): anticipated loads. */
  private readonly loading = new Map<string, Map<string, number>>();
  private readonly listeners: ((s: Snapshot) => void | Promise<void>)[] = [];
  private readonly periodic: Periodic;
  private failures = 0;

  constructor(private readonly o: RegistryOptions) {
    this.periodic = new Periodic(o.refreshMs ?? 1000, () => this.refreshOnce());
  }

  current(): Snapshot {
    return this.snap;
  }

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  /** Called after every successful refresh (waiting requests, dead nodes, Bull Board). */
  onRefresh(fn: (s: Snapshot) => void | Promise<void>): void {
    this.listeners.push(fn);
  }

  start(): void {
    this.periodic.start();
  }

  stop(): Promise<void> {
    return this.periodic.stop();
  }

  /** Refresh now, then tell the listeners (one at a time; a failure is logged, not thrown). */
  refreshAndNotify(): Promise<void> {
    return this.periodic.runNow();
  }

  private async refreshOnce(): Promise<void> {
    let s: Snapshot;
    try {
      s = await this.refresh();
      this.failures = 0;
    } catch (err) {
      this.failures += 1;
      if (this.failures === 1) this.o.log.warn({ err: (err as Error).message }, 'registry refresh failed; keeping the last snapshot');
      return;
    }
    for (const fn of this.listeners) {
      try {
        await fn(s);
      } catch (err) {
        this.o.log.warn({ err }, 'registry listener failed');
      }
    }
  }

  /** What the refreshes have read so far. */
  reads(): Readonly<RegistryReads> {
    return { ...this.counts };
  }

  /**
   * Bring `docs` up to date: the documents written since the cursor, or the whole hash when
   * that cannot be trusted (see the file's comment).
   */
  private async readHealth(now: number, since: Promise<Awaited<ReturnType<typeof healthSince>>> | undefined): Promise<void> {
    const { redis, n } = this.o;
    if (since !== undefined && this.cursor !== undefined) {
      const d = await since;
      if (!versionBelow(d.cursor, this.cursor)) {
        for (const [id, raw] of d.changed) {
          if (raw === null) this.docs.delete(id);
          else this.docs.set(id, raw);
        }
        this.counts.delta += 1;
        this.counts.docsRead += d.changed.size;
        this.cursor = d.cursor;
        if (d.fields === this.docs.size) return;
      }
    }
    const all = await healthAll(redis, n);
    this.docs.clear();
    for (const [id, raw] of Object.entries(all.docs)) this.docs.set(id, raw);
    this.cursor = all.cursor;
    this.lastFullAt = now;
    this.counts.full += 1;
    this.counts.docsRead += this.docs.size;
  }

  /** Read the registry and build a new snapshot. */
  async refresh(): Promise<Snapshot> {
    const now = this.now();
    const { ids, drained, alive } = await this.readRegistry(now);
    const { views, published, modelsAnywhere, drop } = this.buildViews(now, alive, drained);
    await this.dropSilent(drop);
    const known = ids.filter((id) => !drop.includes(id));
    const eligible = eligibleInOrder(views.values());
    this.snap = {
      at: now,
      views,
      published,
      eligible,
      index: new RoutingIndex(eligible),
      known,
      dead: known.filter((id) => !alive.has(id)),
      modelsAnywhere,
      duplicates: this.instances.see(published, now, this.o.log),
    };
    return this.snap;
  }

  /** The health documents (those changed, or all), the node and drained sets, and which nodes'
   * TTL keys are present; node ids only. */
  private async readRegistry(now: number): Promise<{ ids: string[]; drained: Set<string>; alive: Set<string> }> {
    const { redis, n, log } = this.o;
    const deltaOk = this.cursor !== undefined && now - this.lastFullAt < (this.o.fullReadMs ?? 30_000);
    // The changed documents and the two sets in one round trip (one pipeline).
    const since = deltaOk ? healthSince(redis, n, this.cursor!) : undefined;
    const sets = redis.pipeline().smembers(n.nodes).smembers(n.drained).exec();
    // Neither promise may be left unobserved if the other fails first.
    since?.catch(() => undefined);
    const first = await sets;
    if (first?.[0]?.[0]) throw first[0][0];
    await this.readHealth(now, since);
    const members = (first?.[0]?.[1] ?? []) as string[];
    const drained = new Set((first?.[1]?.[1] ?? []) as string[]);
    // Only node ids: anything else in the registry (a field `evil:node`, an empty one) names no
    // queue and is skipped, with a warning now and then (a worker's ACL user may write any field).
    const all = [...new Set([...this.docs.keys(), ...members])];
    const ids = all.filter(isValidNodeId).sort();
    if (ids.length < all.length) this.junk.see(all.filter((id) => !isValidNodeId(id)), now, log, n);
    return { ids, drained, alive: await aliveNodes(redis, n, ids) };
  }

  /** Each readable document's view (hysteresis and drains applied); the silent ones to drop. */
  private buildViews(now: number, alive: Set<string>, drained: Set<string>): {
    views: Map<string, NodeView>;
    published: Map<string, Record<string, unknown>>;
    modelsAnywhere: Set<string>;
    drop: string[];
  } {
    const dropAfter = this.o.dropAfterMs ?? 24 * 3600 * 1000;
    const views = new Map<string, NodeView>();
    const published = new Map<string, Record<string, unknown>>();
    const modelsAnywhere = new Set<string>();
    const drop: string[] = [];
    const parsed = new Map<string, { raw: string; p: ParsedHealth }>();
    const held = new Map<string, Held>();
    for (const [id, raw] of this.docs) {
      const p = this.readable(id, raw);
      if (p === undefined) continue;
      parsed.set(id, { raw, p });
      const h = nextHeld(p.health, this.held.get(id), this.o.thresholds);
      if (h.temperature || h.ram) held.set(id, h);
      const plain = toNodeView(p.health, alive.has(id), now, this.o.thresholds, h);
      const view = drained.has(id) ? drainedView(plain) : plain;
      if (now - view.lastSeenMs > dropAfter && !alive.has(id)) {
        drop.push(id);
        continue;
      }
      for (const m of view.loaded) modelsAnywhere.add(m);
      for (const m of view.installed ?? []) modelsAnywhere.add(m);
      views.set(id, this.withAnticipated(view, now));
      published.set(id, p.doc);
    }
    this.parsed = parsed;
    this.held = held;
    for (const id of this.warned.keys()) if (!this.docs.has(id)) this.warned.delete(id);
    return { views, published, modelsAnywhere, drop };
  }

  /** A node's parsed document, reusing the last parse while the text is the same; undefined
   * (warned once per text) when it is no node id or cannot be read. */
  private readable(id: string, raw: string): ParsedHealth | undefined {
    if (!isValidNodeId(id)) return undefined;
    // A document already found unreadable is not parsed again until it changes.
    if (this.warned.get(id) === raw) return undefined;
    const last = this.parsed.get(id);
    const p = last !== undefined && last.raw === raw ? last.p : this.parse(id, raw);
    if (!p.ok) {
      this.o.log.warn({ node: id, reason: p.reason }, 'unreadable health document; node skipped');
      this.warned.set(id, raw);
      return undefined;
    }
    this.warned.delete(id);
    return p;
  }

  /** Drop nodes silent for over 24 h (and not alive) from the registry. */
  private async dropSilent(drop: string[]): Promise<void> {
    if (drop.length === 0) return;
    const { redis, n, log } = this.o;
    const res = await redis.multi().hdel(n.health, ...drop).zrem(n.healthVersions, ...drop).exec();
    const failed = res?.find(([err]) => err);
    if (failed) throw failed[0];
    for (const id of drop) this.docs.delete(id);
    log.info({ nodes: drop }, 'nodes silent for over 24 h dropped from the registry');
  }


  private parse(id: string, raw: string): ReturnType<typeof parseHealth> {
    this.counts.docsParsed += 1;
    return parseHealth(id, raw);
  }

  /** The view with anticipated loads added to what the node reports loaded. */
  private withAnticipated(view: NodeView, now: number): NodeView {
    const pending = this.loading.get(view.health.node_id);
    if (!pending) return view;
    const loaded = new Set(view.loaded);
    for (const [model, until] of pending) {
      if (until <= now || view.loaded.has(model)) pending.delete(model);
      else loaded.add(model);
    }
    if (pending.size === 0) this.loading.delete(view.health.node_id);
    return { ...view, loaded };
  }

  /**
   * A request for `model` was placed on `nodeId` as a fallback: count the model as loading
   * there, in this snapshot at once and in the next ones until the TTL passes.
   */
  noteLoading(nodeId: string, model: string): void {
    const m = normalizeModel(model);
    let pending = this.loading.get(nodeId);
    if (!pending) this.loading.set(nodeId, (pending = new Map()));
    pending.set(m, this.now() + (this.o.loadingTtlMs ?? 60_000));
    const view = this.snap.views.get(nodeId);
    if (!view || view.loaded.has(m)) return;
    // The snapshot's sets are built here, never shared with callers for writing.
    (view.loaded as Set<string>).add(m);
    if (view.eligible) this.snap.index.markLoaded(view, m);
  }

  /** Whether the node reports the model loaded (not just anticipated). */
  reportsLoaded(nodeId: string, model: string): boolean {
    const models = this.snap.views.get(nodeId)?.health.models ?? [];
    const m = normalizeModel(model);
    return models.some((x) => normalizeModel(x) === m);
  }
}

export type Choice =
  | { kind: 'routed'; node: NodeView; routing: Routing }
  | { kind: 'model_not_found' }
  /** Nothing eligible can serve it now: hold it until the snapshot changes or its deadline. */
  | { kind: 'wait'; reason: 'no_node' | 'no_model' };

/**
 * pickNode on the snapshot, except that a model some ineligible node of the registry has
 * (installed or loaded) is worth waiting for rather than refused as `model_not_found`.
 */
export function choose(s: Snapshot, model: string, avoid?: ReadonlySet<string>): Choice {
  const d = s.index.pick(model, avoid);
  if (d.kind === 'routed') return d;
  if (d.kind === 'no_healthy_node') return { kind: 'wait', reason: 'no_node' };
  return s.modelsAnywhere.has(normalizeModel(model)) ? { kind: 'wait', reason: 'no_model' } : d;
}
