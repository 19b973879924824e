import { afterAll, describe, expect, it } from 'vitest';
import { coldPays, lateNodes, N, waitCheaper, warmBurst, type Run } from './burst.js';
import { report, requireBuilt } from './harness.js';

requireBuilt();

// Row 40: balanced routing with built programs (bridge, workers at --concurrency 1, the Ollama
// simulator at 10x); the setup and the measures are shared with the bench's P9 row (burst.ts).

/** Nothing answered twice, no error answer. */
function clean(run: Run): void {
  expect(run.twice).toEqual([]);
  expect(run.errors).toEqual([]);
}

describe('row 40: balanced routing, measured with real processes', () => {
  const figures: Record<string, string | number> = {};
  afterAll(() => {
    if (Object.keys(figures).length > 0) report({ row: 40, title: 'Balanced routing: a burst over warm nodes, a cold load that pays, a wait that is cheaper, nodes that come up after a burst', figures });
  });

  it('a burst onto 3 nodes that all have the model loaded finishes within 1.25x an even split', async () => {
    const { run, even, ratio } = await warmBurst('row40a');
    clean(run);
    figures['warm burst: per node'] = JSON.stringify(run.perNode);
    figures['warm burst: makespan / even split'] = ratio.toFixed(2);
    // Placed 10/10/10; a node that runs ahead may take a job or two from another (moves).
    for (const id of ['pi-a', 'pi-b', 'pi-c']) expect(run.perNode[id], id).toBeGreaterThanOrEqual(8);
    expect(run.answers.every((a) => a.routing === 'sticky')).toBe(true);
    expect(ratio, `${run.makespan} ms against an even split of ${even.toFixed(0)} ms`).toBeLessThanOrEqual(1.25);
  });

  it('when a cold load pays off, loads the model on idle nodes and finishes within 1.35x the best split', async () => {
    const { run, best, ratio } = await coldPays('row40b');
    clean(run);
    expect(run.answers).toHaveLength(N);
    figures['cold load pays: per node'] = JSON.stringify(run.perNode);
    figures['cold load pays: makespan / best split'] = ratio.toFixed(2);
    figures['cold load pays: counters'] = JSON.stringify({ spills: run.stats['spills'], cold_loads: run.stats['cold_loads'], moves: run.stats['moves'] });
    expect(run.perNode['pi-b'] ?? 0).toBeGreaterThan(0);
    expect(run.perNode['pi-c'] ?? 0).toBeGreaterThan(0);
    expect(ratio, `${run.makespan} ms against a best split of ${best.toFixed(0)} ms`).toBeLessThanOrEqual(1.35);
  });

  it('when waiting is cheaper than a load, there is no cold load at all', async () => {
    // Two jobs wait about 5 and 10 s on pi-a; a load on pi-b takes 10 s before its answer: no gain.
    const { run, coldLoads } = await waitCheaper('row40c');
    clean(run);
    figures['waiting cheaper: per node'] = JSON.stringify(run.perNode);
    figures['waiting cheaper: cold loads'] = coldLoads;
    expect(run.perNode).toEqual({ 'pi-a': 3 });
    expect(run.answers.every((a) => (a.load_duration_ms ?? 0) < 1000)).toBe(true);
    expect(run.stats['cold_loads']).toBe(0);
    expect(Number(run.stats['avoided_cold_loads'])).toBeGreaterThan(0);
  });

  it('a burst queued on the only node up spreads to nodes that come up after it, within 1.25x the best split from then', async () => {
    const { run, joinMs, best, ratio } = await lateNodes('row40d');
    clean(run);
    expect(run.answers).toHaveLength(N);
    figures['late nodes: per node'] = JSON.stringify(run.perNode);
    figures['late nodes: all three routable after (ms)'] = joinMs;
    figures['late nodes: makespan / best split from then'] = ratio.toFixed(2);
    figures['late nodes: moves'] = Number(run.stats['moves']);
    // Every job was queued on pi-a; the others got theirs by at least one move each.
    expect(Number(run.stats['moves'])).toBeGreaterThanOrEqual((run.perNode['pi-b'] ?? 0) + (run.perNode['pi-c'] ?? 0));
    for (const id of ['pi-b', 'pi-c']) expect(run.perNode[id] ?? 0, id).toBeGreaterThanOrEqual(5);
    expect(ratio, `${run.makespan} ms against a best split of ${best.toFixed(0)} ms (all routable after ${joinMs} ms)`).toBeLessThanOrEqual(1.25);
  });
});
