import { describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { eligibleInOrder, nextHeld, toNodeView, type Held, type NodeView } from '../../src/router/routing.js';
import { buildCluster, spec } from '../../src/policy-sim/cluster.js';
import { BridgeView } from '../../src/policy-sim/view.js';

const T = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000, readmitTemp: 70, readmitRam: 85 };
const SEEN = '2026-01-19T12:00:00Z';
const NOW = Date.parse(SEEN) + 1000;

function node(over: Partial<NodeHealth> = {}): NodeHealth {
  return { node_id: 'n', cpu_percent: 10, ram_percent: 50, temp_celsius: 50, models: [], available: true, last_seen: SEEN, ...over };
}

/** Feed a node's reports one after another, as the registry does, and return each view. */
function walk(reports: Partial<NodeHealth>[]): NodeView[] {
  let held: Held | undefined;
  return reports.map((over) => {
    const h = node(over);
    held = nextHeld(h, held, T);
    return toNodeView(h, true, NOW, T, held);
  });
}

describe('a node excluded for temperature or RAM comes back only below the readmit threshold', () => {
  it('stays out while it cools from 76 to 70 °C, and comes back at 69.9 °C', () => {
    const views = walk([{ temp_celsius: 76 }, { temp_celsius: 74 }, { temp_celsius: 70 }, { temp_celsius: 69.9 }]);
    expect(views.map((v) => [v.eligible, v.excludedReason, v.hysteresis ?? false])).toEqual([
      [false, 'temperature', false],
      [false, 'temperature', true],
      [false, 'temperature', true],
      [true, undefined, false],
    ]);
  });

  it('a node that never went over 75 °C is eligible at 74 °C (no memory, no hysteresis)', () => {
    expect(walk([{ temp_celsius: 74 }, { temp_celsius: 75 }]).map((v) => v.eligible)).toEqual([true, true]);
  });

  it('stays out for RAM from 90.1 % down to 85 %, and comes back at 84.9 %', () => {
    const views = walk([{ ram_percent: 90.1 }, { ram_percent: 88 }, { ram_percent: 85 }, { ram_percent: 84.9 }]);
    expect(views.map((v) => [v.eligible, v.excludedReason, v.hysteresis ?? false])).toEqual([
      [false, 'ram', false],
      [false, 'ram', true],
      [false, 'ram', true],
      [true, undefined, false],
    ]);
  });

  it('a thermal sensor that disappears (null) ends the temperature hold', () => {
    expect(walk([{ temp_celsius: 80 }, { temp_celsius: null }]).map((v) => v.eligible)).toEqual([false, true]);
  });

  it('the hold outlives a stale spell: a node that comes back still warm stays out', () => {
    let held = nextHeld(node({ temp_celsius: 80 }), undefined, T);
    const stale = toNodeView(node({ temp_celsius: 72 }), false, NOW, T, (held = nextHeld(node({ temp_celsius: 72 }), held, T)));
    expect(stale.excludedReason).toBe('stale');
    const back = toNodeView(node({ temp_celsius: 72 }), true, NOW, T, nextHeld(node({ temp_celsius: 72 }), held, T));
    expect([back.eligible, back.excludedReason, back.hysteresis]).toEqual([false, 'temperature', true]);
  });

  it('without readmit thresholds the guide rule holds (back at exactly the maximum)', () => {
    const t = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };
    const held = nextHeld(node({ temp_celsius: 75 }), nextHeld(node({ temp_celsius: 80 }), undefined, t), t);
    expect(toNodeView(node({ temp_celsius: 75 }), true, NOW, t, held).eligible).toBe(true);
  });
});

