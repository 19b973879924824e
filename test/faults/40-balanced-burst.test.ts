import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { httpPortOf, report, requireBuilt, routable, tally, withDump, World, type Proc } from './harness.js';

requireBuilt();

// Row 40: balanced routing with built programs (bridge, workers at --concurrency 1, the Ollama
// simulator at 10x). Times compared are wall-clock ms.
// The bridge is told the profile's figures as an operator would (--default-answer-time,
// --default-load-time): a burst arrives before the first answer could teach it anything.
const SPEED = 10;
const N = 30;
/** gemma3:1b on a Pi 5: about 60 tokens at ~12 tokens/s; a cold load from microSD about 10 s. */
const FLAGS = ['--routing', 'balanced', '--default-answer-time', '6s', '--default-load-time', '10s'];

interface Run {
  /** From the burst's send to its last answer (ms). */
  makespan: number;
  /**
   * Per node, from the burst's send to its last answer (ms): how long it worked on the burst.
   * Every job is queued at once, so a node that got jobs worked without a break; on a shared,
   * busy machine every job (and the bus's overhead between jobs) takes longer alike, and
   * comparing with these keeps the routing apart from the machine's speed.
   */
  span: Record<string, number>;
  answers: InferenceResponse[];
  perNode: Record<string, number>;
  stats: Record<string, unknown>;
}

async function burst(w: World, bridge: Proc, prefix: string, count: number): Promise<Run> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  const t0 = Date.now();
  await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 60, seed: i } })));
  const all = await withDump(w, () => w.allAnswered(ids, 120_000));
  const endAt = new Map<string, number>();
  for (const [entry, fields] of await w.admin.xrange(w.n.responses, '-', '+')) {
    const doc = JSON.parse(fields[1] ?? '{}') as InferenceResponse;
    if (doc.done && ids.includes(doc.request_id)) endAt.set(doc.request_id, Number(entry.split('-')[0]));
  }
  const makespan = Math.max(...endAt.values()) - t0;
  const t = tally(all, ids);
  expect(t.twice).toEqual([]);
  expect(t.errors).toEqual([]);
  const port = await httpPortOf(bridge);
  const stats = (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as Record<string, unknown>;
  const answers = ids.map((id) => all.get(id)![0]!);
  const span: Record<string, number> = {};
  for (const a of answers) span[a.node_id!] = Math.max(span[a.node_id!] ?? 0, endAt.get(a.request_id)! - t0);
  return { makespan, span, answers, perNode: t.perNode, stats };
}

const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);

/** The best makespan of `n` answers of `answerMs` each over nodes that first need `loadMs[i]`. */
function bestSplit(n: number, answerMs: number, loadMs: number[]): number {
  let best = Number.POSITIVE_INFINITY;
  const go = (i: number, left: number, worst: number): void => {
    if (worst >= best) return;
    if (i === loadMs.length - 1) {
      best = Math.min(best, Math.max(worst, left === 0 ? 0 : loadMs[i]! + left * answerMs));
      return;
    }
    for (let k = 0; k <= left; k++) go(i + 1, left - k, Math.max(worst, k === 0 ? 0 : loadMs[i]! + k * answerMs));
  };
  go(0, n, 0);
  return best;
}

async function world(label: string, loaded: string[][]): Promise<{ w: World; bridge: Proc }> {
  const ids = loaded.map((_, i) => `pi-${String.fromCharCode(97 + i)}`);
  const w = await new World({ nodes: ids.map((id, i) => ({ id, loaded: loaded[i]! })), speed: SPEED, label }).start();
  current = w;
  for (const id of ids) w.startWorker(id, ['--concurrency', '1']);
  const bridge = w.startBridge('bridge-a', FLAGS);
  for (const id of ids) await withDump(w, () => w.healthy(id, 30_000));
  await withDump(w, () => routable(bridge, ids));
  return { w, bridge };
}

