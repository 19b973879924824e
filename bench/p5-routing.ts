/**
 * P5: the routing decision in memory at 10, 100 and 1,000 nodes, as the bridge makes it: on
 * the RoutingIndex built once per registry snapshot. The model asked for is loaded nowhere, so
 * both passes of the routing run (the slower case). And the balanced rule (the default) on a
 * cluster with no free slot anywhere, where it weighs every node that has the model.
 */
import type { NodeHealth } from '../src/contracts/types.js';
import { balancedFrom, type NodeLoad } from '../src/router/balanced.js';
import { CostLearner } from '../src/router/learner.js';
import { RoutingIndex } from '../src/router/routing-index.js';
import { eligibleInOrder, toNodeView, type NodeView } from '../src/router/routing.js';
import { fmtNum, median, nowMs, type RowResult } from './lib.js';

export function syntheticNodes(count: number, now = Date.now()): NodeView[] {
  const t = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };
  const views: NodeView[] = [];
  for (let i = 0; i < count; i++) {
    const h: NodeHealth = {
      node_id: `pi-${String(i).padStart(4, '0')}`,
      cpu_percent: (i * 7) % 100,
      ram_percent: 10 + ((i * 13) % 75),
      temp_celsius: 40 + (i % 30),
      models: i % 10 === 3 ? ['gemma3:1b'] : ['llama3.2:3b'],
      installed_models: ['gemma3:1b', 'llama3.2:3b', 'qwen2.5:0.5b'],
      available: true,
      last_seen: new Date(now).toISOString(),
    };
    views.push(toNodeView(h, true, now, t));
  }
  return views;
}

/** Microseconds per call of `decide` (median of 7 rounds after a warm-up). */
function timePer(count: number, decide: () => string): number {
  const iterations = Math.max(2000, Math.floor(2_000_000 / count));
  let sink = 0;
  for (let i = 0; i < 1000; i++) sink += decide().length;
  const samples: number[] = [];
  for (let r = 0; r < 7; r++) {
    const t0 = nowMs();
    for (let i = 0; i < iterations; i++) sink += decide().length;
    samples.push(((nowMs() - t0) * 1000) / iterations);
  }
  if (sink < 0) throw new Error('unreachable');
  return median(samples);
}

function timePerDecision(count: number, model: string): number {
  const index = new RoutingIndex(eligibleInOrder(syntheticNodes(count)));
  return timePer(count, () => index.pick(model).kind);
}

/**
 * The balanced rule as the bridge runs it (the guide's pick and the candidates from the index,
 * then `balancedFrom`) on a cluster where every node is busy (3 waiting, 1 running, no free
 * slot): every node with the model is weighed, the worst case of a backlog.
 */
function timePerBalancedDecision(count: number, model: string): number {
  const index = new RoutingIndex(eligibleInOrder(syntheticNodes(count)));
  const learner = new CostLearner();
  const busy: NodeLoad = { waiting: 3, running: 1 };
  return timePer(count, () => {
    const guide = index.pick(model);
    if (guide.kind !== 'routed') return guide.kind;
    return balancedFrom(model, guide, index.candidates(model), () => busy, learner).kind;
  });
}

export async function runP5(): Promise<RowResult[]> {
  const cold = 'qwen2.5:0.5b';
  const us10 = timePerDecision(10, cold);
  const us100 = timePerDecision(100, cold);
  const us1000 = timePerDecision(1000, cold);
  const ratio = us1000 / us10;
  // A model loaded on a tenth of the nodes (gemma3:1b in syntheticNodes), every node busy.
  const busy10 = timePerBalancedDecision(10, 'gemma3:1b');
  const busy1000 = timePerBalancedDecision(1000, 'gemma3:1b');
  return [
    {
      row: 'P5',
      measure: 'routing decision at 1,000 nodes (us)',
      detail: `10: ${fmtNum(us10, 3)} us, 100: ${fmtNum(us100, 3)} us, 1,000: ${fmtNum(us1000, 3)} us (model loaded nowhere: worst case)`,
      value: us1000,
      goal: '< 50 us',
      met: us1000 < 50,
    },
    {
      row: 'P5',
      measure: 'routing decision 1,000 / 10 nodes',
      detail: `${fmtNum(us1000, 3)} us / ${fmtNum(us10, 3)} us`,
      value: ratio,
      goal: '<= 10x',
      met: ratio <= 10,
    },
    {
      row: 'P5',
      measure: '--routing balanced decision at 1,000 nodes, every node busy (us)',
      detail: `10: ${fmtNum(busy10, 3)} us, 1,000: ${fmtNum(busy1000, 3)} us = ${fmtNum(busy1000 / busy10, 1)}x (the model loaded on a tenth of the nodes, none with a free slot: each is weighed)`,
      value: busy1000,
      goal: '< 50 us',
      met: busy1000 < 50,
    },
  ];
}
