import { describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { balancedFrom, pickBalanced, slotWaitMs, type FreeScan, type NodeLoad } from '../../src/router/balanced.js';
import { RoutingIndex } from '../../src/router/routing-index.js';
import { normalizeModel } from '../../src/contracts/index.js';
import { CostLearner } from '../../src/router/learner.js';
import { eligibleInOrder, pickNode, toNodeView, type NodeView } from '../../src/router/routing.js';
import { seededRandom as rng } from '../../src/lib/random.js';

const T = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };
const SEEN = '2026-01-19T12:00:00Z';
const NOW = Date.parse(SEEN) + 1000;
const MODELS = ['gemma3:1b', 'llama3.2:3b', 'llama3', 'qwen2.5:0.5b', 'phi4'];


function node(id: string, over: Partial<NodeHealth> = {}): NodeHealth {
  return { node_id: id, cpu_percent: 10, ram_percent: 50, temp_celsius: 50, models: [], available: true, last_seen: SEEN, ...over };
}

const cluster = (nodes: NodeHealth[]): NodeView[] => eligibleInOrder(nodes.map((h) => toNodeView(h, true, NOW, T)));
const loads = (m: Record<string, Partial<NodeLoad>>) => (id: string): NodeLoad => ({ waiting: 0, running: 0, ...m[id] });
const idle = (): NodeLoad => ({ waiting: 0, running: 0 });

/** 1 to `most` nodes with every model installed, each loaded with chance `loaded`, 1 or 2 slots. */
function everyModelInstalled(r: () => number, most: number, loaded: number): NodeHealth[] {
  const hs: NodeHealth[] = [];
  for (let i = 0; i < 1 + Math.floor(r() * most); i++) {
    hs.push(node(`n${i}`, { ram_percent: Math.floor(r() * 90), models: MODELS.filter(() => r() < loaded), installed_models: MODELS, concurrency: 1 + Math.floor(r() * 2) }));
  }
  return hs;
}

/** A learner that knows a little, differently per node, so learned figures cannot decide ties. */
function randomLearner(r: () => number, ids: string[]): CostLearner {
  const l = new CostLearner();
  for (const id of ids) {
    for (const m of MODELS) {
      if (r() < 0.5) l.observe(id, m, { load_duration_ms: 1000 + r() * 40_000, prompt_eval_duration_ms: r() * 3000, eval_duration_ms: 1000 + r() * 60_000 }, 500 + r() * 3000);
    }
  }
  return l;
}

describe('balanced on an idle cluster is the guide', () => {
  it('chooses exactly as pickNode on 2,000 random idle clusters, for every model, with or without nodes to avoid', () => {
    let compared = 0;
    for (let seed = 1; seed <= 2000; seed++) {
      const r = rng(seed);
      const count = Math.floor(r() * 12);
      const views = [];
      for (let i = 0; i < count; i++) {
        const some = () => MODELS.filter(() => r() < 0.3);
        const h = node(`n${Math.floor(r() * 20)}`, {
          ram_percent: Math.floor(r() * 100),
          temp_celsius: r() < 0.2 ? null : 40 + Math.floor(r() * 45),
          models: some(),
          available: r() < 0.9,
          concurrency: 1 + Math.floor(r() * 2),
          ...(r() < 0.7 ? { installed_models: some() } : {}),
        });
        views.push(toNodeView(h, r() < 0.9, NOW, T));
      }
      const ordered = eligibleInOrder(views);
      const learner = randomLearner(r, ordered.map((n) => n.health.node_id));
      const avoid = r() < 0.3 && ordered.length > 0 ? new Set([ordered[Math.floor(r() * ordered.length)]!.health.node_id]) : undefined;
      for (const model of [...MODELS, 'llama3:latest', 'missing:7b']) {
        const a = pickNode(model, ordered, avoid);
        const b = pickBalanced(model, ordered, idle, learner, avoid);
        const summary = (d: typeof a | typeof b) => ({ kind: d.kind, node: d.kind === 'routed' ? d.node.health.node_id : '', routing: d.kind === 'routed' ? d.routing : '' });
        expect({ seed, model, ...summary(b) }).toEqual({ seed, model, ...summary(a) });
        if (b.kind === 'routed') expect(b.spill).toBe(false);
        compared++;
      }
    }
    expect(compared).toBe(2000 * 7);
  });
});

