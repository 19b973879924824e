/**
 * The simulated Pi behaves like Ollama on a Pi, over real HTTP with a compressed clock:
 * loading, keep-alive, eviction, queueing, parallelism, determinism, heat and host files.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ollama, type GenerateResponse } from 'ollama';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startSimulator, type GenerationEngine, type SimulatorHandle, type SimulatorOptions } from '../../src/simulator/index.js';

const handles: SimulatorHandle[] = [];
const dirs: string[] = [];

async function sim(opts: SimulatorOptions = {}): Promise<{ sim: SimulatorHandle; client: Ollama }> {
  const handle = await startSimulator({ speed: 100, ...opts });
  handles.push(handle);
  return { sim: handle, client: new Ollama({ host: handle.url }) };
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'orion-sim-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

const S = 1e9; // nanoseconds per second

/**
 * The speed of the tests that bound a reported duration from above or must catch a state that
 * lasts one answer: the figures are wall time times the speed, so at 10 a timer 30 ms late on a
 * busy machine adds 0.3 s of Pi time, not 3 s.
 */
const CAREFUL = 10;

describe('loading', () => {
  it('takes the load time on a cold request and reports it in load_duration; a warm request loads in no time', async () => {
    const { client } = await sim({ profile: 'pi5-8g', speed: CAREFUL });
    const t0 = performance.now();
    const cold = await client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: false });
    const coldWall = performance.now() - t0;
    // 815 MB at 85 MB/s is 9.6 s of Pi time: 960 ms at speed 10.
    expect(coldWall).toBeGreaterThanOrEqual(900);
    expect(cold.load_duration).toBeGreaterThan(9.4 * S);
    expect(cold.load_duration).toBeLessThan(12 * S);
    expect(cold.total_duration).toBeGreaterThan(cold.load_duration + cold.eval_duration);

    const warm = await client.generate({ model: 'gemma3:1b', prompt: 'hi again', stream: false });
    expect(warm.load_duration).toBeLessThan(0.5 * S);
  });

  it('loads a bigger model for longer and reports Pi-like eval rates', async () => {
    const { client } = await sim({ profile: 'pi5-8g', responseTokens: [40, 40], speed: CAREFUL });
    const res = await client.generate({ model: 'llama3.2:3b', prompt: 'Explain rain.', stream: false });
    expect(res.load_duration / S).toBeGreaterThan(23);
    expect(res.load_duration / S).toBeLessThan(27);
    const rate = res.eval_count / (res.eval_duration / S);
    expect(rate).toBeGreaterThan(3.9);
    expect(rate).toBeLessThan(4.8);
  });

  it('loads faster from NVMe', async () => {
    const { client } = await sim({ profile: 'pi5-8g', storage: 'nvme', speed: CAREFUL });
    const res = await client.generate({ model: 'llama3.2:3b', prompt: 'x', stream: false, options: { num_predict: 1 } });
    // 2 GB at 450 MB/s is 4.4 s instead of 23.5 s from microSD.
    expect(res.load_duration / S).toBeGreaterThan(4.3);
    expect(res.load_duration / S).toBeLessThan(6);
  });

  it('starts with preloaded models kept forever', async () => {
    const { client, sim: s } = await sim({ profile: 'pi5-16g', loaded: ['llama3.2:3b'], speed: CAREFUL });
    const ps = await client.ps();
    expect(ps.models.map((m) => m.name)).toEqual(['llama3.2:3b']);
    expect(new Date(ps.models[0]!.expires_at).getFullYear()).toBeGreaterThan(2200);
    const res = await client.generate({ model: 'llama3.2:3b', prompt: 'hi', stream: false });
    expect(res.load_duration).toBeLessThan(0.5 * S);
    expect(s.node.counters().coldLoads).toBe(0);
  });
});

