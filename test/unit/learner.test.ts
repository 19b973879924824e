import { describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { DEFAULT_ANSWER_TIME_MS, DEFAULT_LOAD_TIME_MS, CostLearner } from '../../src/router/learner.js';
import type { NodeLoad } from '../../src/router/balanced.js';
import { pickBalanced } from '../../src/router/balanced.js';
import { moveTarget, shouldMove, shouldRenewKeepAlive, unloadChoice } from '../../src/router/moves.js';
import { seededRandom } from '../../src/lib/random.js';
import { eligibleInOrder, toNodeView } from '../../src/router/routing.js';

const SEEN = '2026-01-19T12:00:00Z';
const NOW = Date.parse(SEEN) + 1000;
const T = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };
const node = (id: string, over: Partial<NodeHealth> = {}): NodeHealth => ({
  node_id: id, cpu_percent: 10, ram_percent: 50, temp_celsius: 50, models: [], available: true, last_seen: SEEN, ...over,
});
const cluster = (nodes: NodeHealth[]) => eligibleInOrder(nodes.map((h) => toNodeView(h, true, NOW, T)));
const loads = (m: Record<string, Partial<NodeLoad>>) => (id: string): NodeLoad => ({ waiting: 0, running: 0, ...m[id] });

describe('the cost learner', () => {
  it('answers the defaults before it has seen anything', () => {
    const l = new CostLearner();
    expect(l.answerMs('a', 'gemma3:1b')).toBe(DEFAULT_ANSWER_TIME_MS);
    expect(l.loadMs('a', 'gemma3:1b')).toBe(DEFAULT_LOAD_TIME_MS);
    expect(new CostLearner({ loadMs: 5000, answerMs: 7000 }).loadMs('a', 'x')).toBe(5000);
  });

  it('learns answer time from prompt and eval durations, else total minus load', () => {
    const l = new CostLearner();
    l.observe('a', 'gemma3:1b', { prompt_eval_duration_ms: 1000, eval_duration_ms: 9000, total_duration_ms: 40_000, load_duration_ms: 30_000 });
    expect(l.answerMs('a', 'gemma3:1b')).toBe(10_000);
    l.observe('b', 'gemma3', { total_duration_ms: 30_000, load_duration_ms: 10_000 });
    expect(l.answerMs('b', 'gemma3:latest')).toBe(20_000);
  });

  it('moves toward new samples as a moving average', () => {
    const l = new CostLearner();
    l.observe('a', 'm', { eval_duration_ms: 10_000 });
    l.observe('a', 'm', { eval_duration_ms: 20_000 });
    expect(l.answerMs('a', 'm')).toBe(12_000);
  });

  it('learns a load only from a real cold load, and the node rate from a model of known size', () => {
    const l = new CostLearner();
    l.observe('a', 'small', { load_duration_ms: 3, eval_duration_ms: 100 });
    expect(l.loadMs('a', 'small')).toBe(DEFAULT_LOAD_TIME_MS);
    l.observe('a', 'big', { load_duration_ms: 20_000 }, 2000);
    expect(l.loadMs('a', 'big')).toBe(20_000);
    expect(l.loadRateMbps('a')).toBe(100);
    expect(l.loadMs('a', 'other', 500)).toBe(5000);
    l.noteSize('other2', 1000);
    expect(l.loadMs('a', 'other2')).toBe(10_000);
  });

  it('estimates a model a node never loaded from the sizes nodes publish and that node\'s rate, else the default', () => {
    const l = new CostLearner({ loadMs: 60_000 });
    // The sizes of a health document (installed_sizes_mb); junk entries are skipped.
    l.noteSizes({ 'gemma3:1b': 815, 'llama3.2:3b': 2000, bad: 'x', zero: 0, neg: -5, inf: Infinity });
    l.noteSizes(null);
    l.noteSizes(['gemma3:1b']);
    expect(l.toJSON().sizes).toEqual({ 'gemma3:1b': 815, 'llama3.2:3b': 2000 });
    // No rate yet for any node: the flag's default.
    expect(l.loadMs('pi-a', 'llama3.2:3b')).toBe(60_000);
    // A cold load of gemma3:1b on pi-a (no size passed with it): 815 MB in 4.075 s = 200 MB/s.
    l.observe('pi-a', 'gemma3:1b', { load_duration_ms: 4075, eval_duration_ms: 1000 });
    expect(l.loadRateMbps('pi-a')).toBeCloseTo(200, 6);
    // llama3.2:3b never loaded anywhere: 2000 MB / 200 MB/s on pi-a, the default on pi-b (no rate).
    expect(l.loadMs('pi-a', 'llama3.2:3b')).toBeCloseTo(10_000, 6);
    expect(l.loadMs('pi-b', 'llama3.2:3b')).toBe(60_000);
    expect(l.loadFloorMs('llama3.2:3b')).toBeCloseTo(10_000, 6);
    // A model of unknown size stays at the default even where a rate is known.
    expect(l.loadMs('pi-a', 'qwen2.5:0.5b')).toBe(60_000);
    // Names are normalised like the rest of the learner's: 'gemma3' is 'gemma3:latest', not gemma3:1b.
    l.noteSizes({ gemma3: 3300 });
    expect(l.loadMs('pi-a', 'gemma3:latest')).toBeCloseTo(16_500, 6);
  });

  it('estimates a model never loaded on a node from the same model elsewhere, then the default', () => {
    const l = new CostLearner();
    l.observe('a', 'm', { load_duration_ms: 8000, eval_duration_ms: 4000 });
    l.observe('b', 'm', { load_duration_ms: 12_000, eval_duration_ms: 6000 });
    expect(l.loadMs('c', 'm')).toBe(10_000);
    expect(l.answerMs('c', 'm')).toBe(5000);
    expect(l.loadFloorMs('m')).toBe(8000);
  });

  it('keeps the load floor a lower bound of every node\'s load estimate as loads are learned, going up as well as down', () => {
    const rand = seededRandom(7);
    const l = new CostLearner();
    const models = ['a:1b', 'b:3b', 'c:7b'];
    l.noteSizes({ 'a:1b': 800, 'b:3b': 2000 });
    const nodes = Array.from({ length: 12 }, (_, i) => `pi-${i}`);
    const exactFloor = (m: string): number => Math.min(...[...nodes, 'never-seen'].map((n) => l.loadMs(n, m)));
    for (let i = 0; i < 1200; i++) {
      const n = nodes[Math.floor(rand() * nodes.length)]!;
      const m = models[Math.floor(rand() * models.length)]!;
      // Loads that get slower and faster over time, so learned figures go up as well as down.
      l.observe(n, m, { load_duration_ms: 1000 + rand() * 20_000 * (1 + Math.sin(i / 50)), eval_duration_ms: 500 });
      for (const x of models) expect(l.loadFloorMs(x)).toBeLessThanOrEqual(exactFloor(x) + 1e-9);
    }
    // Recomputed from scratch, the floor is no lower than the one kept up to date (never looser).
    const fresh = CostLearner.fromJSON(l.toJSON());
    for (const x of models) expect(fresh.loadFloorMs(x)).toBeGreaterThanOrEqual(l.loadFloorMs(x) - 1e-9);
  });

  it('with token counts, an answer is the node speed times the model mean lengths, steady under long and short answers', () => {
    const l = new CostLearner();
    // 100 ms per generated token, 20 ms per prompt token; answers of 10 and 390 tokens alternate.
    for (let i = 0; i < 40; i++) {
      const ec = i % 2 === 0 ? 10 : 390;
      l.observe('a', 'm', { prompt_eval_count: 100, prompt_eval_duration_ms: 2000, eval_count: ec, eval_duration_ms: ec * 100 });
    }
    expect(l.answerMs('a', 'm')).toBeCloseTo(100 * 20 + 200 * 100, 6);
    // A faster node: its own speed, the model's lengths learned everywhere.
    l.observe('b', 'm', { prompt_eval_count: 50, prompt_eval_duration_ms: 500, eval_count: 10, eval_duration_ms: 500 });
    expect(l.answerMs('b', 'm')).toBeCloseTo(l.answerMs('a', 'm') / 2, -2);
    const back = CostLearner.fromJSON(JSON.parse(JSON.stringify(l)));
    expect(back.answerMs('a', 'm')).toBe(l.answerMs('a', 'm'));
    expect(back.answerMs('b', 'm')).toBe(l.answerMs('b', 'm'));
  });

  it('ignores garbage fields', () => {
    const l = new CostLearner();
    l.observe('a', 'm', { eval_duration_ms: Number.NaN, load_duration_ms: -5, total_duration_ms: Number.POSITIVE_INFINITY });
    expect(l.answerMs('a', 'm')).toBe(DEFAULT_ANSWER_TIME_MS);
  });

  it('round-trips through JSON with the same answers', () => {
    const l = new CostLearner({ loadMs: 9000 });
    l.observe('a', 'm', { load_duration_ms: 8000, eval_duration_ms: 4000 }, 800);
    l.observe('b', 'n', { eval_duration_ms: 3000 });
    const back = CostLearner.fromJSON(JSON.parse(JSON.stringify(l)), { loadMs: 9000 });
    for (const [n, m] of [['a', 'm'], ['b', 'n'], ['c', 'm'], ['c', 'zz']] as const) {
      expect(back.answerMs(n, m)).toBe(l.answerMs(n, m));
      expect(back.loadMs(n, m)).toBe(l.loadMs(n, m));
    }
    expect(CostLearner.fromJSON('nonsense').answerMs('a', 'm')).toBe(DEFAULT_ANSWER_TIME_MS);
    expect(CostLearner.fromJSON({ answer: { bad: { v: 'x' } } }).answerMs('a', 'm')).toBe(DEFAULT_ANSWER_TIME_MS);
  });
});