describe('where balanced departs from the guide', () => {
  const learner = new CostLearner({ answerMs: 20_000, loadMs: 24_000 });

  it('a busy warm node gives way to an idle warm one that is later in the guide order (a spill)', () => {
    const nodes = cluster([node('a', { ram_percent: 10, models: ['gemma3:1b'] }), node('b', { ram_percent: 60, models: ['gemma3:1b'] })]);
    const d = pickBalanced('gemma3:1b', nodes, loads({ a: { running: 1, waiting: 3 } }), learner);
    expect(d).toMatchObject({ kind: 'routed', routing: 'sticky', spill: true, coldLoad: false, etaMs: 0 });
    if (d.kind === 'routed') expect([d.node.health.node_id, d.guide.health.node_id]).toEqual(['b', 'a']);
  });

  it('equal waits keep the guide order', () => {
    const nodes = cluster([node('a', { ram_percent: 10, models: ['gemma3:1b'] }), node('b', { ram_percent: 60, models: ['gemma3:1b'] })]);
    const d = pickBalanced('gemma3:1b', nodes, loads({ a: { running: 1 }, b: { running: 1 } }), learner);
    expect(d.kind === 'routed' && d.node.health.node_id).toBe('a');
  });

  it('a short wait on a warm node beats a cold load on an idle node (a cold load avoided)', () => {
    const nodes = cluster([node('warm', { ram_percent: 70, models: ['gemma3:1b'] }), node('cold', { ram_percent: 10, installed_models: ['gemma3:1b'] })]);
    const d = pickBalanced('gemma3:1b', nodes, loads({ warm: { running: 1 } }), learner);
    expect(d).toMatchObject({ kind: 'routed', routing: 'sticky', coldLoad: false, avoidedColdLoad: true, waitMs: 10_000 });
  });

  it('a backlog longer than a load sends the request to load the model on an idle node', () => {
    const nodes = cluster([node('warm', { ram_percent: 70, models: ['gemma3:1b'] }), node('cold', { ram_percent: 10, installed_models: ['gemma3:1b'] })]);
    const d = pickBalanced('gemma3:1b', nodes, loads({ warm: { running: 1, waiting: 3 } }), learner);
    expect(d).toMatchObject({ kind: 'routed', routing: 'fallback', coldLoad: true, spill: true, etaMs: 24_000 });
  });

  it('a cold load that wins by less than the cold margin is not made', () => {
    const nodes = cluster([node('warm', { ram_percent: 70, models: ['gemma3:1b'] }), node('cold', { ram_percent: 10, installed_models: ['gemma3:1b'] })]);
    // Wait on warm: 25 s of work ahead, a load is 24 s: within 2 s.
    const busy = loads({ warm: { running: 1, waiting: 1, workMs: 25_000 } });
    const d = pickBalanced('gemma3:1b', nodes, busy, learner, undefined, { coldMarginMs: 2000 });
    expect(d.kind === 'routed' && d.node.health.node_id).toBe('warm');
    const d2 = pickBalanced('gemma3:1b', nodes, busy, learner, undefined, { coldMarginMs: 0, coldMarginShare: 0 });
    expect(d2.kind === 'routed' && d2.node.health.node_id).toBe('cold');
  });

  it('behind few answers a load must win by a share of the warm wait; behind many, by less', () => {
    const nodes = cluster([node('warm', { ram_percent: 70, models: ['gemma3:1b'] }), node('cold', { ram_percent: 10, installed_models: ['gemma3:1b'] })]);
    // Two answers ahead: 30 s expected, but its error is large; a 24 s load is not 1/sqrt(2) of it sooner.
    const two = loads({ warm: { running: 1, waiting: 1 } });
    expect(pickBalanced('gemma3:1b', nodes, two, learner)).toMatchObject({ kind: 'routed', coldLoad: false, etaMs: 30_000 });
    expect(pickBalanced('gemma3:1b', nodes, two, learner, undefined, { coldMarginShare: 0 })).toMatchObject({ kind: 'routed', coldLoad: true });
    // Nine answers ahead: 170 s expected; a margin of a third of it still leaves the load sooner.
    const nine = loads({ warm: { running: 1, waiting: 8 } });
    expect(pickBalanced('gemma3:1b', nodes, nine, learner)).toMatchObject({ kind: 'routed', coldLoad: true, etaMs: 24_000 });
  });

  it('a node that loads faster (learned rate) wins among busy candidates', () => {
    const l = new CostLearner();
    l.noteSize('gemma3:1b', 815);
    l.observe('nvme', 'llama3.2:3b', { load_duration_ms: 4_444 }, 2000);
    l.observe('sd', 'llama3.2:3b', { load_duration_ms: 23_529 }, 2000);
    const nodes = cluster([
      node('warm', { ram_percent: 5, models: ['gemma3:1b'] }),
      node('sd', { ram_percent: 10, installed_models: ['gemma3:1b'] }),
      node('nvme', { ram_percent: 80, installed_models: ['gemma3:1b'] }),
    ]);
    const d = pickBalanced('gemma3:1b', nodes, loads({ warm: { running: 1, waiting: 4 } }), l);
    expect(d.kind === 'routed' && d.node.health.node_id).toBe('nvme');
    if (d.kind === 'routed') expect(d.etaMs).toBeCloseTo((815 / 450) * 1000, 0);
  });

  it('two slots halve the wait', () => {
    expect(slotWaitMs(1, 2, 40_000)).toBe(40_000);
    expect(slotWaitMs(2, 2, 40_000)).toBe(10_000);
    expect(slotWaitMs(2, 1, 40_000)).toBe(0);
    expect(slotWaitMs(2, 4, 80_000)).toBe(30_000);
  });

  it('a model loading on the guide node counts its remaining load time', () => {
    const nodes = cluster([node('a', { ram_percent: 10, models: ['gemma3:1b'], concurrency: 2 }), node('b', { ram_percent: 50, models: ['gemma3:1b'] })]);
    const d = pickBalanced('gemma3:1b', nodes, (id) => (id === 'a' ? { waiting: 0, running: 1, loadingMs: 15_000 } : idle()), learner);
    expect(d.kind === 'routed' && d.node.health.node_id).toBe('b');
  });

  it('the errors are the guide answers', () => {
    expect(pickBalanced('gemma3:1b', [], idle, learner).kind).toBe('no_healthy_node');
    expect(pickBalanced('missing:7b', cluster([node('a', { installed_models: ['gemma3:1b'] })]), idle, learner).kind).toBe('model_not_found');
  });

  it('an avoided node is passed over when another can serve, even when it is idle', () => {
    const nodes = cluster([node('a', { ram_percent: 10, models: ['gemma3:1b'] }), node('b', { ram_percent: 60, models: ['gemma3:1b'] })]);
    const d = pickBalanced('gemma3:1b', nodes, loads({ b: { running: 1, waiting: 5 } }), learner, new Set(['a']));
    expect(d.kind === 'routed' && d.node.health.node_id).toBe('b');
  });

  it('a node that does not report installed models is not loaded cold while others report having it', () => {
    const nodes = cluster([
      node('warm', { ram_percent: 70, models: ['gemma3:1b'] }),
      node('silent', { ram_percent: 5 }),
      node('has', { ram_percent: 80, installed_models: ['gemma3:1b'] }),
    ]);
    const d = pickBalanced('gemma3:1b', nodes, loads({ warm: { running: 1, waiting: 6 } }), learner);
    expect(d.kind === 'routed' && d.node.health.node_id).toBe('has');
  });
});

