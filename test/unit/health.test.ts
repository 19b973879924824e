import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { validateHealth } from '../../src/contracts/index.js';
import {
  CpuMeter,
  buildHealth,
  cpuPercentBetween,
  parseMeminfo,
  parseProcStat,
  parseThermal,
  readMemInfo,
  readSystem,
  readTemperature,
  sizesMbOf,
  expiriesOf,
  type OllamaStatus,
} from '../../src/worker/health.js';

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
const node = (name: string): string => join(fixtures, 'nodes', name);
const up: OllamaStatus = { ok: true, models: ['gemma3:1b'], installed: ['gemma3:1b', 'llama3.2:3b'], version: '0.6.4' };

describe('RAM from /proc/meminfo', () => {
  it('counts MemAvailable as free, not MemFree (the page cache is not used memory)', async () => {
    const m = await readMemInfo(node('pi-8g'));
    expect(m).toEqual({ totalBytes: 8_058_956 * 1024, availableBytes: 3_054_000 * 1024 });
    const doc = buildHealth({ nodeId: 'pi-8g', cpuPercent: 0, mem: m, tempCelsius: null, ollama: up, concurrency: 1, active: 0, waiting: 0 });
    // (8058956 - 3054000) / 8058956 = 62.1 %; MemFree would have said 93.6 %.
    expect(doc.ram_percent).toBe(62.1);
    expect(doc.ram_total_mb).toBe(7870.1);
    expect(doc.ram_available_mb).toBe(2982.4);
  });

  it('falls back to MemFree + Buffers + Cached on kernels without MemAvailable', () => {
    const m = parseMeminfo(readFileSync(join(node('no-sensor'), 'proc', 'meminfo'), 'utf8'));
    expect(m).toEqual({ totalBytes: 8_058_956 * 1024, availableBytes: (1_024_000 + 100_000 + 1_900_000) * 1024 });
  });

  it('gives nothing for a file without MemTotal', () => {
    expect(parseMeminfo('MemFree: 10 kB\n')).toBeNull();
  });
});

describe('temperature from /sys/class/thermal', () => {
  it('reads millidegrees as degrees Celsius', async () => {
    expect(await readTemperature(node('pi-8g'))).toBe(55);
    expect(await readTemperature(node('pi-16g'))).toBe(48.312);
    expect(parseThermal('61250\n')).toBe(61.25);
    expect(parseThermal('garbage')).toBeNull();
  });

  it('reports null, never an invented value, when the tree has no sensor', async () => {
    expect(await readTemperature(node('no-sensor'))).toBeNull();
  });
});

describe('CPU from /proc/stat', () => {
  it('takes the busy share between two samples (idle and iowait count as idle)', () => {
    const before = parseProcStat(readFileSync(join(fixtures, 'proc-stat', 'before'), 'utf8'))!;
    const after = parseProcStat(readFileSync(join(fixtures, 'proc-stat', 'after'), 'utf8'))!;
    expect(before).toEqual({ idle: 8100, total: 9600 });
    expect(cpuPercentBetween(before, after)).toBe(75);
  });

  it('reads the share since boot first, then the share since the last read', async () => {
    const root = mkdtempSync(join(tmpdir(), 'orion-proc-'));
    mkdirSync(join(root, 'proc'));
    writeFileSync(join(root, 'proc', 'stat'), readFileSync(join(fixtures, 'proc-stat', 'before')));
    const meter = new CpuMeter(root);
    expect(await meter.read()).toBeCloseTo((1500 / 9600) * 100, 5);
    writeFileSync(join(root, 'proc', 'stat'), readFileSync(join(fixtures, 'proc-stat', 'after')));
    expect(await meter.read()).toBe(75);
    // No time passed: 0 %, not NaN.
    expect(await meter.read()).toBe(0);
  });

  it('ignores a file without the aggregate cpu line', () => {
    expect(parseProcStat('cpu0 1 2 3 4\n')).toBeNull();
  });
});

