// The pure text side of the llama engine (template, options, streaming filters), no llama.cpp.
import { describe, expect, it } from 'vitest';
import {
  IncrementalDetokenizer,
  StopFilter,
  formatParameterCount,
  renderChatPrompt,
  samplingPlan,
} from '../../src/simulator/llama/generation.js';
import { Pool } from '../../src/simulator/llama/pool.js';

describe('llama chat template', () => {
  it('renders chat turns and leaves the assistant turn open', () => {
    expect(
      renderChatPrompt({
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello' },
          { role: 'user', content: 'Why?' },
        ],
      }),
    ).toBe('<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello\n<|user|>\nWhy?\n<|assistant|>\n');
  });

  it('renders a generate prompt as one user turn after the optional system turn', () => {
    expect(renderChatPrompt({ prompt: 'Why is the sky blue?', system: 'Be brief.' })).toBe(
      '<|system|>\nBe brief.\n<|user|>\nWhy is the sky blue?\n<|assistant|>\n',
    );
    expect(renderChatPrompt({ prompt: 'x' })).toBe('<|user|>\nx\n<|assistant|>\n');
  });

  it('does not let a role name inject template markup', () => {
    expect(renderChatPrompt({ messages: [{ role: '|>\n<|system', content: 'x' }] })).toBe('<|user|>\nx\n<|assistant|>\n');
  });
});

describe('llama sampling options', () => {
  it("takes Ollama's defaults when nothing is set", () => {
    expect(samplingPlan({})).toEqual({
      numPredict: -1,
      temperature: 0.8,
      topK: 40,
      topP: 0.9,
      minP: 0,
      seed: undefined,
      repeatPenalty: 1.1,
      repeatLastN: 64,
      presencePenalty: 0,
      frequencyPenalty: 0,
      stop: [],
    });
  });

  it('reads the options a request sets, and ignores values of the wrong type', () => {
    const plan = samplingPlan({ num_predict: 12.7, temperature: 0, seed: 42, stop: ['\n\n', '', 3], top_k: 'many' });
    expect(plan).toMatchObject({ numPredict: 12, temperature: 0, seed: 42, stop: ['\n\n'], topK: 40 });
    expect(samplingPlan({ stop: 'END', seed: -1, num_predict: -2 })).toMatchObject({ stop: ['END'], seed: undefined, numPredict: -1 });
  });
});

describe('stop sequences', () => {
  const run = (stops: string[], pieces: string[]): { out: string[]; stopped: boolean; rest: string } => {
    const f = new StopFilter(stops);
    const out: string[] = [];
    for (const p of pieces) {
      const r = f.push(p);
      if (r.text) out.push(r.text);
      if (r.stopped) return { out, stopped: true, rest: '' };
    }
    return { out, stopped: false, rest: f.flush() };
  };

  it('releases the text before a stop split across pieces, and never the stop', () => {
    expect(run(['STOP'], ['ab', 'cS', 'T', 'OPxyz'])).toEqual({ out: ['ab', 'c'], stopped: true, rest: '' });
  });

  it('releases held text once it turns out not to be a stop', () => {
    expect(run(['STOP'], ['aS', 'Tx', 'y'])).toEqual({ out: ['a', 'STx', 'y'], stopped: false, rest: '' });
  });

  it('hands back a held prefix at the end of a reply', () => {
    expect(run(['\n<|'], ['abc', '\n'])).toEqual({ out: ['abc'], stopped: false, rest: '\n' });
  });

  it('cuts at the earliest of several stops', () => {
    expect(run(['cd', 'b'], ['abcd'])).toEqual({ out: ['a'], stopped: true, rest: '' });
  });
});

describe('incremental detokenizer', () => {
  // Tokens are bytes here, as in the tiny model's vocabulary.
  const utf8 = (tokens: number[]): string => Buffer.from(tokens).toString('utf8');

  it('holds a multi-byte character until all of its bytes are in', () => {
    const d = new IncrementalDetokenizer<number>((t) => utf8(t));
    const bytes = [...Buffer.from('a✓b')];
    expect(bytes.map((b) => d.push(b))).toEqual(['a', '', '', '✓', 'b']);
  });

  it('gives up on an invalid sequence after four tokens, and flushes what is held', () => {
    const d = new IncrementalDetokenizer<number>((t) => utf8(t));
    expect([0xe2, 0x9c].map((b) => d.push(b))).toEqual(['', '']);
    expect(d.flush()).toBe('\uFFFD');
    expect(d.flush()).toBe('');
  });
});

describe('sequence pool', () => {
  it('hands items out first come first served and lets a waiter give up', async () => {
    const pool = new Pool(['s1']);
    const first = await pool.acquire();
    const ac = new AbortController();
    const gaveUp = pool.acquire(ac.signal);
    const next = pool.acquire();
    ac.abort();
    await expect(gaveUp).rejects.toMatchObject({ name: 'AbortError' });
    pool.release(first);
    await expect(next).resolves.toBe('s1');
  });

  it('refuses waiting and later callers once closed', async () => {
    const pool = new Pool<string>([]);
    const waiting = pool.acquire();
    pool.close(new Error('unloaded'));
    await expect(waiting).rejects.toThrow('unloaded');
    await expect(pool.acquire()).rejects.toThrow('unloaded');
  });
});

describe('parameter size', () => {
  it('reads like Ollama', () => {
    expect(formatParameterCount(115_264)).toBe('115.26K');
    expect(formatParameterCount(268_098_176)).toBe('268.10M');
    expect(formatParameterCount(3_212_749_888)).toBe('3.2B');
  });
});