describe('keep-alive', () => {
  it('unloads an idle model when its keep_alive runs out', async () => {
    const { client } = await sim({ speed: CAREFUL });
    // 10 s at speed 10 is 1000 ms from the answer's end, which came between `before` and `after`:
    // bounds that hold however slowly the machine answers.
    const before = Date.now();
    await client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: false, keep_alive: '10s' });
    const after = Date.now();
    const [entry] = (await client.ps()).models;
    const expires = new Date(entry!.expires_at).getTime();
    expect(expires - before).toBeGreaterThanOrEqual(1000 - 20);
    expect(expires - after).toBeLessThanOrEqual(1000 + 20);
    await vi.waitFor(async () => expect((await client.ps()).models).toEqual([]), { timeout: 10_000, interval: 20 });
  });

  it('uses the default keep-alive when the request gives none', async () => {
    const { client } = await sim({ keepAlive: '20s' });
    await client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: false });
    expect((await client.ps()).models).toHaveLength(1);
    await vi.waitFor(async () => expect((await client.ps()).models).toEqual([]), { timeout: 2_000, interval: 20 });
  });
});

describe('eviction', () => {
  it('unloads an idle model when RAM runs short (4 GB Pi)', async () => {
    const { client, sim: s } = await sim({ profile: 'pi5-4g', installed: ['gemma3:1b', 'llama3.2:3b'] });
    await client.generate({ model: 'gemma3:1b', prompt: '', stream: false });
    await client.generate({ model: 'llama3.2:3b', prompt: '', stream: false });
    expect((await client.ps()).models.map((m) => m.name)).toEqual(['llama3.2:3b']);
    expect(s.node.counters().evictions).toBe(1);
  });

  it('unloads one when max loaded models is reached', async () => {
    const { client } = await sim({ profile: 'pi5-16g', maxLoadedModels: 1 });
    await client.generate({ model: 'gemma3:1b', prompt: '', stream: false });
    await client.generate({ model: 'llama3.2:3b', prompt: '', stream: false });
    expect((await client.ps()).models.map((m) => m.name)).toEqual(['llama3.2:3b']);
  });

  it('makes a request wait while its memory is held by a busy model', async () => {
    const { client } = await sim({ profile: 'pi5-4g', installed: ['gemma3:1b', 'llama3.2:3b'], loaded: ['gemma3:1b'], responseTokens: [60, 60] });
    const order: string[] = [];
    const busy = client.generate({ model: 'gemma3:1b', prompt: 'long', stream: false }).then((r) => (order.push('gemma3:1b'), r));
    await new Promise((r) => setTimeout(r, 20));
    const other = client.generate({ model: 'llama3.2:3b', prompt: 'x', stream: false, options: { num_predict: 1 } }).then((r) => (order.push('llama3.2:3b'), r));
    const [b] = await Promise.all([busy, other]);
    expect(b.done_reason).toBe('stop');
    expect(b.eval_count).toBe(60);
    expect(order).toEqual(['gemma3:1b', 'llama3.2:3b']);
  });

  it('answers 500 when a model can never fit', async () => {
    const { client } = await sim({ profile: 'pi5-4g', installed: ['gemma3:1b', 'llama3.1:8b'] });
    await expect(client.generate({ model: 'llama3.1:8b', prompt: 'x', stream: false })).rejects.toMatchObject({
      status_code: 500,
      error: expect.stringMatching(/^model requires more system memory \(5\.4 GiB\) than is available \(3\.\d GiB\)$/),
    });
  });
});

