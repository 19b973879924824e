import { describe, expect, it } from 'vitest';
import { moveSources } from '../../src/router/mover.js';

describe('the queues a rebalancing pass reads', () => {
  const queues = (n: number): string[] => Array.from({ length: n }, (_, i) => `q${i}`);

  it('reads every queue when there are few', () => {
    expect(moveSources(queues(5), 32, 7)).toEqual({ picked: queues(5), turn: 7 });
  });

  it('reads the most backlogged half every pass and every other queue in turn', () => {
    const all = queues(100);
    const seen = new Map<string, number>();
    let turn = 0;
    const passes = Math.ceil((100 - 16) / 16);
    for (let p = 0; p < passes; p++) {
      const r = moveSources(all, 32, turn);
      expect(r.picked).toHaveLength(32);
      expect(new Set(r.picked).size).toBe(32);
      expect(r.picked.slice(0, 16)).toEqual(all.slice(0, 16));
      for (const q of r.picked) seen.set(q, (seen.get(q) ?? 0) + 1);
      turn = r.turn;
    }
    // Within ceil(84 / 16) = 6 passes every queue was read, the top 16 at every pass.
    expect(seen.size).toBe(100);
    for (const q of all.slice(0, 16)) expect(seen.get(q)).toBe(passes);
    for (const q of all.slice(16)) expect(seen.get(q)).toBeGreaterThanOrEqual(1);
  });

  it('keeps its turn within the queues it rotates over when they shrink', () => {
    const r = moveSources(queues(40), 32, 1000);
    expect(r.picked.slice(16)).toHaveLength(16);
    expect(r.turn).toBeLessThan(24);
    expect(new Set(r.picked).size).toBe(32);
  });
});
