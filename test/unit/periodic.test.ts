import { afterEach, describe, expect, it } from 'vitest';
import { Periodic } from '../../src/lib/periodic.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A run that takes `ms`, recording when each run started and ended. */
function timedRun(ms: number): { run: () => Promise<void>; starts: number[]; ends: number[] } {
  const starts: number[] = [];
  const ends: number[] = [];
  return {
    starts,
    ends,
    run: async () => {
      starts.push(Date.now());
      await sleep(ms);
      ends.push(Date.now());
    },
  };
}

describe('Periodic', () => {
  const started: Periodic[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((p) => p.stop()));
  });

  it('joins the run in progress instead of starting another', async () => {
    const t = timedRun(30);
    const p = new Periodic(1000, t.run);
    const a = p.runNow();
    const b = p.runNow();
    expect(b).toBe(a);
    await a;
    expect(t.starts).toHaveLength(1);
    // Once it has ended, the next call is a new run.
    await p.runNow();
    expect(t.starts).toHaveLength(2);
  });

  it('counts the interval from the end of one run to the start of the next', async () => {
    const t = timedRun(40);
    const p = new Periodic(20, t.run);
    started.push(p);
    p.start();
    await sleep(250);
    await p.stop();
    expect(t.starts.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < t.starts.length; i++) {
      // Never overlapping, and at least the interval after the previous run ended (timer slack: 2 ms).
      expect(t.starts[i]! - t.ends[i - 1]!).toBeGreaterThanOrEqual(18);
    }
  });

  it('stop() waits for the run in progress, and no run starts after it', async () => {
    const t = timedRun(100);
    const p = new Periodic(10, t.run);
    started.push(p);
    p.start();
    await sleep(40);
    expect(t.starts).toHaveLength(1);
    expect(t.ends).toHaveLength(0);
    await p.stop();
    expect(t.ends).toHaveLength(1);
    await sleep(50);
    expect(t.starts).toHaveLength(1);
  });
});
