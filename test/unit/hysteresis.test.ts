import { describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { nextHeld, toNodeView, type Held, type NodeView } from '../../src/router/routing.js';

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