describe('hysteresis through the simulators: heat and memory move, the routing follows', () => {
  // The policy simulator's bridge view decides eligibility with nextHeld and exclusionOf above,
  // on the temperature of src/simulator/thermal.ts and the RAM its loaded models take.
  const eligibleIds = (view: BridgeView): string[] => eligibleInOrder(view.views).map((v) => v.health.node_id);

  it('a node heated past 75 °C under load is excluded, and readmitted only once it cools below 70 °C', () => {
    const nodes = buildCluster(3);
    const view = new BridgeView(nodes, true, () => undefined);
    const n = nodes[0]!;
    const seen: { t: number; temp: number; eligible: boolean; reason?: string; routed: boolean }[] = [];
    const beat = (t: number): void => {
      const v = view.heartbeat(n, t);
      seen.push({ t, temp: v.health.temp_celsius!, eligible: v.eligible, reason: v.excludedReason, routed: eligibleIds(view).includes(n.id) });
    };
    let t = 0;
    n.running = 1; // busy: the thermal model heats toward its maximum (82 °C)
    while (t < 3_600_000 && (seen.length === 0 || seen.at(-1)!.eligible)) beat((t += 5_000));
    for (let k = 0; k < 24; k++) beat((t += 5_000)); // two more minutes under load
    n.running = 0; // idle: it cools toward ambient
    const cooling = seen.length;
    while (t < 7_200_000 && !seen.at(-1)!.eligible) beat((t += 5_000));

    const out = seen.findIndex((s) => !s.eligible);
    expect(out).toBeGreaterThan(0);
    // On the way up a node at 70-75 °C was never over the limit: eligible, routed to.
    expect(seen.slice(0, out).some((s) => s.temp > 70 && s.temp <= 75 && s.eligible && s.routed)).toBe(true);
    expect(seen[out]).toMatchObject({ reason: 'temperature', routed: false });
    expect(seen[out]!.temp).toBeGreaterThan(75);
    expect(seen[out - 1]!.temp).toBeLessThanOrEqual(75);
    // On the way down it stays out from 75 to 70 °C, and comes back at the first report below 70.
    const back = seen.length - 1;
    expect(seen[back]!.eligible && seen[back]!.routed).toBe(true);
    expect(seen[back]!.temp).toBeLessThan(70);
    const held = seen.slice(cooling, back).filter((s) => s.temp <= 75);
    expect(held.length).toBeGreaterThan(1);
    expect(held.every((s) => !s.eligible && !s.routed && s.reason === 'temperature' && s.temp >= 70)).toBe(true);
  });

  it('a node over 90 % RAM is excluded, stays out at 86.5 %, and is readmitted below 85 %', () => {
    const nodes = buildCluster(3);
    const n = nodes[1]!; // the 8 GB board
    const hold = (model: string, until: number): void => {
      n.copies.set(model, { readyAt: 0, active: 0, expiresAt: until, lastUsed: 0 });
      n.usedRam += spec(model).memoryBytes;
    };
    // llama3.1:8b and tinyllama: 86.5 % of the board, eligible (it never went over 90 %).
    hold('llama3.1:8b', 10_000_000);
    hold('tinyllama:latest', 300_000);
    const view = new BridgeView(nodes, false, () => undefined);
    const at = (t: number) => {
      const v = view.heartbeat(n, t);
      return { ram: v.health.ram_percent, eligible: v.eligible, reason: v.excludedReason, routed: eligibleIds(view).includes(n.id) };
    };
    const first = at(5_000);
    expect(first.ram).toBeGreaterThan(85);
    expect(first.ram).toBeLessThanOrEqual(90);
    expect(first).toMatchObject({ eligible: true, routed: true });
    // qwen2.5:0.5b loads too: over 90 %, out.
    hold('qwen2.5:0.5b', 100_000);
    const over = at(10_000);
    expect(over.ram).toBeGreaterThan(90);
    expect(over).toMatchObject({ eligible: false, reason: 'ram', routed: false });
    // qwen's keep-alive ends: back to 86.5 %, still out (hysteresis).
    const between = at(105_000);
    expect(between.ram).toBe(first.ram);
    expect(between).toMatchObject({ eligible: false, reason: 'ram', routed: false });
    // tinyllama's ends too: under 85 %, back.
    const below = at(305_000);
    expect(below.ram).toBeLessThan(85);
    expect(below).toMatchObject({ eligible: true, routed: true });
  });
});
