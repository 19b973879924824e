/**
 * Scripted answers and the request record of the simulator, set on the node object and over
 * /_sim/script, seen through the `ollama` client the worker uses and over plain HTTP.
 */
import { Ollama } from 'ollama';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseScript, startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';

let sim: SimulatorHandle;
let client: Ollama;

beforeAll(async () => {
  sim = await startSimulator({ profile: 'instant', loaded: ['gemma3:1b'], recordRequests: true, responseTokens: [6, 6] });
  client = new Ollama({ host: sim.url });
});
afterAll(async () => {
  await sim.close();
});
beforeEach(() => {
  sim.node.setScript([]);
});

async function readLines(res: Response): Promise<Record<string, unknown>[]> {
  return (await res.text())
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const post = (path: string, body: unknown): Promise<Response> => fetch(`${sim.url}${path}`, { method: 'POST', body: JSON.stringify(body) });

describe('scripted answers', () => {
  it('stream the given pieces, then one done object with the given figures', async () => {
    sim.node.setScript([{ chunks: ['Hello', ' world'], report: { totalMs: 1500, loadMs: 250, promptEvalCount: 12, promptEvalMs: 100, evalMs: 1000 } }]);
    const parts: string[] = [];
    let last: Record<string, unknown> = {};
    for await (const part of await client.generate({ model: 'gemma3:1b', prompt: 'hi', stream: true })) {
      parts.push(part.response ?? '');
      last = part as unknown as Record<string, unknown>;
    }
    expect(parts.join('')).toBe('Hello world');
    expect(last).toMatchObject({
      done: true,
      done_reason: 'stop',
      total_duration: 1_500_000_000,
      load_duration: 250_000_000,
      prompt_eval_count: 12,
      prompt_eval_duration: 100_000_000,
      eval_count: 2,
      eval_duration: 1_000_000_000,
    });
  });

  it('answer chat with assistant messages, and join the pieces without streaming', async () => {
    sim.node.setScript([{ chunks: ['a', 'b', 'c'] }]);
    const chat = await client.chat({ model: 'gemma3:1b', messages: [{ role: 'user', content: 'x' }], stream: false });
    expect(chat.message).toEqual({ role: 'assistant', content: 'abc' });
    expect(chat.eval_count).toBe(3);
    const gen = await client.generate({ model: 'gemma3:1b', prompt: 'x', stream: false });
    expect(gen.response).toBe('abc');
  });

  it('answer the first matching rule, and leave the rest to the simulation', async () => {
    sim.node.setScript([
      { match: 'req-one', chunks: ['one'] },
      { match: 'req-two', status: 500, error: 'boom' },
    ]);
    expect((await client.generate({ model: 'gemma3:1b', prompt: 'req-one', stream: false })).response).toBe('one');
    await expect(client.generate({ model: 'gemma3:1b', prompt: 'req-two', stream: false })).rejects.toMatchObject({ status_code: 500, error: 'boom' });
    // No rule: the simulated node writes its own six tokens.
    const plain = await client.generate({ model: 'gemma3:1b', prompt: 'something else', stream: false });
    expect(plain.eval_count).toBe(6);
    expect(plain.response).not.toBe('one');
  });

  it('do not take over a model that is not installed, nor a load-only request', async () => {
    sim.node.setScript([{ chunks: ['x'] }]);
    await expect(client.generate({ model: 'nope:1b', prompt: 'hi', stream: false })).rejects.toMatchObject({ status_code: 404, error: "model 'nope:1b' not found" });
    expect(await (await post('/api/generate', { model: 'gemma3:1b', prompt: '', stream: false })).json()).toMatchObject({ done: true, done_reason: 'load' });
  });

  it('end a stream without its done object when asked (ollama-js then reports no done)', async () => {
    sim.node.setScript([{ chunks: ['par'], endWithoutDone: true }]);
    const lines = await readLines(await post('/api/generate', { model: 'gemma3:1b', prompt: 'hi' }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ response: 'par', done: false });
  });

  it('wait before the first byte; a client going away is recorded as closed, not finished', async () => {
    sim.node.setScript([{ match: 'slow-start', firstByteDelayMs: 5000, chunks: ['late'] }]);
    const ctl = new AbortController();
    const pending = fetch(`${sim.url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'gemma3:1b', prompt: 'slow-start' }), signal: ctl.signal });
    const rec = (): ReturnType<SimulatorHandle['node']['requests']>[number] | undefined => sim.node.requests().find((r) => r.body?.['prompt'] === 'slow-start');
    const deadline = Date.now() + 5000;
    while (!rec() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(rec()).toMatchObject({ method: 'POST', path: '/api/generate', clientClosed: false, finished: false });
    ctl.abort();
    await expect(pending).rejects.toThrow();
    while (!rec()!.clientClosed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(rec()).toMatchObject({ clientClosed: true, finished: false });
  });

  it('are set, read and turned off over /_sim/script; a bad script answers 400 and changes nothing', async () => {
    const put = (body: unknown): Promise<Response> => fetch(`${sim.url}/_sim/script`, { method: 'PUT', body: JSON.stringify(body) });
    const rules = [{ match: 'over-http', status: 503, error: 'busy' }];
    expect(await (await put({ rules })).json()).toEqual({ rules });
    expect(await (await fetch(`${sim.url}/_sim/script`)).json()).toEqual({ rules });
    await expect(client.generate({ model: 'gemma3:1b', prompt: 'over-http', stream: false })).rejects.toMatchObject({ status_code: 503 });

    const bad = await put({ rules: [{ status: 200, chunks: 'x', surprise: 1 }] });
    expect(bad.status).toBe(400);
    const { error } = (await bad.json()) as { error: string };
    expect(error).toMatch(/rule 0: unknown key 'surprise'/);
    expect(error).toMatch(/rule 0\.status must be a whole number from 400 to 599/);
    expect(error).toMatch(/rule 0\.chunks must be an array of strings/);
    expect(sim.node.script()).toEqual(rules);

    expect(await (await fetch(`${sim.url}/_sim/script`, { method: 'DELETE' })).json()).toEqual({ rules: [] });
    expect((await client.generate({ model: 'gemma3:1b', prompt: 'over-http', stream: false })).eval_count).toBe(6);
  });

  it('parseScript refuses what is not an array of rules', () => {
    expect(() => parseScript({ match: 'x' })).toThrow(/JSON array of rules/);
    expect(() => parseScript([{ report: { totalMs: -1 } }])).toThrow(/report\.totalMs must be a number >= 0/);
    expect(parseScript([{ match: 'x', chunkDelayMs: 5 }])).toEqual([{ match: 'x', chunkDelayMs: 5 }]);
  });
});

describe('request record', () => {
  it('keeps each request with its body, readable over /_sim/requests', async () => {
    await client.ps();
    await client.generate({ model: 'gemma3:1b', prompt: 'recorded', stream: false });
    const recorded = (await (await fetch(`${sim.url}/_sim/requests`)).json()) as Array<Record<string, unknown>>;
    expect(recorded).toEqual(expect.arrayContaining([
      expect.objectContaining({ method: 'GET', path: '/api/ps', finished: true }),
      expect.objectContaining({ method: 'POST', path: '/api/generate', body: expect.objectContaining({ prompt: 'recorded' }), finished: true, clientClosed: false }),
    ]));
    // The admin endpoints themselves are not recorded.
    expect(recorded.some((r) => String(r['path']).startsWith('/_sim/'))).toBe(false);
  });

  it('is empty unless asked for', async () => {
    const plain = await startSimulator({ profile: 'instant' });
    try {
      await new Ollama({ host: plain.url }).ps();
      expect(plain.node.requests()).toEqual([]);
    } finally {
      await plain.close();
    }
  });
});
