import { describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { RoutingIndex } from '../../src/router/routing-index.js';
import { eligibleInOrder, pickNode, toNodeView } from '../../src/router/routing.js';
import { seededRandom as rng } from '../../src/lib/random.js';

const T = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };
const MODELS = ['gemma3:1b', 'llama3.2:3b', 'llama3', 'qwen2.5:0.5b', 'phi4'];


function randomSnapshot(seed: number, now: number) {
  const r = rng(seed);
  const count = Math.floor(r() * 12);
  const views = [];
  for (let i = 0; i < count; i++) {
    const pickSome = () => MODELS.filter(() => r() < 0.3);
    const h: NodeHealth = {
      node_id: `n${Math.floor(r() * 20)}`,
      cpu_percent: 0,
      ram_percent: Math.floor(r() * 100),
      temp_celsius: r() < 0.2 ? null : 40 + Math.floor(r() * 45),
      models: pickSome(),
      available: r() < 0.9,
      last_seen: new Date(now - Math.floor(r() * 20_000)).toISOString(),
      ...(r() < 0.7 ? { installed_models: pickSome() } : {}),
    };
    views.push(toNodeView(h, r() < 0.9, now, T));
  }
  return eligibleInOrder(views);
}

describe('the routing index', () => {
  it('answers exactly as pickNode on 2,000 random snapshots, for every model', () => {
    const now = Date.now();
    let compared = 0;
    for (let seed = 1; seed <= 2000; seed++) {
      const ordered = randomSnapshot(seed, now);
      const index = new RoutingIndex(ordered);
      for (const model of [...MODELS, 'llama3:latest', 'missing:7b']) {
        const a = pickNode(model, ordered);
        const b = index.pick(model);
        expect({ seed, model, kind: b.kind, node: b.kind === 'routed' ? b.node.health.node_id : '', routing: b.kind === 'routed' ? b.routing : '' }).toEqual({
          seed,
          model,
          kind: a.kind,
          node: a.kind === 'routed' ? a.node.health.node_id : '',
          routing: a.kind === 'routed' ? a.routing : '',
        });
        compared++;
      }
    }
    expect(compared).toBe(2000 * 7);
  });

  it('passes over avoided nodes as pickNode does', () => {
    const now = Date.now();
    for (let seed = 1; seed <= 300; seed++) {
      const ordered = randomSnapshot(seed, now);
      const avoid = new Set(ordered.slice(0, 1).map((n) => n.health.node_id));
      const index = new RoutingIndex(ordered);
      const a = pickNode('gemma3:1b', ordered, avoid);
      const b = index.pick('gemma3:1b', avoid);
      expect(b.kind === 'routed' ? b.node.health.node_id : b.kind).toBe(a.kind === 'routed' ? a.node.health.node_id : a.kind);
    }
  });
});
