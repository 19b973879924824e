/**
 * One contract suite for Ollama's HTTP API, run through the `ollama` client against the
 * simulator and, when OLLAMA_URL is set, against a real Ollama (OLLAMA_MODEL picks its model,
 * else the first installed one). Checks that need knobs only a simulator has run only there.
 */
import { Ollama, type GenerateResponse } from 'ollama';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../src/simulator/index.js';

interface Target {
  host: string;
  /** An installed model to generate with. */
  model: string;
  /** The simulator's handle, when the target is one. */
  sim?: SimulatorHandle;
  close(): Promise<void>;
}

const MISSING = 'no-such-model-orion:1b';

/** Expect a promise to fail the way ollama-js reports an HTTP error. */
async function expectResponseError(p: Promise<unknown>, status: number, message: string): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e as { name?: string; status_code?: number; error?: string },
  );
  expect(err, 'expected the call to fail').not.toBeNull();
  expect(err!.name).toBe('ResponseError');
  expect(err!.status_code).toBe(status);
  expect(err!.error).toBe(message);
}

function contractSuite(label: string, setup: () => Promise<Target | null>): void {
  describe(`Ollama API contract: ${label}`, () => {
    let target: Target | null = null;
    let client: Ollama;

    beforeAll(async () => {
      target = await setup();
      if (target) client = new Ollama({ host: target.host });
    });
    afterAll(async () => {
      await target?.close();
    });

    const model = (): string => target!.model;

    it('answers GET / with "Ollama is running" and HEAD / with 200', async ({ skip }) => {
      if (!target) return skip();
      const get = await fetch(target.host + '/');
      expect(get.status).toBe(200);
      expect(await get.text()).toBe('Ollama is running');
      const head = await fetch(target.host + '/', { method: 'HEAD' });
      expect(head.status).toBe(200);
    });

    it('reports its version', async ({ skip }) => {
      if (!target) return skip();
      const { version } = await client.version();
      expect(version).toMatch(/^\d+\.\d+\.\d+/);
    });

    it('lists installed models with gguf details', async ({ skip }) => {
      if (!target) return skip();
      const { models } = await client.list();
      const m = models.find((x) => x.name === model());
      expect(m).toBeDefined();
      expect(m!.model).toBe(model());
      expect(m!.size).toBeGreaterThan(0);
      expect(m!.digest).toMatch(/^[0-9a-f]{64}$/);
      expect(m!.details.format).toBe('gguf');
      expect(m!.details.family).toEqual(expect.any(String));
      expect(m!.details.parameter_size).toEqual(expect.any(String));
      expect(m!.details.quantization_level).toEqual(expect.any(String));
      expect(Number.isNaN(Date.parse(String(m!.modified_at)))).toBe(false);
    });

    it('shows an installed model and 404s a missing one', async ({ skip }) => {
      if (!target) return skip();
      const shown = await client.show({ model: model() });
      expect(shown.details.format).toBe('gguf');
      expect(shown.capabilities).toContain('completion');
      expect(Object.keys(shown.model_info as object)).toContain('general.architecture');
      expect(shown.modelfile).toContain('FROM');
      await expectResponseError(client.show({ model: MISSING }), 404, `model '${MISSING}' not found`);
    });

    it('streams a generation as chunks ending in one done object with metrics', async ({ skip }) => {
      if (!target) return skip();
      const stream = await client.generate({ model: model(), prompt: 'Why is the sky blue? One sentence.', stream: true, options: { seed: 7 } });
      const parts: GenerateResponse[] = [];
      for await (const part of stream) parts.push(part);
      const final = parts.at(-1)!;
      expect(parts.length).toBeGreaterThan(1);
      expect(parts.slice(0, -1).every((p) => p.done === false)).toBe(true);
      expect(final.done).toBe(true);
      expect(final.done_reason).toBe('stop');
      expect(final.model).toBe(model());
      for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration', 'prompt_eval_count', 'eval_count'] as const) {
        expect(final[k], k).toBeGreaterThan(0);
      }
      expect(final.total_duration).toBeGreaterThanOrEqual(final.eval_duration);
      expect(parts.map((p) => p.response).join('').length).toBeGreaterThan(0);
    });

    it('answers a generation with one object when stream is false', async ({ skip }) => {
      if (!target) return skip();
      const res = await client.generate({ model: model(), prompt: 'Say hello.', stream: false });
      expect(res.done).toBe(true);
      expect(res.response?.length).toBeGreaterThan(0);
      expect(res.eval_count).toBeGreaterThan(0);
      expect(Array.isArray(res.context)).toBe(true);
    });

    it('chats, streamed and not', async ({ skip }) => {
      if (!target) return skip();
      const messages = [{ role: 'user', content: 'Name a color.' }];
      const whole = await client.chat({ model: model(), messages, stream: false });
      expect(whole.done).toBe(true);
      expect(whole.message.role).toBe('assistant');
      expect(whole.message.content.length).toBeGreaterThan(0);
      const stream = await client.chat({ model: model(), messages, stream: true });
      let text = '';
      let done = 0;
      for await (const part of stream) {
        text += part.message.content;
        if (part.done) {
          done++;
          expect(part.eval_count).toBeGreaterThan(0);
        }
      }
      expect(done).toBe(1);
      expect(text.length).toBeGreaterThan(0);
    });

    it('stops at num_predict with done_reason "length"', async ({ skip }) => {
      if (!target) return skip();
      const res = await client.generate({ model: model(), prompt: 'Count from one to one hundred.', stream: false, options: { num_predict: 3 } });
      expect(res.done_reason).toBe('length');
      expect(res.eval_count).toBeLessThanOrEqual(3);
    });

    it('loads with an empty prompt and unloads with keep_alive 0', async ({ skip }) => {
      if (!target) return skip();
      const loaded = await client.generate({ model: model(), prompt: '', stream: false });
      expect(loaded.done).toBe(true);
      expect(loaded.done_reason).toBe('load');
      const ps = await client.ps();
      const entry = ps.models.find((m) => m.name === model());
      expect(entry).toBeDefined();
      expect(entry!.size).toBeGreaterThan(0);
      expect(Number.isNaN(Date.parse(String(entry!.expires_at)))).toBe(false);

      const unloaded = await client.chat({ model: model(), messages: [], keep_alive: 0, stream: false });
      expect(unloaded.done_reason).toBe('unload');
      await vi.waitFor(async () => expect((await client.ps()).models.map((m) => m.name)).not.toContain(model()), { timeout: 10_000 });
    });

    it('answers a missing model with 404 on generate and chat', async ({ skip }) => {
      if (!target) return skip();
      await expectResponseError(client.generate({ model: MISSING, prompt: 'hi', stream: false }), 404, `model '${MISSING}' not found`);
      await expectResponseError(client.chat({ model: MISSING, messages: [{ role: 'user', content: 'hi' }], stream: true }), 404, `model '${MISSING}' not found`);
    });

    it('asks for a model on chat without one', async ({ skip }) => {
      if (!target) return skip();
      await expectResponseError(client.chat({ model: '', messages: [{ role: 'user', content: 'hi' }] }), 400, 'model is required');
    });

    it('stops a streamed generation when the client aborts', async ({ skip }) => {
      if (!target) return skip();
      // On the simulator, slow the stream down so the abort surely lands mid-generation even
      // on a loaded machine (a real Ollama is slow enough by itself).
      target.sim?.node.setFaults({ slowStreamMs: 100 });
      const stream = await client.generate({ model: model(), prompt: 'Write a very long story about the sea.', stream: true, options: { num_predict: 500 } });
      let chunks = 0;
      const consumed = (async () => {
        for await (const part of stream) {
          chunks++;
          if (part.done) return 'done';
          if (chunks === 1) stream.abort();
        }
        return 'ended';
      })();
      await expect(consumed).rejects.toMatchObject({ name: 'AbortError' });
      expect(chunks).toBe(1);
      const sim = target.sim;
      if (sim) {
        await vi.waitFor(() => expect(sim.node.counters().aborted).toBeGreaterThanOrEqual(1), { timeout: 5000 });
        await vi.waitFor(() => expect(sim.node.state().queue.active).toBe(0), { timeout: 5000 });
        sim.node.clearFaults();
      }
    });
  });
}

contractSuite('simulator', async () => {
  const sim = await startSimulator({ profile: 'pi5-8g', speed: 50, responseTokens: [24, 64] });
  return { host: sim.url, model: 'gemma3:1b', sim, close: () => sim.close() };
});

const realUrl = process.env['OLLAMA_URL'];
describe.skipIf(!realUrl)('against a real Ollama (OLLAMA_URL)', () => {
  contractSuite(realUrl ?? 'unset', async () => {
    const client = new Ollama({ host: realUrl! });
    const wanted = process.env['OLLAMA_MODEL'];
    const { models } = await client.list();
    const model = wanted ?? models[0]?.name;
    if (!model) return null; // nothing installed: every check skips
    return { host: realUrl!.replace(/\/+$/, ''), model, close: async () => {} };
  });
});