describe('the health document', () => {
  it('maps a fixture node to the guide\'s fields, rounded to one decimal, valid against the schema', async () => {
    const sys = await readSystem(new CpuMeter(node('pi-8g')), node('pi-8g'), node('pi-8g'));
    const doc = buildHealth({ nodeId: 'pi-8g', ...sys, cpuPercent: 45.234, ollama: up, concurrency: 1, active: 1, waiting: 3, now: Date.parse('2026-01-19T12:00:00Z') });
    expect(doc).toEqual({
      node_id: 'pi-8g',
      cpu_percent: 45.2,
      ram_percent: 62.1,
      temp_celsius: 55,
      models: ['gemma3:1b'],
      available: true,
      last_seen: '2026-01-19T12:00:00Z',
      installed_models: ['gemma3:1b', 'llama3.2:3b'],
      ram_total_mb: 7870.1,
      ram_available_mb: 2982.4,
      concurrency: 1,
      active: 1,
      waiting: 3,
      worker_version: '0.1.0',
      ollama_version: '0.6.4',
    });
    expect(Object.keys(doc).slice(0, 7)).toEqual(['node_id', 'cpu_percent', 'ram_percent', 'temp_celsius', 'models', 'available', 'last_seen']);
    expect(validateHealth(doc).ok).toBe(true);
  });

  it('marks the node unavailable, with the reason, when Ollama does not answer; no sensor stays null', async () => {
    const sys = await readSystem(new CpuMeter(node('no-sensor')), node('no-sensor'), node('no-sensor'));
    const doc = buildHealth({
      nodeId: 'pi-8g',
      ...sys,
      ollama: { ok: false, reason: 'ollama unreachable: fetch failed: connect ECONNREFUSED 127.0.0.1:11434' },
      concurrency: 1,
      active: 0,
      waiting: 0,
    });
    expect(doc).toMatchObject({ available: false, models: [], temp_celsius: null, ollama_version: null, reason: expect.stringMatching(/ECONNREFUSED/) });
    expect(doc).not.toHaveProperty('installed_models');
    expect(validateHealth(doc).ok).toBe(true);
  });

  it('keeps reporting the models Ollama last listed as installed while it does not answer', () => {
    const doc = buildHealth({
      nodeId: 'pi-16g',
      cpuPercent: 1,
      mem: { totalBytes: 100, availableBytes: 50 },
      tempCelsius: null,
      ollama: { ok: false, reason: 'ollama unreachable' },
      lastInstalled: ['llama3.1:8b'],
      concurrency: 2,
      active: 0,
      waiting: 0,
    });
    expect(doc).toMatchObject({ available: false, models: [], installed_models: ['llama3.1:8b'], ollama_version: null });
    expect(validateHealth(doc).ok).toBe(true);
  });

  it('marks the node unavailable while it shuts down, even with Ollama up', () => {
    const doc = buildHealth({
      nodeId: 'pi-16g',
      cpuPercent: 1,
      mem: { totalBytes: 100, availableBytes: 50 },
      tempCelsius: 48.312,
      ollama: up,
      concurrency: 2,
      active: 0,
      waiting: 0,
      unavailableReason: 'shutting down',
    });
    expect(doc).toMatchObject({ available: false, reason: 'shutting down', temp_celsius: 48.3, ram_percent: 50 });
  });
});

describe('model sizes in the health document', () => {
  const mem = { totalBytes: 8e9, availableBytes: 4e9 };
  it('turns /api/tags sizes (bytes) into installed_sizes_mb (10^6 bytes, rounded), skipping unusable ones', () => {
    expect(sizesMbOf([{ name: 'gemma3:1b', size: 815_319_791 }, { name: 'tiny', size: 200_000 }, { name: 'nosize' }, { name: 'bad', size: -1 }, { name: 'nan', size: Number.NaN }])).toEqual({
      'gemma3:1b': 815,
      tiny: 1,
    });
  });

  it('publishes them while Ollama answers, the last ones while it does not, nothing when there are none', () => {
    const sizes = { 'gemma3:1b': 815, 'llama3.2:3b': 2019 };
    const base = { nodeId: 'pi-8g', cpuPercent: 0, mem, tempCelsius: null, concurrency: 1, active: 0, waiting: 0 };
    const live = buildHealth({ ...base, ollama: { ...up, sizesMb: sizes } });
    expect(live.installed_sizes_mb).toEqual(sizes);
    expect(validateHealth(live).ok).toBe(true);
    const down = buildHealth({ ...base, ollama: { ok: false, reason: 'ollama unreachable' }, lastInstalled: ['gemma3:1b', 'llama3.2:3b'], lastSizesMb: sizes });
    expect(down.installed_sizes_mb).toEqual(sizes);
    expect(validateHealth(down).ok).toBe(true);
    expect('installed_sizes_mb' in buildHealth({ ...base, ollama: up })).toBe(false);
    expect('installed_sizes_mb' in buildHealth({ ...base, ollama: { ...up, sizesMb: {} } })).toBe(false);
    // The schema holds sizes to positive integers.
    expect(validateHealth({ ...live, installed_sizes_mb: { 'gemma3:1b': 815.5 } }).ok).toBe(false);
    expect(validateHealth({ ...live, installed_sizes_mb: { 'gemma3:1b': 0 } }).ok).toBe(false);
    expect(validateHealth({ ...live, installed_sizes_mb: ['gemma3:1b'] }).ok).toBe(false);
  });
});

describe('model expiries in the health document', () => {
  const mem = { totalBytes: 8e9, availableBytes: 4e9 };
  const base = { nodeId: 'pi-8g', cpuPercent: 0, mem, tempCelsius: null, concurrency: 1, active: 0, waiting: 0 };
  it('reads /api/ps expires_at (a Date from ollama-js, or a string), skipping unreadable ones', () => {
    const at = Date.parse('2026-12-05T12:05:00.000Z');
    expect(expiriesOf([{ name: 'gemma3:1b', expires_at: new Date(at) }, { name: 'llama3.2:3b', expires_at: '2026-12-05T12:06:00Z' }, { name: 'bad', expires_at: 'soon' }, { name: 'none' }])).toEqual({
      'gemma3:1b': at,
      'llama3.2:3b': at + 60_000,
    });
  });

  it('publishes them on Redis\'s clock (shifted by the measured offset, as last_seen), nothing when there are none', () => {
    const at = Date.parse('2026-12-05T12:05:00.000Z');
    const doc = buildHealth({ ...base, ollama: { ...up, expiresAt: { 'gemma3:1b': at } }, now: at - 60_000 + 1500, clockOffsetMs: 1500 });
    expect(doc.models_expire_at).toEqual({ 'gemma3:1b': '2026-12-05T12:05:01Z' }); // whole seconds, as last_seen
    expect(validateHealth(doc).ok).toBe(true);
    expect('models_expire_at' in buildHealth({ ...base, ollama: up })).toBe(false);
    expect('models_expire_at' in buildHealth({ ...base, ollama: { ...up, expiresAt: {} } })).toBe(false);
    expect(validateHealth({ ...doc, models_expire_at: { 'gemma3:1b': 'in five minutes' } }).ok).toBe(false);
  });
});
