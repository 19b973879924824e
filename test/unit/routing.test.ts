import { describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { RoutingIndex } from '../../src/router/routing-index.js';
import { eligibleInOrder, exclusionOf, pickNode, toNodeView, type ExcludedReason, type NodeView } from '../../src/router/routing.js';

const T = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };
const SEEN = '2026-01-19T12:00:00Z';
const NOW = Date.parse(SEEN) + 1000;

function node(id: string, over: Partial<NodeHealth> = {}): NodeHealth {
  return { node_id: id, cpu_percent: 10, ram_percent: 50, temp_celsius: 50, models: [], available: true, last_seen: SEEN, ...over };
}

describe('which nodes are eligible', () => {
  const rows: [string, Partial<NodeHealth>, { ttl?: boolean; now?: number }, ExcludedReason | undefined][] = [
    ['a node at exactly 75 °C is eligible', { temp_celsius: 75 }, {}, undefined],
    ['a node at 75.1 °C is too hot', { temp_celsius: 75.1 }, {}, 'temperature'],
    ['a node with no thermal sensor (null) is eligible', { temp_celsius: null }, {}, undefined],
    ['a node at exactly 90 % RAM is eligible', { ram_percent: 90 }, {}, undefined],
    ['a node at 90.1 % RAM is full', { ram_percent: 90.1 }, {}, 'ram'],
    ['a node seen exactly 15 s ago is fresh', {}, { now: Date.parse(SEEN) + 15_000 }, undefined],
    ['a node seen 15.001 s ago is stale', {}, { now: Date.parse(SEEN) + 15_001 }, 'stale'],
    ['a node whose TTL key is gone is stale, however recent its last_seen', {}, { ttl: false }, 'stale'],
    ['a node with an unreadable last_seen is stale', { last_seen: 'yesterday' }, {}, 'stale'],
    ['a node that says it is unavailable is excluded', { available: false }, {}, 'unavailable'],
    ['staleness is reported before the other reasons', { available: false, temp_celsius: 99 }, { ttl: false }, 'stale'],
  ];
  for (const [sentence, over, opts, reason] of rows) {
    it(sentence, () => {
      const view = toNodeView(node('n', over), opts.ttl ?? true, opts.now ?? NOW, T);
      expect(view.excludedReason).toBe(reason);
      expect(view.eligible).toBe(reason === undefined);
      expect(exclusionOf(view.health, view.lastSeenMs, opts.ttl ?? true, opts.now ?? NOW, T)).toBe(reason);
    });
  }

  it('the thresholds come from the configuration', () => {
    expect(toNodeView(node('n', { temp_celsius: 70 }), true, NOW, { ...T, maxTemp: 65 }).excludedReason).toBe('temperature');
    expect(toNodeView(node('n', { ram_percent: 80 }), true, NOW, { ...T, maxRam: 75 }).excludedReason).toBe('ram');
    expect(toNodeView(node('n'), true, Date.parse(SEEN) + 6000, { ...T, staleAfterMs: 5000 }).excludedReason).toBe('stale');
  });
});

type Expect = string | 'model_not_found' | 'no_healthy_node';

