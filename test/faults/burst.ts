/**
 * Balanced routing measured with the built programs: the bridge, workers at --concurrency 1 and
 * the Ollama simulator at 10x, in three scenarios. Shared by fault row 40 (which asserts the
 * goals) and the bench's P9 row (which prints the same ratios): one setup, one way of measuring.
 * Times compared are wall-clock ms.
 *
 * The bridge is told the profile's figures as an operator would (--default-answer-time,
 * --default-load-time): a burst arrives before the first answer could teach it anything.
 */
import type { InferenceResponse } from '../../src/contracts/types.js';
import { httpPortOf, routable, tally, withDump, World, type Proc } from './harness.js';

export const SPEED = 10;
/** Requests in the warm and cold bursts. */
export const N = 30;
/** gemma3:1b on a Pi 5: about 60 tokens at ~12 tokens/s; a cold load from microSD about 10 s. */
const FLAGS = ['--routing', 'balanced', '--default-answer-time', '6s', '--default-load-time', '10s'];
const WORKER_FLAGS = ['--concurrency', '1'];

export interface Run {
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
  /** Requests answered more than once, and error answers (both must stay empty). */
  twice: string[];
  errors: string[];
  stats: Record<string, unknown>;
}

/** Send `count` requests at once and measure how they went; `meanwhile` runs right after the send. */
async function burst(w: World, bridge: Proc, prefix: string, count: number, meanwhile?: () => Promise<void>): Promise<Run> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  const t0 = Date.now();
  await w.send(ids.map((request_id, i) => ({ request_id, options: { num_predict: 60, seed: i } })));
  await meanwhile?.();
  const all = await withDump(w, () => w.allAnswered(ids, 120_000));
  const endAt = new Map<string, number>();
  for (const [entry, fields] of await w.admin.xrange(w.n.responses, '-', '+')) {
    const doc = JSON.parse(fields[1] ?? '{}') as InferenceResponse;
    if (doc.done && ids.includes(doc.request_id)) endAt.set(doc.request_id, Number(entry.split('-')[0]));
  }
  const makespan = Math.max(...endAt.values()) - t0;
  const t = tally(all, ids);
  const port = await httpPortOf(bridge);
  const stats = (await (await fetch(`http://127.0.0.1:${port}/stats`)).json()) as Record<string, unknown>;
  const answers = ids.map((id) => all.get(id)![0]!);
  const span: Record<string, number> = {};
  for (const a of answers) span[a.node_id!] = Math.max(span[a.node_id!] ?? 0, endAt.get(a.request_id)! - t0);
  return { makespan, span, answers, perNode: t.perNode, twice: t.twice, errors: t.errors, stats };
}

const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);

/** The best makespan of `n` answers of `answerMs` each over nodes that first need `loadMs[i]`. */
/**
 * The best makespan when one node works alone for `joinMs` and two more join then: the work
 * left at the join, shared by three (jobs taken as divisible: a little under what whole jobs allow).
 */
export function joinSplit(n: number, answerMs: number, joinMs: number): number {
  return joinMs + Math.max(0, n * answerMs - joinMs) / 3;
}

