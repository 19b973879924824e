/**
 * The routing decision in O(1): `pickNode` walks the eligible list, which is fine for a
 * handful of Pis but grows with the registry. A RoutingIndex is built once per registry
 * snapshot (about every second) and answers each request with a map lookup, so one bridge
 * keeps the same per-request cost with 3 nodes or 1,000. Its answers are exactly pickNode's
 * (a property test holds the two together).
 */
import { normalizeCached } from './model-names.js';
import { compareNodes, pickNode, type Decision, type NodeView } from './routing.js';

export class RoutingIndex {
  /** Eligible nodes in routing order. */
  readonly ordered: readonly NodeView[];
  private readonly loadedBy = new Map<string, NodeView[]>();
  /** Per model, the nodes that report it installed: built on the first ask for that model in
   * this snapshot (a snapshot lives about a second, and most models need it only now and then). */
  private readonly installedBy = new Map<string, NodeView[]>();
  private readonly unknown: NodeView[] = [];
  private readonly norm = normalizeCached;
  private changes = 0;

  constructor(ordered: readonly NodeView[]) {
    this.ordered = ordered;
    for (const n of ordered) {
      for (const m of n.loaded) push(this.loadedBy, m, n);
      if (n.installed === undefined) this.unknown.push(n);
    }
  }

  /** Changes whenever a candidate list of this snapshot changes in place (`markLoaded`, `unmarkLoaded`). */
  get version(): number {
    return this.changes;
  }

  /**
   * Count `model` as loaded on `node` (one of `ordered`) from now on, as `node.loaded` does
   * once the caller adds it there: the bridge's anticipated loads after a fallback.
   */
  markLoaded(node: NodeView, model: string): void {
    this.changes++;
    const want = this.norm(model);
    const list = this.loadedBy.get(want);
    if (list === undefined) this.loadedBy.set(want, [node]);
    else if (!list.includes(node)) {
      list.push(node);
      list.sort(compareNodes);
    }
  }

  /** Stop counting `model` as loaded on `node`: the anticipated load was called off. */
  unmarkLoaded(node: NodeView, model: string): void {
    this.changes++;
    const list = this.loadedBy.get(this.norm(model));
    const at = list === undefined ? -1 : list.indexOf(node);
    if (at >= 0) list!.splice(at, 1);
  }

  /**
   * The nodes that may serve `model`, each list in routing order, as `candidatesOf` (balanced.ts)
   * builds them by walking every node: for `balancedFrom` without that walk.
   */
  candidates(model: string): { loaded: readonly NodeView[]; installed: readonly NodeView[]; unknown: readonly NodeView[] } {
    const want = this.norm(model);
    return new IndexCandidates(this, want, this.loadedBy.get(want) ?? [], this.unknown);
  }

  /** The eligible nodes that report `want` (normalised) installed, in routing order. */
  installedOf(want: string): readonly NodeView[] {
    let list = this.installedBy.get(want);
    if (list === undefined) {
      list = [];
      for (const n of this.ordered) if (n.installed?.has(want)) list.push(n);
      this.installedBy.set(want, list);
    }
    return list;
  }

  /** Same answer as `pickNode(model, ordered, avoid)`. */
  pick(model: string, avoid?: ReadonlySet<string>): Decision {
    if (this.ordered.length === 0) return { kind: 'no_healthy_node' };
    if (avoid !== undefined && avoid.size > 0) return pickNode(model, this.ordered, avoid);
    const want = this.norm(model);
    const sticky = this.loadedBy.get(want);
    if (sticky !== undefined) return { kind: 'routed', node: sticky[0]!, routing: 'sticky' };
    // Fallback: nodes that have the model installed come before nodes that do not say.
    const pick = this.installedOf(want)[0] ?? this.unknown[0];
    if (pick !== undefined) return { kind: 'routed', node: pick, routing: 'fallback' };
    return this.unknown.length === 0 ? { kind: 'model_not_found' } : { kind: 'no_healthy_node' };
  }
}

/** `candidates`' answer: the installed list is looked up only when read. */
class IndexCandidates {
  private list: readonly NodeView[] | undefined;

  constructor(
    private readonly index: RoutingIndex,
    private readonly want: string,
    readonly loaded: readonly NodeView[],
    readonly unknown: readonly NodeView[],
  ) {}

  get installed(): readonly NodeView[] {
    return (this.list ??= this.index.installedOf(this.want));
  }
}

function push(map: Map<string, NodeView[]>, key: string, n: NodeView): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [n]);
  else list.push(n);
}