describe('which node a request goes to', () => {
  const rows: { sentence: string; nodes: NodeHealth[]; model: string; avoid?: string[]; want: Expect; routing?: 'sticky' | 'fallback' }[] = [
    {
      sentence: 'the node with the model loaded wins (a sticky hit), even when it is busier',
      nodes: [node('idle', { ram_percent: 10 }), node('warm', { ram_percent: 80, models: ['gemma3:1b'] })],
      model: 'gemma3:1b',
      want: 'warm',
      routing: 'sticky',
    },
    {
      sentence: 'among nodes with the model loaded, the one using the least RAM wins',
      nodes: [node('a', { ram_percent: 60, models: ['gemma3:1b'] }), node('b', { ram_percent: 30, models: ['gemma3:1b'] })],
      model: 'gemma3:1b',
      want: 'b',
      routing: 'sticky',
    },
    {
      sentence: 'with the model loaded nowhere, the node using the least RAM gets it (a fallback)',
      nodes: [node('a', { ram_percent: 60 }), node('b', { ram_percent: 30 }), node('c', { ram_percent: 45 })],
      model: 'gemma3:1b',
      want: 'b',
      routing: 'fallback',
    },
    {
      sentence: 'equal RAM is broken by node id',
      nodes: [node('pi-b', { ram_percent: 40 }), node('pi-a', { ram_percent: 40 })],
      model: 'gemma3:1b',
      want: 'pi-a',
      routing: 'fallback',
    },
    {
      sentence: 'a fallback prefers a node that has the model installed over a less-loaded one that has not',
      nodes: [node('lean', { ram_percent: 10, installed_models: ['phi4:latest'] }), node('has', { ram_percent: 70, installed_models: ['gemma3:1b'] })],
      model: 'gemma3:1b',
      want: 'has',
      routing: 'fallback',
    },
    {
      sentence: 'a node that does not report installed models may still get a fallback',
      nodes: [node('says-no', { ram_percent: 10, installed_models: ['phi4:latest'] }), node('silent', { ram_percent: 70 })],
      model: 'gemma3:1b',
      want: 'silent',
      routing: 'fallback',
    },
    {
      sentence: 'when every eligible node reports its installed models and none has it: model_not_found',
      nodes: [node('a', { installed_models: ['phi4:latest'] }), node('b', { installed_models: [] })],
      model: 'gemma3:1b',
      want: 'model_not_found',
    },
    {
      sentence: 'ineligible nodes do not count for model_not_found or anything else',
      nodes: [node('a', { installed_models: ['phi4:latest'] }), node('hot', { temp_celsius: 80, models: ['gemma3:1b'] })],
      model: 'gemma3:1b',
      want: 'model_not_found',
    },
    {
      sentence: 'with no eligible node at all: no_healthy_node',
      nodes: [node('hot', { temp_celsius: 76, models: ['gemma3:1b'] }), node('full', { ram_percent: 95 })],
      model: 'gemma3:1b',
      want: 'no_healthy_node',
    },
    {
      sentence: '`llama3` asked for is `llama3:latest` loaded',
      nodes: [node('a', { ram_percent: 10 }), node('b', { ram_percent: 50, models: ['llama3:latest'] })],
      model: 'llama3',
      want: 'b',
      routing: 'sticky',
    },
    {
      sentence: '`llama3:latest` asked for is `llama3` loaded, and installed the same way',
      nodes: [node('a', { ram_percent: 50, models: ['llama3'] }), node('b', { ram_percent: 10, installed_models: ['llama3'] })],
      model: 'llama3:latest',
      want: 'a',
      routing: 'sticky',
    },
    {
      sentence: 'a node to avoid (where it failed) is passed over for another',
      nodes: [node('warm', { ram_percent: 10, models: ['gemma3:1b'] }), node('other', { ram_percent: 50 })],
      model: 'gemma3:1b',
      avoid: ['warm'],
      want: 'other',
      routing: 'fallback',
    },
    {
      sentence: 'a node to avoid is still chosen when it is the only one',
      nodes: [node('warm', { ram_percent: 10, models: ['gemma3:1b'] })],
      model: 'gemma3:1b',
      avoid: ['warm'],
      want: 'warm',
      routing: 'sticky',
    },
  ];

  for (const row of rows) {
    it(row.sentence, () => {
      const ordered = eligibleInOrder(row.nodes.map((h) => toNodeView(h, true, NOW, T)));
      const avoid = row.avoid ? new Set(row.avoid) : undefined;
      for (const d of [pickNode(row.model, ordered, avoid), new RoutingIndex(ordered).pick(row.model, avoid)]) {
        if (row.want === 'model_not_found' || row.want === 'no_healthy_node') {
          expect(d.kind).toBe(row.want);
        } else {
          expect(d).toMatchObject({ kind: 'routed', routing: row.routing });
          expect(d.kind === 'routed' && d.node.health.node_id).toBe(row.want);
        }
      }
    });
  }

  it('eligible nodes are ordered by RAM ascending, ties by node id', () => {
    const views = [node('c', { ram_percent: 30 }), node('b', { ram_percent: 20 }), node('a', { ram_percent: 30 }), node('x', { ram_percent: 5, available: false })].map((h) =>
      toNodeView(h, true, NOW, T),
    );
    expect(eligibleInOrder(views).map((v) => v.health.node_id)).toEqual(['b', 'a', 'c']);
  });

  it('a model marked as loading on a node makes it sticky there, in the index as in pickNode', () => {
    const ordered: NodeView[] = eligibleInOrder([node('a', { ram_percent: 10 }), node('b', { ram_percent: 40 })].map((h) => toNodeView(h, true, NOW, T)));
    const index = new RoutingIndex(ordered);
    const b = ordered[1]!;
    (b.loaded as Set<string>).add('gemma3:1b');
    index.markLoaded(b, 'gemma3:1b');
    for (const d of [pickNode('gemma3:1b', ordered), index.pick('gemma3:1b')]) {
      expect(d.kind === 'routed' && [d.node.health.node_id, d.routing]).toEqual(['b', 'sticky']);
    }
  });
});
