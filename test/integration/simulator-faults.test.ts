/**
 * Every fault knob, set on the node object and over POST /_sim/faults, seen through the
 * `ollama` client the worker uses.
 */
import { Ollama } from 'ollama';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';

let sim: SimulatorHandle;
let client: Ollama;

beforeAll(async () => {
  sim = await startSimulator({ speed: 100, loaded: ['gemma3:1b'], responseTokens: [20, 20] });
  client = new Ollama({ host: sim.url });
});
afterAll(async () => {
  await sim.close();
});
beforeEach(async () => {
  sim.node.clearFaults();
  await sim.node.settled();
});

const ask = (extra: Record<string, unknown> = {}) => client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: false, ...extra });

async function postFaults(body: unknown): Promise<Response> {
  return fetch(`${sim.url}/_sim/faults`, { method: 'POST', body: JSON.stringify(body) });
}

describe('request faults', () => {
  it('fail500 answers every generate and chat with 500', async () => {
    sim.node.setFaults({ fail500: true });
    await expect(ask()).rejects.toMatchObject({ name: 'ResponseError', status_code: 500 });
    await expect(client.chat({ model: 'gemma3:1b', messages: [{ role: 'user', content: 'x' }], stream: true })).rejects.toMatchObject({ status_code: 500 });
    await expect(client.list()).resolves.toBeDefined(); // scope "inference" leaves the rest alone
    expect(sim.node.counters().faultsInjected).toBeGreaterThanOrEqual(2);
  });

  it('with scope "all", fails every /api/ call but not GET /', async () => {
    sim.node.setFaults({ fail500: true, scope: 'all' });
    await expect(client.ps()).rejects.toMatchObject({ status_code: 500 });
    await expect(client.list()).rejects.toMatchObject({ status_code: 500 });
    expect((await fetch(sim.url)).status).toBe(200);
  });

  it('status503 answers 503 with the busy message', async () => {
    sim.node.setFaults({ status503: true });
    await expect(ask()).rejects.toMatchObject({ status_code: 503, error: 'server busy, please try again.  maximum pending requests exceeded' });
  });

  it('errorRate fails that fraction of requests, reproducibly', async () => {
    sim.node.setFaults({ errorRate: 1 });
    await expect(ask()).rejects.toMatchObject({ status_code: 500 });
    sim.node.setFaults({ errorRate: 0.5 });
    const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => ask({ options: { num_predict: 1, seed: i } })));
    const failed = results.filter((r) => r.status === 'rejected').length;
    expect(failed).toBeGreaterThan(5);
    expect(failed).toBeLessThan(25);
  });

  it('hang accepts the request and never answers', async () => {
    sim.node.setFaults({ hang: true });
    const res = fetch(`${sim.url}/api/generate`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gemma3:1b', prompt: 'hi' }),
      signal: AbortSignal.timeout(300),
    });
    await expect(res).rejects.toMatchObject({ name: 'TimeoutError' });
  });
});

describe('stream faults', () => {
  it('slowStreamMs delays every chunk', async () => {
    const t0 = performance.now();
    await ask({ options: { num_predict: 5 } });
    const fast = performance.now() - t0;
    sim.node.setFaults({ slowStreamMs: 40 });
    const t1 = performance.now();
    let chunks = 0;
    for await (const _ of await client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: true, options: { num_predict: 5 } })) chunks++;
    const slow = performance.now() - t1;
    expect(chunks).toBe(6);
    expect(slow).toBeGreaterThanOrEqual(6 * 40 - 5);
    expect(slow).toBeGreaterThan(fast + 150);
  });

  it('cutStreamAfter closes the connection after N chunks without a done object, and ollama-js throws', async () => {
    sim.node.setFaults({ cutStreamAfter: 3 });
    const seen: boolean[] = [];
    const consume = (async () => {
      for await (const part of await client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: true })) seen.push(part.done);
    })();
    await expect(consume).rejects.toThrow();
    expect(seen).toEqual([false, false, false]);
    await expect(ask()).rejects.toThrow(); // without streaming: no answer at all
    await vi.waitFor(() => expect(sim.node.state().queue.active).toBe(0));
  });

  it('cutStreamAfter 0 drops the connection before any chunk', async () => {
    sim.node.setFaults({ cutStreamAfter: 0 });
    await expect(client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: true })).rejects.toThrow('fetch failed');
  });
});

