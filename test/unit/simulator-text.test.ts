import { describe, expect, it } from 'vitest';
import { contextIds, countPromptTokens, hash32, planTokens } from '../../src/simulator/text.js';
import { seededRandom } from '../../src/lib/random.js';

const ask = { model: 'gemma3:1b', prompt: 'Why is the sky blue?' };

describe('deterministic text', () => {
  it('gives the same tokens for the same model, prompt and seed', () => {
    expect(planTokens({ ...ask, seed: 3 }, {})).toEqual(planTokens({ ...ask, seed: 3 }, {}));
  });

  it('gives different text for a different seed, prompt, model or system', () => {
    const base = planTokens({ ...ask, seed: 3 }, {}).tokens.join('');
    expect(planTokens({ ...ask, seed: 4 }, {}).tokens.join('')).not.toBe(base);
    expect(planTokens({ ...ask, prompt: 'Why is grass green?', seed: 3 }, {}).tokens.join('')).not.toBe(base);
    expect(planTokens({ ...ask, model: 'llama3.2:3b', seed: 3 }, {}).tokens.join('')).not.toBe(base);
    expect(planTokens({ ...ask, system: 'Be brief.', seed: 3 }, {}).tokens.join('')).not.toBe(base);
  });

  it('keeps the natural length within the bounds and ends a sentence', () => {
    for (let seed = 0; seed < 50; seed++) {
      const { tokens, doneReason } = planTokens({ ...ask, seed }, {});
      expect(tokens.length).toBeGreaterThanOrEqual(8);
      expect(tokens.length).toBeLessThanOrEqual(64);
      expect(tokens.at(-1)).toBe('.');
      expect(doneReason).toBe('stop');
    }
    const long = planTokens(ask, {}, 200, 210);
    expect(long.tokens.length).toBeGreaterThanOrEqual(200);
  });

  it('reads chat messages as the prompt', () => {
    const a = planTokens({ model: 'gemma3:1b', messages: [{ role: 'user', content: 'hi' }] }, {});
    const b = planTokens({ model: 'gemma3:1b', messages: [{ role: 'user', content: 'hello' }] }, {});
    expect(a.tokens.join('')).not.toBe(b.tokens.join(''));
  });

  it('stops at num_predict with done_reason length', () => {
    const { tokens, doneReason } = planTokens(ask, { num_predict: 3 });
    expect(tokens).toHaveLength(3);
    expect(doneReason).toBe('length');
    expect(planTokens(ask, { num_predict: 1000 }).doneReason).toBe('stop');
    expect(planTokens(ask, { num_predict: -1 }).doneReason).toBe('stop');
  });

  it('ends before a stop sequence', () => {
    const full = planTokens({ ...ask, seed: 1 }, {}).tokens;
    const word = full[3]!;
    const { tokens, doneReason } = planTokens({ ...ask, seed: 1 }, { stop: [word] });
    expect(tokens.join('')).not.toContain(word);
    expect(tokens.length).toBeLessThanOrEqual(3);
    expect(doneReason).toBe('stop');
  });

  it('writes a JSON object when a format is asked for', () => {
    const { tokens } = planTokens(ask, {}, 8, 64);
    const json = planTokens({ ...ask, format: 'json' }, {}).tokens.join('');
    expect(tokens.join('')).not.toMatch(/^\{/);
    expect(JSON.parse(json)).toEqual({ answer: expect.any(String) });
    expect(JSON.parse(planTokens({ ...ask, format: { type: 'object' } }, {}).tokens.join(''))).toBeTypeOf('object');
  });
});

describe('helpers', () => {
  it('counts more prompt tokens for longer prompts and for system prompts', () => {
    const short = countPromptTokens({ prompt: 'hi' });
    expect(countPromptTokens({ prompt: 'hi '.repeat(100) })).toBeGreaterThan(short);
    expect(countPromptTokens({ prompt: 'hi', system: 'be kind' })).toBeGreaterThan(short);
    expect(countPromptTokens({ messages: [{ role: 'user', content: 'hi' }] })).toBeGreaterThan(0);
  });

  it('hashes and draws reproducibly', () => {
    expect(hash32('abc')).toBe(hash32('abc'));
    expect(hash32('abc', 1)).not.toBe(hash32('abc', 2));
    const a = seededRandom(9);
    const b = seededRandom(9);
    const draws = Array.from({ length: 5 }, () => a());
    expect(draws).toEqual(Array.from({ length: 5 }, () => b()));
    expect(draws.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it('makes stable context ids', () => {
    expect(contextIds('x', 5)).toEqual(contextIds('x', 5));
    expect(contextIds('x', 5)).toHaveLength(5);
  });
});