describe('queueing and parallelism', () => {
  it('answers 503 once OLLAMA_MAX_QUEUE requests are waiting', async () => {
    const { client } = await sim({ maxQueue: 1, loaded: ['gemma3:1b'], responseTokens: [200, 200] });
    const results = await Promise.allSettled([0, 1, 2].map((i) => client.generate({ model: 'gemma3:1b', prompt: `p${i}`, stream: false })));
    const rejected = results.filter((r) => r.status === 'rejected');
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(2);
    expect(rejected).toHaveLength(1);
    expect((rejected[0] as PromiseRejectedResult).reason).toMatchObject({
      status_code: 503,
      error: 'server busy, please try again.  maximum pending requests exceeded',
    });
  });

  it('runs one request at a time per model with NUM_PARALLEL 1', async () => {
    const { client, sim: s } = await sim({ numParallel: 1, loaded: ['gemma3:1b'], responseTokens: [100, 100], speed: CAREFUL });
    const both = Promise.all([1, 2].map((i) => client.generate({ model: 'gemma3:1b', prompt: `p${i}`, stream: false })));
    await vi.waitFor(() => expect(s.node.state().queue).toMatchObject({ active: 1, pending: 1 }), { interval: 2 });
    const [first, second] = (await both).sort((x, y) => x.total_duration - y.total_duration) as [GenerateResponse, GenerateResponse];
    expect(second.total_duration).toBeGreaterThan(first.eval_duration + second.eval_duration);
  });

  it('runs requests side by side with NUM_PARALLEL 2', async () => {
    const { client, sim: s } = await sim({ numParallel: 2, loaded: ['gemma3:1b'], responseTokens: [100, 100], speed: CAREFUL });
    const both = Promise.all([1, 2].map((i) => client.generate({ model: 'gemma3:1b', prompt: `p${i}`, stream: false })));
    await vi.waitFor(() => expect(s.node.state().queue).toMatchObject({ active: 2, pending: 0 }), { interval: 2 });
    await both;
  });

  it('frees the slot of a client that disconnects mid-stream', async () => {
    // The first answer is 50,000 tokens: about 43 s of wall time at speed 100, longer than the
    // test's timeout, so the queued request can only be answered if the abort freed the slot.
    const { client, sim: s } = await sim({ loaded: ['gemma3:1b'], responseTokens: [50_000, 50_000] });
    const stream = await client.generate({ model: 'gemma3:1b', prompt: 'long', stream: true });
    const waiting = client.generate({ model: 'gemma3:1b', prompt: 'next', stream: false, options: { num_predict: 2 } });
    for await (const _ of stream) {
      stream.abort();
      break;
    }
    const t0 = performance.now();
    const next = await waiting;
    expect(next.done_reason).toBe('length');
    expect(performance.now() - t0).toBeLessThan(15_000); // the 50,000-token answer would take 43 s
    await vi.waitFor(() => expect(s.node.counters().aborted).toBe(1));
  });
});

describe('text', () => {
  it('is deterministic for the same model, prompt and seed and differs for another seed', async () => {
    const { client } = await sim({ loaded: ['gemma3:1b'] });
    const gen = (seed: number) => client.generate({ model: 'gemma3:1b', prompt: 'Why is the sky blue?', stream: false, options: { seed } });
    const [a, b, c] = await Promise.all([gen(1), gen(1), gen(2)]);
    expect(a.response).toBe(b.response);
    expect(a.eval_count).toBe(b.eval_count);
    expect(c.response).not.toBe(a.response);
  });

  it('streams one token per chunk that add up to the non-streamed text', async () => {
    const { client } = await sim({ loaded: ['gemma3:1b'] });
    const whole = await client.chat({ model: 'gemma3:1b', messages: [{ role: 'user', content: 'hi' }], stream: false, options: { seed: 5 } });
    const parts: string[] = [];
    let final: { eval_count: number } | undefined;
    for await (const p of await client.chat({ model: 'gemma3:1b', messages: [{ role: 'user', content: 'hi' }], stream: true, options: { seed: 5 } })) {
      if (p.done) final = p;
      else parts.push(p.message.content);
    }
    expect(parts.join('')).toBe(whole.message.content);
    expect(parts).toHaveLength(final!.eval_count);
  });

  it('gives JSON text when format is json', async () => {
    const { client } = await sim({ loaded: ['gemma3:1b'] });
    const res = await client.generate({ model: 'gemma3:1b', prompt: 'give me json', format: 'json', stream: false });
    expect(() => JSON.parse(res.response!)).not.toThrow();
  });
});

