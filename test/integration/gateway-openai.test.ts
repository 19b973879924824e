/**
 * The `openai` npm package against the built gateway, bridge and worker on the simulator:
 * chat (streamed and not), JSON-schema output, models, embeddings, an unknown model, a bad key.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embeddingsFromNode } from '../helpers/embeddings.js';
import { API_KEY, MODEL, startGatewayWorld, type GatewayWorld } from './gateway.harness.js';

let g: GatewayWorld;
let client: OpenAI;

beforeAll(async () => {
  g = await startGatewayWorld('gw-openai');
  client = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 30_000 });
}, 90_000);

afterAll(async () => {
  await g?.close();
});

describe('the OpenAI SDK through the gateway', () => {
  it('gets a chat completion with usage filled', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [
        { role: 'system', content: 'You are ORION.' },
        { role: 'user', content: 'Which joint is hottest?' },
      ],
      temperature: 0,
      top_p: 0.9,
      seed: 7,
      max_tokens: 40,
    });
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe(MODEL);
    const choice = r.choices[0]!;
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.content?.length).toBeGreaterThan(0);
    expect(['stop', 'length']).toContain(choice.finish_reason);
    expect(r.usage?.completion_tokens).toBeGreaterThan(0);
    expect(r.usage?.prompt_tokens).toBeGreaterThan(0);
    expect(r.usage?.total_tokens).toBe((r.usage?.prompt_tokens ?? 0) + (r.usage?.completion_tokens ?? 0));
  });

  it('streams a chat completion as server-sent events, with usage when asked', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Count the joints.' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const deltas: string[] = [];
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      const c = chunk.choices[0];
      if (c?.delta.content) deltas.push(c.delta.content);
      if (c?.finish_reason) finish = c.finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('').length).toBeGreaterThan(0);
    expect(finish).toBe('stop');
    expect(usage?.completion_tokens).toBeGreaterThan(0);
  });

  it('ends a raw stream with data: [DONE]', async () => {
    const res = await fetch(`${g.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hi' }], stream: true, stop: ['zzz'] }),
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text();
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('maps response_format json_schema to structured output', async () => {
    const r = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Report the hottest joint as JSON.' }],
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'report', schema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] } },
      },
    });
    const parsed = JSON.parse(r.choices[0]!.message.content ?? '') as { answer: unknown };
    expect(typeof parsed.answer).toBe('string');
    const plain = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Report the hottest joint as JSON.' }] });
    expect(() => JSON.parse(plain.choices[0]!.message.content ?? '')).toThrow();
  });

  it('gets a text completion', async () => {
    const r = await client.completions.create({ model: MODEL, prompt: 'Why is the sky blue?', max_tokens: 5 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0]!.text.length).toBeGreaterThan(0);
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage?.completion_tokens).toBe(5);
  });

  it('lists the models installed on eligible nodes, and retrieves one', async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids).toContain(MODEL);
    const one = await client.models.retrieve(MODEL);
    expect(one).toMatchObject({ id: MODEL, object: 'model', owned_by: 'orion' });
  });

  it('gets embeddings (the SDK asks for base64 and decodes it), one per input, in order', async () => {
    const r = await client.embeddings.create({ model: MODEL, input: ['left knee', 'right knee'] });
    expect(r.data.map((d) => d.index)).toEqual([0, 1]);
    const [left, want] = await embeddingsFromNode(g.w.simUrl('pi-a'), MODEL, ['left knee', 'right knee']);
    if (!left || !want) throw new Error('the node gave fewer than two vectors');
    expect(r.data[1]!.embedding.length).toBe(want.length);
    r.data[1]!.embedding.forEach((x, i) => expect(x).toBeCloseTo(want[i]!, 5));
    const floats = await client.embeddings.create({ model: MODEL, input: 'left knee', encoding_format: 'float' });
    expect(floats.data[0]!.embedding).toEqual(left);
    expect(r.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it('answers an unknown model with 404 model_not_found, in OpenAI error shape', async () => {
    const err = await client.chat.completions.create({ model: 'no-such-model:7b', messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    const missing = await client.models.retrieve('no-such-model:7b').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('refuses a bad API key with 401', async () => {
    const bad = new OpenAI({ baseURL: `${g.url}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
    const err = await bad.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
  });

  it('refuses a malformed request with 400 and says which parameter', async () => {
    const err = await client.chat.completions.create({ model: MODEL, messages: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect((err as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('messages');
  });
});