describe('balanced through the routing index', () => {
  it('gives the same answers as from the ordered list, on random busy clusters', () => {
    for (let seed = 1; seed <= 500; seed++) {
      const r = rng(seed);
      const hs: NodeHealth[] = [];
      for (let i = 0; i < 1 + Math.floor(r() * 10); i++) {
        const some = () => MODELS.filter(() => r() < 0.4);
        hs.push(node(`n${i}`, { ram_percent: Math.floor(r() * 90), models: some(), ...(r() < 0.8 ? { installed_models: some() } : {}) }));
      }
      const ordered = cluster(hs);
      const index = new RoutingIndex(ordered);
      const busy = new Map(ordered.map((n) => [n.health.node_id, { waiting: Math.floor(r() * 4), running: Math.floor(r() * 2) }]));
      const load = (id: string): NodeLoad => busy.get(id) ?? { waiting: 0, running: 0 };
      const learner = randomLearner(r, ordered.map((n) => n.health.node_id));
      for (const model of MODELS) {
        const a = pickBalanced(model, ordered, load, learner);
        const b = balancedFrom(model, index.pick(model), index.candidates(model), load, learner);
        expect({ seed, model, node: b.kind === 'routed' ? b.node.health.node_id : b.kind }).toEqual({ seed, model, node: a.kind === 'routed' ? a.node.health.node_id : a.kind });
      }
    }
  });

  it('skips the walk of cold candidates a caller remembers as all busy, with the same answers, and remembers only truly busy lists', () => {
    let remembered = 0;
    let skipped = 0;
    for (let seed = 1; seed <= 500; seed++) {
      const r = rng(seed);
      const ordered = cluster(everyModelInstalled(r, 10, 0.4));
      const index = new RoutingIndex(ordered);
      // Mostly busy clusters, so that many lists have no free slot.
      const busy = new Map(ordered.map((n) => [n.health.node_id, { waiting: Math.floor(r() * 4), running: r() < 0.85 ? 2 : 0 }]));
      const load = (id: string): NodeLoad => busy.get(id) ?? { waiting: 0, running: 0 };
      const learner = randomLearner(r, ordered.map((n) => n.health.node_id));
      const seen = new Set<readonly NodeView[]>();
      const first: FreeScan = { noneFree: () => false, sawNoneFree: (pool) => void seen.add(pool) };
      for (const model of MODELS) {
        const want = normalizeModel(model);
        const a = balancedFrom(model, index.pick(model), index.candidates(model), load, learner, undefined, undefined, first);
        for (const pool of seen) {
          // Remembered: every node of the list that does not have the model loaded is busy.
          for (const n of pool) if (!n.loaded.has(want)) expect(load(n.health.node_id).waiting + load(n.health.node_id).running).toBeGreaterThanOrEqual(n.health.concurrency ?? 1);
        }
        remembered += seen.size;
        // Asked again with the memory (nothing changed): the same answer, without that walk.
        const walked: string[] = [];
        const counting = (id: string): NodeLoad => (walked.push(id), load(id));
        const cands = index.candidates(model);
        const memo: FreeScan = { noneFree: (pool) => seen.has(pool), sawNoneFree: () => undefined };
        const b = balancedFrom(model, index.pick(model), cands, counting, learner, undefined, undefined, memo);
        expect({ seed, model, b: b.kind === 'routed' ? [b.node.health.node_id, b.routing, b.avoidedColdLoad] : b.kind }).toEqual({ seed, model, b: a.kind === 'routed' ? [a.node.health.node_id, a.routing, a.avoidedColdLoad] : a.kind });
        if (seen.has(cands.installed)) {
          skipped++;
          const cold = cands.installed.filter((n) => !n.loaded.has(want)).map((n) => n.health.node_id);
          const g = index.pick(model);
          const gid = g.kind === 'routed' ? g.node.health.node_id : '';
          expect(walked.filter((id) => cold.includes(id) && id !== gid)).toEqual([]);
        }
        seen.clear();
      }
    }
    expect(remembered).toBeGreaterThan(100);
    expect(skipped).toBeGreaterThan(100);
  });

  it('keeps busy warm nodes in order under a stamp, with the same answers as weighing them all, through placements, finished jobs and learning', () => {
    let shortcuts = 0;
    let steps = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const ordered = cluster(everyModelInstalled(r, 60, 0.5));
      const index = new RoutingIndex(ordered);
      // Busy: every slot taken, a backlog here and there (ties of equal nodes included).
      const figures = new Map(ordered.map((n) => [n.health.node_id, { waiting: Math.floor(r() * 3), running: n.health.concurrency ?? 1 }]));
      const load = (id: string): NodeLoad => ({ ...(figures.get(id) ?? { waiting: 0, running: 0 }) });
      const learner = randomLearner(r, ordered.map((n) => n.health.node_id));
      let lowered = 0;
      const plain: FreeScan = { noneFree: () => false, sawNoneFree: () => undefined };
      // As the bridge's Placer does: lists seen with no free slot, and the stamp, both void once a figure went down.
      const noneFreeAt = new Map<readonly NodeView[], number>();
      const stamped: FreeScan = {
        noneFree: (pool) => noneFreeAt.get(pool) === lowered,
        sawNoneFree: (pool) => void noneFreeAt.set(pool, lowered),
        warmStamp: () => `${lowered}:${learner.version}`,
      };
      for (let step = 0; step < 60; step++) {
        const model = MODELS[Math.floor(r() * MODELS.length)]!;
        const cands = index.candidates(model);
        let walked = 0;
        const a = balancedFrom(model, index.pick(model), cands, (id) => (walked++, load(id)), learner, undefined, undefined, plain);
        let asked = 0;
        const counting = (id: string): NodeLoad => (asked++, load(id));
        const b = balancedFrom(model, index.pick(model), cands, counting, learner, undefined, undefined, stamped);
        const what = (d: typeof a) => (d.kind === 'routed' ? [d.node.health.node_id, d.routing, d.etaMs] : [d.kind]);
        expect({ seed, step, model, d: what(b) }).toEqual({ seed, step, model, d: what(a) });
        steps++;
        if (cands.loaded.length >= 8 && asked * 2 < walked) shortcuts++;
        // The placement, as the bridge counts it: one more job waiting there.
        if (a.kind === 'routed') figures.get(a.node.health.node_id)!.waiting++;
        const roll = r();
        if (roll < 0.1) {
          // A job finished somewhere: a figure went down, and the stamp says so.
          const f = figures.get(ordered[Math.floor(r() * ordered.length)]!.health.node_id)!;
          if (f.waiting > 0) f.waiting--;
          lowered++;
        } else if (roll < 0.15) {
          learner.observe(ordered[Math.floor(r() * ordered.length)]!.health.node_id, model, { prompt_eval_duration_ms: r() * 3000, eval_duration_ms: 1000 + r() * 60_000 });
        }
      }
    }
    expect(steps).toBe(300 * 60);
    // The order was used, not just built: most answers on large lists came without the walk.
    expect(shortcuts).toBeGreaterThan(1000);
  });
});