describe('models', () => {
  it('treats llama-style names without a tag as :latest', async () => {
    const { client } = await sim({ installed: ['gemma3:1b', 'tinyllama:latest'] });
    const res = await client.generate({ model: 'tinyllama', prompt: 'hi', stream: false });
    expect(res.model).toBe('tinyllama');
    expect((await client.ps()).models.map((m) => m.name)).toEqual(['tinyllama:latest']);
    expect((await client.show({ model: 'tinyllama:latest' })).details.family).toBe('llama');
  });

  it('adds a pulled model to the installed ones, and refuses one the profile does not know', async () => {
    const { client } = await sim();
    expect((await client.list()).models.map((m) => m.name)).not.toContain('qwen2.5:0.5b');
    const statuses: string[] = [];
    for await (const p of await client.pull({ model: 'qwen2.5:0.5b', stream: true })) statuses.push(p.status);
    expect(statuses[0]).toBe('pulling manifest');
    expect(statuses).toContain('verifying sha256 digest');
    expect(statuses).toContain('writing manifest');
    expect(statuses.at(-1)).toBe('success');
    expect(statuses.some((s) => /^pulling [0-9a-f]{12}$/.test(s))).toBe(true);
    expect((await client.list()).models.map((m) => m.name)).toContain('qwen2.5:0.5b');

    await expect(client.pull({ model: 'mystery:7b', stream: false })).rejects.toMatchObject({ status_code: 500, error: 'pull model manifest: file does not exist' });
    const streamed = (async () => {
      for await (const _ of await client.pull({ model: 'mystery:7b', stream: true })) void _;
    })();
    await expect(streamed).rejects.toThrow('pull model manifest: file does not exist');
  });

  it('deletes a model', async () => {
    const { client } = await sim();
    await client.delete({ model: 'llama3.2:3b' });
    expect((await client.list()).models.map((m) => m.name)).toEqual(['gemma3:1b']);
    await expect(client.delete({ model: 'llama3.2:3b' })).rejects.toMatchObject({ status_code: 404 });
  });

  it('fails a request whose model is deleted while it loads, as Ollama words it', async () => {
    const { client, sim: s } = await sim();
    const pending = client.generate({ model: 'llama3.2:3b', prompt: 'hi', stream: false });
    await vi.waitFor(() => expect(s.node.loadedModels()).toMatchObject([{ name: 'llama3.2:3b', state: 'loading' }]), { interval: 2 });
    await client.delete({ model: 'llama3.2:3b' });
    await expect(pending).rejects.toMatchObject({ status_code: 404, error: 'model "llama3.2:3b" not found, try pulling it first' });
    await vi.waitFor(() => expect(s.node.loadedModels()).toEqual([]));
  });
});

describe('heat and host files', () => {
  it('heats the thermal file while generating and cools it when idle', async () => {
    const root = await tempDir();
    const { client, sim: s } = await sim({
      sysRoot: root,
      loaded: ['gemma3:1b'],
      responseTokens: [150, 150],
      thermal: { ambientC: 45, maxC: 85, heatTauS: 20, coolTauS: 20 },
    });
    const file = join(root, 'sys/class/thermal/thermal_zone0/temp');
    const read = async (): Promise<number> => Number((await readFile(file, 'utf8')).trim());
    expect(await read()).toBe(45_000);
    await client.generate({ model: 'gemma3:1b', prompt: 'long', stream: false });
    await s.node.flushFiles();
    const hot = await read();
    expect(hot).toBeGreaterThan(60_000); // 13 s of load with a 20 s time constant: about +19 C
    await vi.waitFor(
      async () => {
        await s.node.flushFiles();
        expect(await read()).toBeLessThan(hot - 10_000);
      },
      { timeout: 15_000, interval: 50 }, // about 0.15 s of wall time at speed 100; the margin is for a loaded machine
    );
  });

  it('writes meminfo that follows the profile RAM and the loaded models', async () => {
    const root = await tempDir();
    const { client, sim: s } = await sim({ profile: 'pi5-8g', procRoot: root });
    const kb = async (key: string): Promise<number> => {
      await s.node.flushFiles();
      const text = await readFile(join(root, 'proc/meminfo'), 'utf8');
      return Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text)![1]);
    };
    expect(await kb('MemTotal')).toBe(8_052 * 1024);
    const before = await kb('MemAvailable');
    await client.generate({ model: 'gemma3:1b', prompt: '', stream: false });
    expect(before - (await kb('MemAvailable'))).toBeCloseTo(1_300_000_000 / 1024, -1);
    await client.generate({ model: 'gemma3:1b', prompt: '', keep_alive: 0, stream: false });
    await vi.waitFor(async () => expect(await kb('MemAvailable')).toBe(before));
    const stat = await readFile(join(root, 'proc/stat'), 'utf8');
    expect(stat).toMatch(/^cpu {2}\d+ 0 \d+ \d+ \d+ 0 0 0 0 0$/m);
  });

  it('lets a test set the temperature directly', async () => {
    const root = await tempDir();
    const { sim: s } = await sim({ sysRoot: root });
    s.node.setTemperature(80);
    await s.node.flushFiles();
    expect(await readFile(join(root, 'sys/class/thermal/thermal_zone0/temp'), 'utf8')).toBe('80000\n');
    expect(s.node.state()).toMatchObject({ temperatureC: 80, temperaturePinned: true });
    const res = await fetch(`${s.url}/_sim/temperature`, { method: 'POST', body: JSON.stringify({ celsius: 90 }) });
    expect(await res.json()).toEqual({ temperatureC: 90, pinned: true });
    await fetch(`${s.url}/_sim/temperature`, { method: 'POST', body: JSON.stringify({ celsius: null }) });
    await vi.waitFor(() => expect(s.node.temperature()).toBeLessThan(89.5), { timeout: 2_000 });
  });
});

