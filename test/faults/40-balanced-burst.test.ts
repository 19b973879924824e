import { afterAll, describe, expect, it } from 'vitest';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { httpPortOf, report, requireBuilt, routable, tally, withDump, World, type Proc } from './harness.js';

requireBuilt();

// Row 40: balanced routing with built programs (bridge, workers at --concurrency 1, the Ollama
// simulator at 10x). Durations below are the simulator's, i.e. a Pi 5's (wall time x speed).
// The bridge is told the profile's figures as an operator would (--default-answer-time,
// --default-load-time): a burst arrives before the first answer could teach it anything.
const SPEED = 10;
const N = 30;
/** gemma3:1b on a Pi 5: about 60 tokens at ~12 tokens/s; a cold load from microSD about 10 s. */
const FLAGS = ['--routing', 'balanced', '--default-answer-time', '6s', '--default-load-time', '10s'];

interface Run {
  /** From the burst's send to its last answer, in the simulator's time (ms). */
  makespan: number;
  answers: InferenceResponse[];
  perNode: Record<string, number>;
  stats: Record<string, unknown>;
}

async function burst(w: World, bridge: Proc, prefix: string, count: number): Promise<Run> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  const t0 = Date.now();
  await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 60, seed: i } })));
  const all = await withDump(w, () => w.allAnswered(ids, 120_000));
  const makespan = (Date.now() - t0) * SPEED;
  const t = tally(all, ids);
  expect(t.twice).toEqual([]);
  expect(t.errors).toEqual([]);
  const port = await httpPortOf(bridge);
  const stats = (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as Record<string, unknown>;
  return { makespan, answers: ids.map((id) => all.get(id)![0]!), perNode: t.perNode, stats };
}

/** One answer's time on its node once started (the simulator's): total minus load. */
const busyMs = (a: InferenceResponse): number => (a.total_duration_ms ?? 0) - (a.load_duration_ms ?? 0);
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
  for (const id of ids) w.startWorker(id, ['--concurrency', '1']);
  const bridge = w.startBridge('bridge-a', FLAGS);
  for (const id of ids) await withDump(w, () => w.healthy(id, 30_000));
  await withDump(w, () => routable(bridge, ids));
  return { w, bridge };
}

describe('row 40: balanced routing, measured with real processes', () => {
  const figures: Record<string, string | number> = {};
  const worlds: World[] = [];
  afterAll(async () => {
    await Promise.all(worlds.map((w) => w.close()));
    if (Object.keys(figures).length > 0) report({ row: 40, title: 'Balanced routing: a burst over warm nodes, a cold load that pays, a wait that is cheaper', figures });
  });

  it('a burst onto 3 nodes that all have the model loaded finishes within 1.25x an even split', async () => {
    const { w, bridge } = await world('row40a', [['gemma3:1b'], ['gemma3:1b'], ['gemma3:1b']]);
    worlds.push(w);
    const run = await burst(w, bridge, 'warm', N);
    const even = (mean(run.answers.map(busyMs)) * N) / 3;
    const ratio = run.makespan / even;
    figures['warm burst: per node'] = JSON.stringify(run.perNode);
    figures['warm burst: makespan / even split'] = ratio.toFixed(2);
    expect(Object.values(run.perNode).sort()).toEqual([10, 10, 10]);
    expect(run.answers.every((a) => a.routing === 'sticky')).toBe(true);
    expect(ratio, `${run.makespan} ms against an even split of ${even.toFixed(0)} ms`).toBeLessThanOrEqual(1.25);
  });

  it('when a cold load pays off, loads the model on idle nodes and finishes within 1.35x the best split', async () => {
    const { w, bridge } = await world('row40b', [['gemma3:1b'], [], []]);
    worlds.push(w);
    const run = await burst(w, bridge, 'cold', N);
    const answer = mean(run.answers.map(busyMs));
    const load = (node: string): number => Math.max(0, ...run.answers.filter((a) => a.node_id === node).map((a) => a.load_duration_ms ?? 0));
    const best = bestSplit(N, answer, [0, load('pi-b') || 10_000, load('pi-c') || 10_000]);
    const ratio = run.makespan / best;
    figures['cold load pays: per node'] = JSON.stringify(run.perNode);
    figures['cold load pays: makespan / best split'] = ratio.toFixed(2);
    figures['cold load pays: stats'] = JSON.stringify({ spills: run.stats['spills'], cold_loads: run.stats['cold_loads'], moves: run.stats['moves'] });
    expect(run.perNode['pi-b'] ?? 0).toBeGreaterThan(0);
    expect(run.perNode['pi-c'] ?? 0).toBeGreaterThan(0);
    expect(ratio, `${run.makespan} ms against a best split of ${best.toFixed(0)} ms`).toBeLessThanOrEqual(1.35);
  });

  it('when waiting is cheaper than a load, there is no cold load at all', async () => {
    const { w, bridge } = await world('row40c', [['gemma3:1b'], []]);
    worlds.push(w);
    // Two jobs wait 6 and 12 s on pi-a; a load on pi-b takes 10 s, then the answer: no gain.
    const run = await burst(w, bridge, 'wait', 3);
    figures['waiting cheaper: per node'] = JSON.stringify(run.perNode);
    figures['waiting cheaper: cold loads'] = Number(run.stats['cold_loads']);
    expect(run.perNode).toEqual({ 'pi-a': 3 });
    expect(run.answers.every((a) => (a.load_duration_ms ?? 0) < 1000)).toBe(true);
    expect(run.stats['cold_loads']).toBe(0);
    expect(Number(run.stats['avoided_cold_loads'])).toBeGreaterThan(0);
  });
});