describe('moving a waiting job', () => {
  const learner = new CostLearner({ answerMs: 20_000, loadMs: 24_000 });
  const nodes = cluster([node('a', { ram_percent: 10, models: ['m'] }), node('b', { ram_percent: 60, models: ['m'] })]);

  it('moves a job deep in a queue to a warm node that is free', () => {
    const mv = shouldMove({ model: 'm', nodeId: 'a', ahead: 3 }, nodes[0], nodes, loads({ a: { running: 1, waiting: 3 } }), learner);
    expect(mv).toMatchObject({ routing: 'sticky', toEtaMs: 0, fromEtaMs: 50_000, coldLoad: false });
    expect(mv?.node.health.node_id).toBe('b');
  });

  it('does not move for a small gain', () => {
    const mv = shouldMove({ model: 'm', nodeId: 'a', ahead: 1 }, nodes[0], nodes, loads({ a: { running: 1 }, b: { running: 1 } }), learner);
    expect(mv).toBeUndefined();
  });

  it('does not move to a node that is only a little less busy (25 % margin)', () => {
    // Where it is: 0.5 + 2 answers = 50 s; there: 0.5 + 1.5 answers = 40 s, a 20 % gain.
    const mv = shouldMove({ model: 'm', nodeId: 'a', ahead: 3 }, nodes[0], nodes, loads({ a: { running: 1, waiting: 3 }, b: { running: 1, waiting: 1, workMs: 40_000 } }), learner);
    expect(mv).toBeUndefined();
  });

  it('decides the same with the target found once per model as when found for each job', () => {
    // Random clusters and queues: the shared target (what the Mover uses between two moves)
    // never changes a decision.
    const next = seededRandom(7);
    const rnd = { next, int: (k: number): number => Math.floor(next() * k) };
    const models = ['m', 'n', 'o'];
    let compared = 0;
    let moves = 0;
    for (let round = 0; round < 200; round++) {
      const hs = Array.from({ length: 2 + rnd.int(6) }, (_, i) =>
        node(`n${i}`, { ram_percent: rnd.int(80), models: models.filter(() => rnd.next() < 0.4), installed_models: models }));
      const ns = cluster(hs);
      const load = loads(Object.fromEntries(hs.map((h) => [h.node_id, { running: rnd.int(3), waiting: rnd.int(6) }])));
      const from = ns[rnd.int(ns.length)]!;
      const id = from.health.node_id;
      const found = new Map<string, ReturnType<typeof moveTarget>>();
      const targetOf = (m: string) => (found.has(m) ? found.get(m) : found.set(m, moveTarget(m, id, ns, load, learner)).get(m));
      for (let ahead = 0; ahead < 8; ahead++) {
        const job = { model: models[rnd.int(models.length)]!, nodeId: id, ahead };
        const each = shouldMove(job, from, ns, load, learner);
        const once = shouldMove(job, from, ns, load, learner, undefined, targetOf);
        expect(once?.node.health.node_id).toBe(each?.node.health.node_id);
        expect(once?.gainMs).toBe(each?.gainMs);
        compared++;
        if (each !== undefined) moves++;
      }
    }
    expect(compared).toBe(1600);
    expect(moves).toBeGreaterThan(50);
  });

  it('moves everything off a node that is no longer eligible', () => {
    const mv = shouldMove({ model: 'm', nodeId: 'gone', ahead: 0 }, undefined, nodes, loads({}), learner);
    expect(mv?.node.health.node_id).toBe('a');
  });
});