describe('another engine', () => {
  /** An engine that emits two tokens and then fails, or refuses requests asking for a format. */
  function brokenEngine(loads: string[]): GenerationEngine {
    return {
      kind: 'llama',
      models: () => [
        { name: 'flaky:latest', sizeBytes: 1_000, memoryBytes: 1_000_000, digest: 'a'.repeat(64), family: 'llama', parameterSize: '1M', quantizationLevel: 'F32', contextLength: 512 },
      ],
      load: async (m) => void loads.push(m),
      unload: async () => {},
      generate: async (input) => {
        if (input.format !== undefined) throw Object.assign(new Error('unsupported format: nope'), { code: 'invalid_request' });
        input.onToken('one');
        input.onToken(' two');
        throw new Error('the runner fell over');
      },
      close: async () => {},
    };
  }

  it('plugs in, preloads through load(), and sends an error line once streaming began', async () => {
    const loads: string[] = [];
    const { client } = await sim({ speed: 1, engine: brokenEngine(loads), loaded: ['flaky'] });
    expect(loads).toEqual(['flaky:latest']);
    expect((await client.list()).models.map((m) => m.name)).toEqual(['flaky:latest']);
    const seen: string[] = [];
    const consume = (async () => {
      for await (const p of await client.generate({ model: 'flaky', prompt: 'hi', stream: true })) seen.push(p.response ?? '');
    })();
    await expect(consume).rejects.toThrow('the runner fell over');
    expect(seen).toEqual(['one', ' two']);
    await expect(client.generate({ model: 'flaky', prompt: 'hi', stream: false })).rejects.toMatchObject({ status_code: 500, error: 'the runner fell over' });
    await expect(client.generate({ model: 'flaky', prompt: 'hi', format: 'json', stream: false })).rejects.toMatchObject({ status_code: 400 });
  });
});

describe('node state', () => {
  it('shows loaded models, queue, temperature and counters at /_sim/state', async () => {
    const { client, sim: s } = await sim({ id: 'pi-8g' });
    await client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: false });
    const state = (await (await fetch(`${s.url}/_sim/state`)).json()) as Record<string, unknown>;
    expect(state).toMatchObject({
      id: 'pi-8g',
      profile: 'pi5-8g',
      url: s.url,
      listening: true,
      speed: 100,
      loaded: [{ name: 'gemma3:1b', state: 'ready', active: 0 }],
      queue: { pending: 0, active: 0, numParallel: 1, maxLoadedModels: 3, maxQueue: 512 },
      counters: { requests: 1, generate: 1, chat: 0, completed: 1, coldLoads: 1 },
    });
    expect(state['temperatureC']).toEqual(expect.any(Number));
  });

  it('can be closed twice', async () => {
    const { sim: s } = await sim();
    await s.close();
    await s.close();
    await expect(fetch(s.url)).rejects.toThrow();
  });
});
