/** A binary min-heap of jobs keyed by a time, ties in insertion order (deterministic runs). */
export class TimeHeap<T> {
  private readonly keys: number[] = [];
  private readonly seqs: number[] = [];
  private readonly items: T[] = [];
  private seq = 0;

  get size(): number {
    return this.items.length;
  }

  peekKey(): number {
    return this.items.length === 0 ? Number.POSITIVE_INFINITY : this.keys[0]!;
  }

  push(key: number, item: T): void {
    const k = this.keys;
    const s = this.seqs;
    const it = this.items;
    let i = it.length;
    k.push(key);
    s.push(this.seq++);
    it.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  pop(): T | undefined {
    const it = this.items;
    if (it.length === 0) return undefined;
    const top = it[0];
    const last = it.length - 1;
    this.swap(0, last);
    this.keys.pop();
    this.seqs.pop();
    it.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < it.length && this.less(l, m)) m = l;
      if (r < it.length && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }

  private less(a: number, b: number): boolean {
    const ka = this.keys[a]!;
    const kb = this.keys[b]!;
    return ka < kb || (ka === kb && this.seqs[a]! < this.seqs[b]!);
  }

  private swap(a: number, b: number): void {
    const k = this.keys;
    const s = this.seqs;
    const it = this.items;
    [k[a], k[b]] = [k[b]!, k[a]!];
    [s[a], s[b]] = [s[b]!, s[a]!];
    [it[a], it[b]] = [it[b]!, it[a]!];
  }
}