describe('second copies and keep-alive', () => {
  const learner = new CostLearner({ answerMs: 20_000, loadMs: 24_000 });
  const nodes = cluster([node('w', { models: ['m'] }), node('c', { installed_models: ['m'] })]);

  it('starts a second copy once the backlog outgrows the warm copy, not before, and only on a free node', () => {
    const where = (l: ReturnType<typeof loads>): string | undefined => {
      const d = pickBalanced('m', nodes, l, learner);
      return d.kind === 'routed' ? d.node.health.node_id : undefined;
    };
    expect(where(loads({ w: { running: 1 } }))).toBe('w');
    expect(where(loads({ w: { running: 1, waiting: 8 } }))).toBe('c');
    expect(where(loads({ w: { running: 1, waiting: 8 }, c: { running: 1 } }))).toBe('w');
  });

  it('renews only the last warm copy of a model with recent demand, shortly before it expires', () => {
    const base = { warmCopies: 1, lastDemandMs: 0, expiresAtMs: 100_000, now: 50_000 };
    expect(shouldRenewKeepAlive(base)).toBe(true);
    expect(shouldRenewKeepAlive({ ...base, warmCopies: 2 })).toBe(false);
    expect(shouldRenewKeepAlive({ ...base, now: 700_000, expiresAtMs: 720_000 })).toBe(false);
    expect(shouldRenewKeepAlive({ ...base, expiresAtMs: 500_000 })).toBe(false);
  });

  it('picks the model a node over its RAM limit unloads: the least recently used, never-used first, ties by name', () => {
    const used: Record<string, number> = { 'gemma3:1b': 5000, 'llama3.2:3b': 2000, 'qwen2.5:0.5b': 2000 };
    expect(unloadChoice(['gemma3:1b', 'llama3.2:3b'], (m) => used[m])).toBe('llama3.2:3b');
    expect(unloadChoice(['qwen2.5:0.5b', 'gemma3:1b', 'llama3.2:3b'], (m) => used[m])).toBe('llama3.2:3b');
    expect(unloadChoice(['gemma3:1b', 'phi3:mini'], (m) => used[m])).toBe('phi3:mini');
    expect(unloadChoice([], (m) => used[m])).toBeUndefined();
  });
});
