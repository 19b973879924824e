// Real llama.cpp inference on the tiny model the project writes itself. Skipped, saying why,
// only where node-llama-cpp cannot run (an optional dependency missing on this platform).
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateInput } from '../../src/simulator/engine.js';
import { createLlamaEngine, llamaAvailability, type LlamaEngine } from '../../src/simulator/llama/engine.js';
import { encodeGguf } from '../../src/simulator/llama/gguf.js';
import { buildTinyLlama } from '../../src/simulator/llama/tiny-model.js';

const availability = await llamaAvailability();
if (!availability.available) {
  console.warn(`SKIPPED llama engine tests: node-llama-cpp cannot run here: ${availability.reason}`);
}

const MODEL = 'tiny-llama:latest';

interface Run {
  text: string;
  pieces: string[];
  result: Awaited<ReturnType<LlamaEngine['generate']>>;
}

async function generate(engine: LlamaEngine, over: Partial<GenerateInput> & { options?: Record<string, unknown> }): Promise<Run> {
  const pieces: string[] = [];
  const result = await engine.generate({
    model: MODEL,
    prompt: 'Why is the sky blue?',
    signal: new AbortController().signal,
    onToken: (t) => pieces.push(t),
    ...over,
    options: over.options ?? {},
  });
  return { text: pieces.join(''), pieces, result };
}

