import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { Run } from '../../src/policy-sim/engine.js';
import { arrivalsFor, runBound, runPolicy } from '../../src/policy-sim/scenario.js';
import { generate, parseReplay, replayLine } from '../../src/policy-sim/workload.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'orion-policy-sim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the policy simulator', () => {
  const arrivals = arrivalsFor({ size: 10, kind: 'poisson', load: 0.8, seed: 3, requests: 800 });

  it('gives the same figures for the same seed, and different ones for another seed', () => {
    const a = runPolicy(10, 'balanced', arrivals, false);
    const b = runPolicy(10, 'balanced', arrivals, false);
    expect(b).toEqual(a);
    const other = runPolicy(10, 'balanced', arrivalsFor({ size: 10, kind: 'poisson', load: 0.8, seed: 4, requests: 800 }), false);
    expect(other).not.toEqual(a);
    expect(a.requests).toBe(800);
  });

  it('under load, balanced cuts the guide rule\'s p99 time to first token by more than half', () => {
    const guide = runPolicy(10, 'guide', arrivals, false);
    const balanced = runPolicy(10, 'balanced', arrivals, false);
    expect(balanced.ttftP99).toBeLessThan(guide.ttftP99 / 2);
    expect(balanced.ttftP50).toBeLessThan(guide.ttftP50);
  });

  it('at 0.8, balanced makes far fewer avoidable cold loads and fewer cold loads than the load-only baselines', () => {
    const balanced = runPolicy(10, 'balanced', arrivals, false);
    for (const p of ['round-robin', 'least-loaded', 'warm-first'] as const) {
      const base = runPolicy(10, p, arrivals, false);
      expect(balanced.avoidableColdLoads, p).toBeLessThanOrEqual(base.avoidableColdLoads / 4);
      expect(balanced.coldLoads, p).toBeLessThan(base.coldLoads);
    }
  });

  it('never beats the offline bound on the median time to first token', () => {
    const bound = runBound(10, arrivals);
    const balanced = runPolicy(10, 'balanced', arrivals, false);
    expect(bound.ttftP50).toBeLessThanOrEqual(balanced.ttftP50);
    expect(bound.e2eP50).toBeLessThanOrEqual(balanced.e2eP50 + 1e-9);
  });

  it('measures what loads and a stale view cost: balanced on the same arrivals with each taken away', () => {
    const as = (ablate: ConstructorParameters<typeof Run>[0]['ablate']) => new Run({ size: 10, policy: 'balanced', arrivals, heat: false, ablate }).run();
    const built = as({});
    expect(as({})).toEqual(built);
    // Loads that take no time, and a bridge that knows it: it loads wherever a slot is free,
    // so more loads and an earlier first token.
    const free = as({ freeLoads: true });
    expect(free.coldLoads).toBeGreaterThan(built.coldLoads * 1.5);
    expect(free.ttftP50).toBeLessThan(built.ttftP50 * 0.85);
    // Every node reporting every second: the same arrivals are routed on other figures.
    const fresh = as({ freshView: true });
    expect(fresh).not.toEqual(built);
    expect(fresh.requests).toBe(800);
  });

  it('replays a recorded arrivals log, in time order, with the counts it carries', () => {
    const gen = generate('poisson', 50, 0.3, 9);
    const text = [...gen].reverse().map((a) => replayLine(a, 1_733_390_000_000)).join('\n') + '\n';
    const back = parseReplay(text, 1);
    expect(back.map((a) => a.model)).toEqual(gen.map((a) => a.model));
    expect(back[0]!.at).toBe(0);
    expect(back.map((a) => a.evalTokens)).toEqual(gen.map((a) => a.evalTokens));
    expect(() => parseReplay('{"model":"x"}\n', 1)).toThrow(/line 1/);
  });

  it('npm run simulate --quick writes ROUTING.md and its plots where it is told, and replays a log', async () => {
    const log = join(dir, 'arrivals.jsonl');
    writeFileSync(log, generate('poisson', 120, 0.3, 5).map((a) => replayLine(a)).join('\n') + '\n');
    const out = join(dir, 'out');
    const { stderr } = await run(process.execPath, ['dist/src/policy-sim/main.js', '--quick', '--out', out, '--scale', '2000', '--replay', log], { timeout: 120_000 });
    expect(stderr).toMatch(/\[12\/12\]/);
    const md = readFileSync(join(out, 'ROUTING.md'), 'utf8');
    expect(md).toMatch(/## Goals/);
    expect(md).toMatch(/\| balanced \|/);
    expect(md).toMatch(/## Replay of a recorded log/);
    expect(md).toMatch(/## Where the gap to the bound comes from/);
    expect(md).toMatch(/\| 3 nodes @ 0.5 \| loads take no time \|/);
    expect(md).toMatch(/2,000 requests on 1,000 nodes/);
    for (const f of ['p99-ttft-10.svg', 'cold-loads.svg']) {
      expect(readFileSync(join(out, 'routing', f), 'utf8')).toMatch(/^<svg /);
    }
    expect(existsSync(join(out, 'routing', 'results.json'))).toBe(true);
    await expect(run(process.execPath, ['dist/src/policy-sim/main.js', '--bogus'])).rejects.toMatchObject({ code: 2 });
  }, 180_000);
});
