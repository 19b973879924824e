/**
 * The busy warm nodes of one candidate list, kept in order of expected start, so that a backlog
 * on a thousand busy nodes does not weigh them all for every request (`bestWarm`, balanced.ts).
 *
 * It is exact, not an approximation, under one condition the caller vouches for with a stamp:
 * while the stamp holds, no node's expected start can have gone down (only placements happened:
 * each adds work to one node; no count landed lower, nothing learned, no node joined or left the
 * list, no load under way whose remaining time shrinks with the clock). Each node's key is then
 * a lower bound of its true expected start, so the node at the top, once its key is brought up
 * to date and it stays on top, is the one the full walk would find: the smallest expected start,
 * ties to the earlier in the list (the guide's order).
 */
import type { NodeView } from './routing.js';

export class WarmOrder {
  private readonly nodes: NodeView[] = [];
  private readonly ms: number[] = [];
  /** Position in the candidate list (the tie-break). */
  private readonly at: number[] = [];

  /** `nodes` in list order, `ms` their expected starts now; `stamp` the caller's condition. */
  constructor(
    readonly stamp: string,
    nodes: readonly NodeView[],
    ms: readonly number[],
    count: number,
  ) {
    for (let i = 0; i < count; i++) {
      this.nodes.push(nodes[i]!);
      this.ms.push(ms[i]!);
      this.at.push(i);
    }
    for (let i = (count >> 1) - 1; i >= 0; i--) this.down(i);
  }

  /**
   * The node with the smallest expected start now, `msOf` giving a node's current one (NaN when
   * the condition turns out broken: the caller then walks every node and builds a new order).
   */
  best(msOf: (n: NodeView) => number): NodeView | undefined {
    if (this.nodes.length === 0) return undefined;
    for (;;) {
      const now = msOf(this.nodes[0]!);
      if (Number.isNaN(now) || now < this.ms[0]!) return undefined;
      if (now === this.ms[0]) return this.nodes[0];
      this.ms[0] = now;
      this.down(0);
    }
  }

  private less(i: number, j: number): boolean {
    const a = this.ms[i]!;
    const b = this.ms[j]!;
    return a < b || (a === b && this.at[i]! < this.at[j]!);
  }

  private down(i: number): void {
    const n = this.nodes.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const m = r < n && this.less(r, l) ? r : l;
      if (!this.less(m, i)) return;
      this.swap(i, m);
      i = m;
    }
  }

  private swap(i: number, j: number): void {
    const n = this.nodes[i]!;
    this.nodes[i] = this.nodes[j]!;
    this.nodes[j] = n;
    const ms = this.ms[i]!;
    this.ms[i] = this.ms[j]!;
    this.ms[j] = ms;
    const at = this.at[i]!;
    this.at[i] = this.at[j]!;
    this.at[j] = at;
  }
}