describe.skipIf(!availability.available)('llama engine (node-llama-cpp, tiny generated model)', () => {
  let dir: string;
  let engine: LlamaEngine;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'orion-llama-it-'));
    engine = await createLlamaEngine({ modelDir: dir, parallel: 2 });
  });

  afterAll(async () => {
    await engine?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('lists the generated model with its real file size and sha256', async () => {
    const [info] = engine.models();
    const bytes = await readFile(engine.modelPath(MODEL));
    expect(info).toMatchObject({
      name: MODEL,
      sizeBytes: bytes.length,
      digest: createHash('sha256').update(bytes).digest('hex'),
      family: 'llama',
      quantizationLevel: 'F32',
      contextLength: 4096,
    });
    expect(info!.sizeBytes).toBeGreaterThan(400_000);
    expect(info!.sizeBytes).toBeLessThan(600_000);
  });

  it('loads the model into llama.cpp and measures the load', async () => {
    expect(engine.lastLoadMs(MODEL)).toBeUndefined();
    const before = engine.models()[0]!;
    await engine.load('tiny-llama'); // no tag means :latest
    const ms = engine.lastLoadMs(MODEL)!;
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThan(5_000);
    // Weights plus KV cache and compute buffers, the same figure before and after the load.
    expect(before.memoryBytes).toBeGreaterThan(before.sizeBytes * 2);
    expect(engine.models()[0]).toEqual(before);
  });

  it('generates the same text twice for the same seed, greedy or sampled', async () => {
    for (const options of [{ temperature: 0, num_predict: 40 }, { temperature: 0.8, seed: 1234, num_predict: 40 }]) {
      const a = await generate(engine, { options });
      const b = await generate(engine, { options });
      expect(a.text.length).toBeGreaterThan(0);
      expect(b.text).toBe(a.text);
    }
    const other = await generate(engine, { options: { temperature: 0.8, seed: 99, num_predict: 40 } });
    const first = await generate(engine, { options: { temperature: 0.8, seed: 1234, num_predict: 40 } });
    expect(other.text).not.toBe(first.text);
  });

  it('streams token by token, stops at num_predict with done reason length, and reports real counts and durations', async () => {
    const { text, pieces, result } = await generate(engine, { options: { num_predict: 12, seed: 5 } });
    expect(result.doneReason).toBe('length');
    expect(result.evalCount).toBe(12);
    expect(pieces.length).toBeGreaterThan(1);
    // One byte per token, and the model only ever emits ASCII.
    expect(text.length).toBeLessThanOrEqual(12);
    expect(text).toMatch(/^[\x20-\x7e\n]*$/);
    // BOS + "<|user|>\nWhy is the sky blue?\n<|assistant|>\n", one token per byte.
    expect(result.promptEvalCount).toBe(1 + '<|user|>\nWhy is the sky blue?\n<|assistant|>\n'.length);
    expect(result.promptEvalDurationNs).toBeGreaterThan(0);
    expect(result.evalDurationNs).toBeGreaterThan(0);
  });

  it('ends at a stop sequence with done reason stop, never sending the stop', async () => {
    const probe = await generate(engine, { options: { temperature: 0, num_predict: 30 } });
    const stop = probe.text.slice(10, 12);
    const { text, result } = await generate(engine, { options: { temperature: 0, num_predict: 30, stop: [stop] } });
    expect(result.doneReason).toBe('stop');
    expect(text).toBe(probe.text.slice(0, probe.text.indexOf(stop)));
  });

  it('chats through the explicit template', async () => {
    const { text, result } = await generate(engine, {
      prompt: undefined,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
      options: { num_predict: 8, seed: 3 },
    });
    expect(result.promptEvalCount).toBe(1 + '<|system|>\nBe brief.\n<|user|>\nHello\n<|assistant|>\n'.length);
    expect(result.evalCount).toBeGreaterThan(0);
    expect(text.length).toBeLessThanOrEqual(8);
  });

  it('forces JSON output when format is json', async () => {
    const { text } = await generate(engine, { format: 'json', options: { num_predict: 6, temperature: 0 } });
    expect(text.startsWith('{')).toBe(true);
  });

  it('stops a generation when its signal aborts', async () => {
    const ac = new AbortController();
    let received = 0;
    const run = engine.generate({
      model: MODEL,
      prompt: 'Tell me a long story.',
      options: { num_predict: 100_000, seed: 1 },
      signal: ac.signal,
      onToken: () => {
        if (++received === 5) ac.abort();
      },
    });
    await expect(run).rejects.toMatchObject({ name: 'AbortError' });
    expect(received).toBe(5);
    // The sequence went back to the pool: the model still answers.
    await expect(generate(engine, { options: { num_predict: 3 } })).resolves.toMatchObject({ result: { evalCount: 3 } });
  });

  it('runs two generations at once on one loaded model', async () => {
    const [a, b] = await Promise.all([
      generate(engine, { options: { num_predict: 20, temperature: 0 } }),
      generate(engine, { options: { num_predict: 20, temperature: 0 } }),
    ]);
    expect(a.result.evalCount).toBe(20);
    expect(b.text).toBe(a.text);
  });

  it('answers model_not_found for a model it does not have', async () => {
    await expect(engine.load('gemma3:1b')).rejects.toMatchObject({ code: 'model_not_found' });
  });

  it('unloads, stopping what runs, and loads again', async () => {
    let tokens = 0;
    // Greedy, so the answer never ends early on an end-of-text token (a random seed once ended it
    // after 13 tokens, before the unload): it runs to the context's length, about 2,000 tokens.
    const outcome = generate(engine, { options: { num_predict: 100_000, temperature: 0 }, onToken: () => tokens++ }).catch((e: unknown) => e);
    while (tokens < 5) await new Promise((r) => setTimeout(r, 5));
    await engine.unload(MODEL);
    expect(await outcome).toMatchObject({ message: expect.stringMatching(/unloaded/) });
    expect(engine.lastLoadMs(MODEL)).toBeUndefined();
    await engine.load(MODEL);
    expect(engine.lastLoadMs(MODEL)).toBeGreaterThan(0);
  });

  it('refuses a broken model file at start instead of letting llama.cpp abort the process', async () => {
    const { kv, tensors } = buildTinyLlama();
    const path = join(dir, 'no-heads.gguf');
    await writeFile(path, encodeGguf(kv.filter((e) => e.key !== 'llama.attention.head_count'), tensors));
    expect((await stat(path)).size).toBeGreaterThan(0);
    await expect(createLlamaEngine({ models: [{ name: 'broken', path }] })).rejects.toThrow(
      /missing key llama\.attention\.head_count/,
    );
  });
});
