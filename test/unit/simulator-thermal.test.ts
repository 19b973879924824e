import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/lib/logger.js';
import { SimClock } from '../../src/simulator/clock.js';
import { HostFiles } from '../../src/simulator/host-files.js';
import { NODE_PROFILES, STORAGE_BANDWIDTH, findModelSpec } from '../../src/simulator/profiles.js';
import { ThermalModel } from '../../src/simulator/thermal.js';

const profile = { ambientC: 45, maxC: 85, heatTauS: 60, coolTauS: 120, throttleC: 85, throttleFactor: 0.7 };

describe('heat model', () => {
  it('rises toward the maximum under load by 1 - e^(-t/tau)', () => {
    const t = new ThermalModel(profile, new SimClock(1), 45);
    t.step(1, 0);
    expect(t.step(1, 60_000)).toBeCloseTo(45 + 40 * (1 - Math.exp(-1)), 5);
  });

  it('falls back toward ambient when idle, more slowly', () => {
    const t = new ThermalModel(profile, new SimClock(1), 85);
    t.step(0, 0);
    expect(t.step(0, 120_000)).toBeCloseTo(45 + 40 * Math.exp(-1), 5);
  });

  it('runs on simulated time: speed 100 covers a minute in 600 ms', () => {
    const t = new ThermalModel(profile, new SimClock(100), 45);
    t.step(1, 0);
    expect(t.step(1, 600)).toBeCloseTo(45 + 40 * (1 - Math.exp(-1)), 5);
  });

  it('holds a pinned temperature until released, then carries on from it', () => {
    const t = new ThermalModel(profile, new SimClock(1), 45);
    t.step(0, 0);
    t.set(80);
    expect(t.step(0, 600_000)).toBe(80);
    expect(t.isPinned).toBe(true);
    t.set(null);
    const after = t.step(0, 660_000);
    expect(after).toBeLessThan(80);
    expect(after).toBeGreaterThan(45);
  });

  it('can be set without holding', () => {
    const t = new ThermalModel(profile, new SimClock(1), 45);
    t.step(0, 0);
    t.set(70, false);
    expect(t.isPinned).toBe(false);
    expect(t.step(0, 1_000)).toBeLessThan(70);
  });

  it('throttles generation at the throttle temperature', () => {
    const t = new ThermalModel(profile, new SimClock(1), 60);
    expect(t.rateFactor()).toBe(1);
    t.set(86);
    expect(t.rateFactor()).toBe(0.7);
  });
});

describe('host files', () => {
  const roots: string[] = [];
  afterAll(async () => {
    for (const r of roots) await rm(r, { recursive: true, force: true });
  });
  /** Host files under a new temp root for /proc, and a reader of what they wrote. */
  const hostFiles = async (cores?: number): Promise<{ files: HostFiles; read: (name: string) => Promise<string> }> => {
    const procRoot = await mkdtemp(join(tmpdir(), 'orion-host-files-'));
    roots.push(procRoot);
    const files = new HostFiles({ procRoot, log: silentLogger }, cores);
    return { files, read: async (name) => (await files.flush(), readFile(join(procRoot, 'proc', name), 'utf8')) };
  };

  it('writes meminfo in the kernel layout, in kB', async () => {
    const { files, read } = await hostFiles();
    files.writeMemory({ totalBytes: 8_052 * 1024 * 1024, usedBytes: 1_900_000_000 });
    const text = await read('meminfo');
    const lines = text.trim().split('\n');
    expect(lines[0]).toBe('MemTotal:        8245248 kB');
    const kb = (key: string): number => Number(/(\d+) kB/.exec(lines.find((l) => l.startsWith(key + ':'))!)![1]);
    expect(kb('MemAvailable')).toBe(Math.round(8245248 - 1_900_000_000 / 1024));
    expect(kb('MemFree')).toBeLessThan(kb('MemAvailable'));
  });

  it('writes cumulative CPU jiffies per core and in total', async () => {
    const before = Math.floor(Date.now() / 1000);
    const { files, read } = await hostFiles(2);
    const after = Math.floor(Date.now() / 1000);
    // Idle: 1% system time, the rest idle; one second is 100 jiffies (USER_HZ) a core.
    files.advanceCpu(1000, 0, 0);
    files.advanceCpu(1000, 0, 0);
    const text = await read('stat');
    expect(text.split('\n')[0]).toBe('cpu  0 0 4 396 0 0 0 0 0 0');
    expect(text).toContain('cpu1 0 0 2 198 0 0 0 0 0 0');
    const btime = Number(/^btime (\d+)$/m.exec(text)?.[1]);
    expect(btime).toBeGreaterThanOrEqual(before);
    expect(btime).toBeLessThanOrEqual(after);
  });
});

describe('profile figures', () => {
  it('load a cold gemma3:1b in about 10 s and llama3.2:3b in about 24 s from microSD', () => {
    const load = (m: string): number => findModelSpec(m)!.diskBytes / STORAGE_BANDWIDTH.microsd;
    expect(load('gemma3:1b')).toBeCloseTo(9.6, 1);
    expect(load('llama3.2:3b')).toBeCloseTo(23.5, 1);
  });

  it('run llama3.2:3b at 4.6 tokens/s on the 8 GB Pi and 4.9 on the 16 GB Pi', () => {
    expect(NODE_PROFILES['pi5-8g']!.rates['llama3.2:3b']!.evalTps).toBe(4.6);
    expect(NODE_PROFILES['pi5-16g']!.rates['llama3.2:3b']!.evalTps).toBe(4.9);
  });

  it('give every installed model speeds and keep the RAM tiers of the three boards', () => {
    for (const p of Object.values(NODE_PROFILES)) {
      for (const m of p.installed) expect(p.rates[m], `${p.name} ${m}`).toBeDefined();
    }
    const gib = (name: string): number => NODE_PROFILES[name]!.ramBytes / 1024 ** 3;
    expect(gib('pi5-16g')).toBeGreaterThanOrEqual(12);
    expect(gib('pi5-8g')).toBeGreaterThanOrEqual(6);
    expect(gib('pi5-8g')).toBeLessThan(12);
    expect(gib('pi5-4g')).toBeLessThan(6);
  });

  it('include an instant profile that loads and generates in no time and never heats', () => {
    const p = NODE_PROFILES['instant']!;
    expect(STORAGE_BANDWIDTH[p.storage]).toBe(Number.POSITIVE_INFINITY);
    for (const r of Object.values(p.rates)) expect(1000 / r.evalTps + 1000 / r.promptTps).toBe(0);
    expect(p.thermal.maxC).toBe(p.thermal.ambientC);
  });
});