export function bestSplit(n: number, answerMs: number, loadMs: number[]): number {
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

/**
 * Nodes pi-a, pi-b, ... with the given models loaded and a bridge; the first `up` nodes (all by
 * default) get a worker and are routable before `fn` runs (`w.startWorker(id, WORKER_FLAGS)`
 * starts the others); then everything stops, whatever happened.
 */
async function inWorld<T>(label: string, loaded: string[][], fn: (w: World, bridge: Proc, ids: string[]) => Promise<T>, up = loaded.length): Promise<T> {
  const ids = loaded.map((_, i) => `pi-${String.fromCharCode(97 + i)}`);
  const w = new World({ nodes: ids.map((id, i) => ({ id, loaded: loaded[i]! })), speed: SPEED, label });
  try {
    await w.start();
    const first = ids.slice(0, up);
    for (const id of first) w.startWorker(id, WORKER_FLAGS);
    const bridge = w.startBridge('bridge-a', FLAGS);
    for (const id of first) await withDump(w, () => w.healthy(id, 30_000));
    await withDump(w, () => routable(bridge, first));
    return await fn(w, bridge, ids);
  } finally {
    await w.close();
  }
}

/** (a) 30 requests onto 3 nodes that all have the model loaded; `ratio` = makespan / an even split. */
export async function warmBurst(label: string): Promise<{ run: Run; even: number; ratio: number }> {
  return inWorld(label, [['gemma3:1b'], ['gemma3:1b'], ['gemma3:1b']], async (w, bridge) => {
    const run = await burst(w, bridge, 'warm', N);
    // An even split: the same work shared equally by the 3 nodes.
    const even = Object.values(run.span).reduce((a, b) => a + b, 0) / 3;
    return { run, even, ratio: run.makespan / even };
  });
}

/**
 * (b) 30 requests, the model loaded on 1 of 3 nodes, where loading it on the others pays;
 * `ratio` = makespan / the best split knowing everything in advance.
 */
export async function coldPays(label: string): Promise<{ run: Run; best: number; ratio: number }> {
  return inWorld(label, [['gemma3:1b'], [], []], async (w, bridge) => {
    const run = await burst(w, bridge, 'cold', N);
    // The best split: each cold node pays its load once (as measured, wall time), every job
    // takes the mean time a job took without a load.
    const loadMs = (a: InferenceResponse): number => (a.load_duration_ms ?? 0) / SPEED;
    const load = (node: string): number => Math.max(0, ...run.answers.filter((a) => a.node_id === node).map(loadMs));
    const perJob = mean(Object.entries(run.span).map(([node, ms]) => (ms - load(node)) / run.perNode[node]!));
    const best = bestSplit(N, perJob, [0, load('pi-b') || 10_000 / SPEED, load('pi-c') || 10_000 / SPEED]);
    return { run, best, ratio: run.makespan / best };
  });
}

/**
 * (c) 3 requests, the model loaded on 1 of 2 nodes: two jobs wait about 5 and 10 s on pi-a, a
 * load on pi-b takes 10 s before its answer, so waiting is cheaper; `coldLoads` as the bridge
 * counts them, `slowLoads` the answers that paid a load (over 1 s of `load_duration`).
 */
export async function waitCheaper(label: string): Promise<{ run: Run; coldLoads: number; slowLoads: number }> {
  return inWorld(label, [['gemma3:1b'], []], async (w, bridge) => {
    const run = await burst(w, bridge, 'wait', 3);
    return { run, coldLoads: Number(run.stats['cold_loads']), slowLoads: run.answers.filter((a) => (a.load_duration_ms ?? 0) >= 1000).length };
  });
}

/**
 * (d) 30 requests onto 3 nodes that all have the model loaded, sent while only pi-a's worker is
 * up: all 30 queue there. pi-b's and pi-c's workers start right after the send; once the bridge
 * sees them, the jobs still waiting on pi-a should move. `ratio` = makespan / `joinSplit` from
 * the moment the bridge routes to all three (`joinMs`, after the send).
 */
export async function lateNodes(label: string): Promise<{ run: Run; joinMs: number; best: number; ratio: number }> {
  const g = ['gemma3:1b'];
  return inWorld(
    label,
    [g, g, g],
    async (w, bridge, ids) => {
      let t0 = 0;
      let joinMs = 0;
      const run = await burst(w, bridge, 'late', N, async () => {
        t0 = Date.now();
        for (const id of ids.slice(1)) w.startWorker(id, WORKER_FLAGS);
        await withDump(w, () => routable(bridge, ids, 30_000));
        joinMs = Date.now() - t0;
      });
      // pi-a worked without a break from the send: its time per job is the answer time here.
      const perJob = run.span['pi-a']! / run.perNode['pi-a']!;
      const best = joinSplit(N, perJob, joinMs);
      return { run, joinMs, best, ratio: run.makespan / best };
    },
    1,
  );
}
