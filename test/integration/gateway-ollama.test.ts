/**
 * The `ollama` npm package with its host set to the built gateway (chat, generate, list, ps,
 * show, embed, streaming), and Open WebUI's calls as it makes them: its model list through
 * /api/tags and /v1/models, a streaming chat, and a chat it aborts (the stop button), which must
 * stop the generation on the node.
 */
import { Ollama } from 'ollama';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddingsFromNode } from '../helpers/embeddings.js';
import { API_KEY, MODEL, simCounters, startGatewayWorld, waitFor, type GatewayWorld } from './gateway.harness.js';

let g: GatewayWorld;
let ollama: Ollama;
const auth = { Authorization: `Bearer ${API_KEY}` };

beforeAll(async () => {
  g = await startGatewayWorld('gw-ollama');
  ollama = new Ollama({ host: g.url, headers: auth });
}, 90_000);

afterAll(async () => {
  await g?.close();
});

describe('the ollama package with its host set to the gateway', () => {
  it('chats, in one answer and streamed', async () => {
    const one = await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'Which joint is hottest?' }], options: { temperature: 0, seed: 3 } });
    expect(one.done).toBe(true);
    expect(one.message.role).toBe('assistant');
    expect(one.message.content.length).toBeGreaterThan(0);
    expect(one.eval_count).toBeGreaterThan(0);
    expect(one.total_duration).toBeGreaterThan(0);
    const parts: string[] = [];
    let last: { done: boolean; done_reason?: string } | undefined;
    for await (const part of await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'Count the joints.' }], stream: true })) {
      parts.push(part.message.content);
      last = part;
    }
    expect(parts.filter((p) => p !== '').length).toBeGreaterThan(1);
    expect(last).toMatchObject({ done: true, done_reason: 'stop' });
  });

  it('generates, in one answer and streamed', async () => {
    const one = await ollama.generate({ model: MODEL, prompt: 'Why is the sky blue?', system: 'Be brief.', options: { num_predict: 6 } });
    expect(one).toMatchObject({ model: MODEL, done: true, done_reason: 'length', eval_count: 6 });
    expect(one.response?.length).toBeGreaterThan(0);
    let text = '';
    let chunks = 0;
    for await (const part of await ollama.generate({ model: MODEL, prompt: 'Why is the sky blue?', stream: true })) {
      text += part.response;
      chunks++;
    }
    expect(chunks).toBeGreaterThan(2);
    expect(text.length).toBeGreaterThan(0);
  });

  it('lists the models of the nodes, and the loaded ones with their node', async () => {
    const list = await ollama.list();
    expect(list.models.map((m) => m.name)).toContain(MODEL);
    const ps = await ollama.ps();
    const loaded = ps.models.find((m) => m.name === MODEL) as (typeof ps.models)[number] & { node?: string };
    expect(loaded?.node).toBe('pi-a');
  });

  it('shows a model, and answers an unknown one 404 as Ollama does', async () => {
    const shown = await ollama.show({ model: MODEL });
    expect(shown.capabilities).toContain('completion');
    const err = await ollama.show({ model: 'no-such-model:7b' }).catch((e: unknown) => e as { status_code?: number; error?: string });
    expect(err).toMatchObject({ status_code: 404 });
    const chatErr = await ollama.chat({ model: 'no-such-model:7b', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e as { status_code?: number; error?: string });
    expect(chatErr).toMatchObject({ status_code: 404, error: "model 'no-such-model:7b' not found" });
  });

  it('embeds, the same vectors as the node gives asked directly', async () => {
    const r = await ollama.embed({ model: MODEL, input: ['left knee', 'right knee'] });
    expect(r.embeddings).toEqual(await embeddingsFromNode(g.w.simUrl('pi-a'), MODEL, ['left knee', 'right knee']));
    expect(r.prompt_eval_count).toBeGreaterThan(0);
  });

  it('is refused without the API key', async () => {
    const open = new Ollama({ host: g.url });
    const err = await open.list().catch((e: unknown) => e as { status_code?: number });
    expect(err).toMatchObject({ status_code: 401 });
  });
});

/** Lines of an NDJSON body as objects. */
function ndjson(text: string): Record<string, unknown>[] {
  return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("Open WebUI's calls, as it makes them", () => {
  it('reads its model list from /api/tags and /v1/models, and the version', async () => {
    const root = await fetch(`${g.url}/`, { method: 'HEAD' });
    expect(root.status).toBe(200);
    const version = (await (await fetch(`${g.url}/api/version`, { headers: auth })).json()) as { version: string };
    expect(version.version).toMatch(/^\d+\.\d+/);
    const tags = (await (await fetch(`${g.url}/api/tags`, { headers: auth })).json()) as { models: { name: string; model: string }[] };
    expect(tags.models.map((m) => m.model)).toContain(MODEL);
    const models = (await (await fetch(`${g.url}/v1/models`, { headers: { ...auth, 'Content-Type': 'application/json' } })).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toContain(MODEL);
  });

  it('streams a chat (POST /api/chat, stream true, options)', async () => {
    const res = await fetch(`${g.url}/api/chat`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'system', content: 'You are helpful.' }, { role: 'user', content: 'Hello!' }], stream: true, options: { temperature: 0.8 }, keep_alive: '5m' }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    const lines = ndjson(await res.text());
    expect(lines.length).toBeGreaterThan(2);
    expect(lines.slice(0, -1).every((l) => l['done'] === false)).toBe(true);
    expect(lines[lines.length - 1]).toMatchObject({ done: true, done_reason: 'stop', model: MODEL });
  });

  it('aborts a chat: the generation stops on the node, nothing is retried or dead-lettered', async () => {
    await g.w.simFaults('pi-a', { slowStreamMs: 400 });
    try {
      const before = await simCounters(g);
      const ctl = new AbortController();
      const res = await fetch(`${g.url}/api/chat`, {
        method: 'POST',
        headers: { ...auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Tell me a long story.' }], stream: true }),
        signal: ctl.signal,
      });
      const reader = res.body!.getReader();
      const first = await reader.read();
      expect(first.done).toBe(false);
      ctl.abort();
      const after = await waitFor('the simulator to see the abort', async () => {
        const c = await simCounters(g);
        return c['aborted']! > before['aborted']! ? c : undefined;
      }, 15_000);
      expect(after['completed']).toBe(before['completed']);
      expect(after['requests']).toBe(before['requests']! + 1);
      // The bus answered it `cancelled` (the worker's outcome), and nothing went to the dead letters.
      const worker = [...g.w.procs].find((p) => p.name === 'worker pi-a')!;
      const cancelled = await waitFor('the worker to answer the job cancelled', () => worker.logs(/^request cancelled$/)[0], 10_000);
      expect(cancelled).toMatchObject({ started: true, published: true });
      expect(await g.w.deadLetters()).toEqual([]);
      // The private reply stream is deleted once the cancelled answer is in.
      await waitFor('no gateway reply streams left', async () => (await g.w.admin.keys(`${g.w.n.responses}:gw-*`)).length === 0, 15_000);
    } finally {
      await g.w.clearSimFaults('pi-a');
    }
  });
});