describe('refused connections', () => {
  // Each test has its own node: refusing drops the pooled keep-alive sockets of its client.
  async function own(): Promise<{ s: SimulatorHandle; c: Ollama }> {
    const s = await startSimulator({ speed: 100, loaded: ['gemma3:1b'], responseTokens: [20, 20] });
    return { s, c: new Ollama({ host: s.url }) };
  }

  it('refuses connections until cleared, then listens again on the same port', async () => {
    const { s, c } = await own();
    try {
      const port = s.port;
      s.node.setFaults({ refuseConnections: true });
      await s.node.settled();
      await expect(c.list()).rejects.toMatchObject({ cause: { code: 'ECONNREFUSED' } });
      expect(s.node.state()).toMatchObject({ listening: false, url: null });
      s.node.setFaults({ refuseConnections: false });
      await s.node.settled();
      expect(s.port).toBe(port);
      await expect(c.list()).resolves.toMatchObject({ models: expect.any(Array) });
    } finally {
      await s.close();
    }
  });

  it('refuses for a number of milliseconds when asked over HTTP', async () => {
    const { s } = await own();
    try {
      const res = await fetch(`${s.url}/_sim/faults`, { method: 'POST', body: JSON.stringify({ refuseConnections: 300 }) });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ refuseConnections: 300 });
      await vi.waitFor(() => expect(fetch(s.url)).rejects.toThrow(), { timeout: 1_000 });
      await vi.waitFor(async () => expect((await fetch(s.url)).status).toBe(200), { timeout: 3_000, interval: 50 });
      expect(s.node.faults().refuseConnections).toBe(false);
    } finally {
      await s.close();
    }
  });

  it('ends requests in flight when it starts refusing', async () => {
    const { s, c } = await own();
    try {
      s.node.setFaults({ slowStreamMs: 20 });
      const stream = await c.generate({ model: 'gemma3:1b', prompt: 'hi', stream: true });
      const consume = (async () => {
        for await (const _ of stream) void _;
      })();
      await new Promise((r) => setTimeout(r, 50));
      s.node.setFaults({ refuseConnections: true });
      await expect(consume).rejects.toThrow();
      await vi.waitFor(() => expect(s.node.state().queue.active).toBe(0));
    } finally {
      await s.close();
    }
  });
});

describe('the admin endpoint', () => {
  it('sets, reads and clears faults', async () => {
    expect((await postFaults({ errorRate: 0.25, slowStreamMs: 5 })).status).toBe(200);
    await vi.waitFor(() => expect(sim.node.faults()).toMatchObject({ errorRate: 0.25, slowStreamMs: 5 }));
    expect(await (await fetch(`${sim.url}/_sim/faults`)).json()).toMatchObject({ errorRate: 0.25, slowStreamMs: 5, hang: false });
    const cleared = await (await fetch(`${sim.url}/_sim/faults`, { method: 'DELETE' })).json();
    expect(cleared).toMatchObject({ errorRate: 0, slowStreamMs: 0 });
  });

  it('refuses bad fault values with 400 and changes nothing', async () => {
    const res = await postFaults({ errorRate: 3 });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: 'errorRate must be a number from 0 to 1' });
    expect(sim.node.faults().errorRate).toBe(0);
  });

  it('applies faults given at start', async () => {
    const other = await startSimulator({ speed: 100, faults: { status503: true } });
    try {
      await expect(new Ollama({ host: other.url }).generate({ model: 'gemma3:1b', prompt: 'x' })).rejects.toMatchObject({ status_code: 503 });
    } finally {
      await other.close();
    }
  });

  it('starts refusing connections when asked at start', async () => {
    const other = await startSimulator({ speed: 100, faults: { refuseConnections: true } });
    try {
      await other.node.settled();
      await expect(fetch(other.url)).rejects.toThrow('fetch failed');
    } finally {
      await other.close();
    }
  });
});
