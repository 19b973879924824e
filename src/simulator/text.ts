/**
 * Deterministic text: the same (model, prompt or messages, system, seed) always yields the same
 * tokens, and changing any of them yields different ones. Words come from a fixed vocabulary
 * picked by a seeded generator; one token is one word (with its leading space) or a punctuation
 * mark, streamed one per chunk.
 */
import type { EngineMessage } from './engine.js';
import { seededRandom } from '../lib/random.js';

const VOCABULARY = [
  'the', 'sky', 'light', 'blue', 'sun', 'air', 'scatter', 'waves', 'short', 'long',
  'red', 'evening', 'morning', 'cloud', 'rain', 'water', 'ocean', 'reflect', 'color', 'bright',
  'small', 'model', 'answer', 'because', 'when', 'through', 'between', 'over', 'under', 'near',
  'node', 'cluster', 'router', 'memory', 'heat', 'signal', 'quiet', 'steady', 'simple', 'clear',
  'river', 'mountain', 'stone', 'forest', 'path', 'garden', 'window', 'harbor', 'bridge', 'field',
  'is', 'are', 'was', 'makes', 'turns', 'shows', 'holds', 'moves', 'keeps', 'finds',
  'and', 'but', 'so', 'then',
];

/** 32-bit FNV-1a of a string, mixed with a seed. */
export function hash32(text: string, seed = 0): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export interface TextRequest {
  model: string;
  prompt?: string;
  system?: string;
  messages?: EngineMessage[];
  seed?: number;
  /** Ollama's `format`: when set the text is a JSON object. */
  format?: unknown;
}

export interface TokenPlan {
  tokens: string[];
  /** Whether the natural end was cut by num_predict or a stop sequence. */
  doneReason: 'stop' | 'length';
}

/** Approximate prompt tokens the way a chat template would count them. */
export function countPromptTokens(req: Pick<TextRequest, 'prompt' | 'system' | 'messages'>): number {
  const tokensOf = (s: string): number => Math.ceil(s.length / 4);
  if (req.messages) {
    return req.messages.reduce((n, m) => n + 4 + tokensOf(m.content), 3);
  }
  return 8 + tokensOf(req.prompt ?? '') + (req.system ? 4 + tokensOf(req.system) : 0);
}

function naturalTokens(req: TextRequest, minTokens: number, maxTokens: number): string[] {
  const key = JSON.stringify([req.model, req.system ?? '', req.prompt ?? '', req.messages ?? []]);
  const rnd = seededRandom(hash32(key, req.seed ?? 0));
  const count = minTokens + Math.floor(rnd() * (maxTokens - minTokens + 1));
  const words: string[] = [];
  let sentenceStart = true;
  while (words.length < count) {
    let word = VOCABULARY[Math.floor(rnd() * VOCABULARY.length)]!;
    if (sentenceStart) word = word[0]!.toUpperCase() + word.slice(1);
    words.push(words.length === 0 ? word : ` ${word}`);
    sentenceStart = false;
    if (words.length < count - 1 && rnd() < 0.12) {
      words.push(rnd() < 0.6 ? '.' : ',');
      sentenceStart = words[words.length - 1] === '.';
    }
  }
  words.length = count;
  if (words[count - 1] !== '.') words[count - 1] = '.';
  if (req.format !== undefined && req.format !== null && req.format !== '') {
    const body = words.slice(0, Math.max(1, count - 4)).map((w) => w.replace(/"/g, ''));
    return ['{"', 'answer', '": "', ...body, '"}'];
  }
  return words;
}

/**
 * The tokens a request produces: a natural length between minTokens and maxTokens, cut at
 * `num_predict` (done_reason `length`) or before a `stop` sequence (done_reason `stop`).
 */
export function planTokens(
  req: TextRequest,
  options: Record<string, unknown>,
  minTokens = 8,
  maxTokens = 64,
): TokenPlan {
  let tokens = naturalTokens(req, minTokens, maxTokens);
  let doneReason: TokenPlan['doneReason'] = 'stop';
  const stops = toStopList(options['stop']);
  if (stops.length) {
    let text = '';
    for (let i = 0; i < tokens.length; i++) {
      text += tokens[i];
      if (stops.some((s) => text.includes(s))) {
        tokens = tokens.slice(0, i);
        break;
      }
    }
  }
  const numPredict = typeof options['num_predict'] === 'number' ? Math.trunc(options['num_predict']) : -1;
  if (numPredict > 0 && numPredict <= tokens.length) {
    tokens = tokens.slice(0, numPredict);
    doneReason = 'length';
  }
  return { tokens, doneReason };
}

function toStopList(v: unknown): string[] {
  if (typeof v === 'string') return v ? [v] : [];
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === 'string' && s !== '');
  return [];
}

/** Token ids for generate's (deprecated) `context` field: stable, meaningless numbers. */
export function contextIds(text: string, count: number): number[] {
  const rnd = seededRandom(hash32(text));
  return Array.from({ length: Math.min(count, 256) }, () => 1 + Math.floor(rnd() * 128_000));
}