let current: World | undefined;

describe('row 40: balanced routing, measured with real processes', () => {
  const figures: Record<string, string | number> = {};
  afterEach(async () => {
    await current?.close();
    current = undefined;
  });
  afterAll(() => {
    if (Object.keys(figures).length > 0) report({ row: 40, title: 'Balanced routing: a burst over warm nodes, a cold load that pays, a wait that is cheaper', figures });
  });

  it('a burst onto 3 nodes that all have the model loaded finishes within 1.25x an even split', async () => {
    const { w, bridge } = await world('row40a', [['gemma3:1b'], ['gemma3:1b'], ['gemma3:1b']]);
    const run = await burst(w, bridge, 'warm', N);
    // An even split: the same work shared equally by the 3 nodes.
    const even = Object.values(run.span).reduce((a, b) => a + b, 0) / 3;
    const ratio = run.makespan / even;
    figures['warm burst: per node'] = JSON.stringify(run.perNode);
    figures['warm burst: makespan / even split'] = ratio.toFixed(2);
    // Placed 10/10/10; a node that runs ahead may take a job or two from another (moves).
    for (const id of ['pi-a', 'pi-b', 'pi-c']) expect(run.perNode[id], id).toBeGreaterThanOrEqual(8);
    expect(run.answers.every((a) => a.routing === 'sticky')).toBe(true);
    expect(ratio, `${run.makespan} ms against an even split of ${even.toFixed(0)} ms`).toBeLessThanOrEqual(1.25);
  });

  it('when a cold load pays off, loads the model on idle nodes and finishes within 1.35x the best split', async () => {
    const { w, bridge } = await world('row40b', [['gemma3:1b'], [], []]);
    const run = await burst(w, bridge, 'cold', N);
    // The best split knowing everything in advance: each cold node pays its load once (as
    // measured, wall time), every job takes the mean time a job took without a load.
    const loadMs = (a: InferenceResponse): number => (a.load_duration_ms ?? 0) / SPEED;
    const load = (node: string): number => Math.max(0, ...run.answers.filter((a) => a.node_id === node).map(loadMs));
    const perJob = mean(Object.entries(run.span).map(([node, ms]) => (ms - load(node)) / run.perNode[node]!));
    const best = bestSplit(N, perJob, [0, load('pi-b') || 10_000 / SPEED, load('pi-c') || 10_000 / SPEED]);
    const ratio = run.makespan / best;
    figures['cold load pays: per node'] = JSON.stringify(run.perNode);
    figures['cold load pays: makespan / best split'] = ratio.toFixed(2);
    figures['cold load pays: counters'] = JSON.stringify({ spills: run.stats['spills'], cold_loads: run.stats['cold_loads'], moves: run.stats['moves'] });
    expect(run.perNode['pi-b'] ?? 0).toBeGreaterThan(0);
    expect(run.perNode['pi-c'] ?? 0).toBeGreaterThan(0);
    expect(ratio, `${run.makespan} ms against a best split of ${best.toFixed(0)} ms`).toBeLessThanOrEqual(1.35);
  });

  it('when waiting is cheaper than a load, there is no cold load at all', async () => {
    const { w, bridge } = await world('row40c', [['gemma3:1b'], []]);
    // Two jobs wait about 5 and 10 s on pi-a; a load on pi-b takes 10 s before its answer: no gain.
    const run = await burst(w, bridge, 'wait', 3);
    figures['waiting cheaper: per node'] = JSON.stringify(run.perNode);
    figures['waiting cheaper: cold loads'] = Number(run.stats['cold_loads']);
    expect(run.perNode).toEqual({ 'pi-a': 3 });
    expect(run.answers.every((a) => (a.load_duration_ms ?? 0) < 1000)).toBe(true);
    expect(run.stats['cold_loads']).toBe(0);
    expect(Number(run.stats['avoided_cold_loads'])).toBeGreaterThan(0);
  });
});
