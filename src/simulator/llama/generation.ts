/**
 * The pure parts of a llama generation: the chat template, Ollama's options read into sampler
 * settings, and the two filters between sampled tokens and the text streamed back (whole UTF-8
 * characters only, and nothing past a stop sequence). Nothing here touches node-llama-cpp.
 */
import type { EngineMessage } from '../engine.js';

/** A reply ends where the model opens a new turn. */
export const END_OF_TURN_STOP = '\n<|';

/**
 * The chat template, chosen by us and passed explicitly (node-llama-cpp's automatic template
 * detection costs about 450 ms per chat). Each turn is `<|role|>\n{content}\n`; the prompt ends
 * with `<|assistant|>\n` for the model to continue. `/api/generate` goes through the same
 * template (optional system turn, then the prompt as a user turn), as Ollama applies a model's
 * template to a non-raw generate.
 */
export function renderChatPrompt(input: { prompt?: string; system?: string; messages?: EngineMessage[] }): string {
  const turns: EngineMessage[] = input.system ? [{ role: 'system', content: input.system }] : [];
  turns.push(...(input.messages ?? [{ role: 'user', content: input.prompt ?? '' }]));
  const role = (r: string): string => (/^[a-z_]{1,32}$/.test(r) ? r : 'user');
  return turns.map((t) => `<|${role(t.role)}|>\n${t.content}\n`).join('') + '<|assistant|>\n';
}

/** Ollama's options as the sampler needs them, with Ollama's defaults. */
export interface SamplingPlan {
  /** Most tokens to generate; -1 = until end of sequence or a full context. */
  numPredict: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  /** Undefined: a fresh random seed per request, as Ollama does. */
  seed: number | undefined;
  repeatPenalty: number;
  /** Last tokens the penalties look at; -1 = the whole context, 0 = none. */
  repeatLastN: number;
  presencePenalty: number;
  frequencyPenalty: number;
  stop: string[];
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Read Ollama options; values of the wrong type fall back to the default. */
export function samplingPlan(options: Record<string, unknown>): SamplingPlan {
  const stop = options['stop'];
  const numPredict = num(options['num_predict']);
  const seed = num(options['seed']);
  return {
    numPredict: numPredict === undefined || numPredict < 0 ? -1 : Math.trunc(numPredict),
    temperature: Math.max(0, num(options['temperature']) ?? 0.8),
    topK: Math.max(0, Math.trunc(num(options['top_k']) ?? 40)),
    topP: Math.min(1, Math.max(0, num(options['top_p']) ?? 0.9)),
    minP: Math.min(1, Math.max(0, num(options['min_p']) ?? 0)),
    // Ollama treats a negative seed as "random".
    seed: seed === undefined || seed < 0 ? undefined : Math.trunc(seed),
    repeatPenalty: num(options['repeat_penalty']) ?? 1.1,
    repeatLastN: Math.trunc(num(options['repeat_last_n']) ?? 64),
    presencePenalty: num(options['presence_penalty']) ?? 0,
    frequencyPenalty: num(options['frequency_penalty']) ?? 0,
    stop:
      typeof stop === 'string'
        ? stop ? [stop] : []
        : Array.isArray(stop)
          ? stop.filter((s): s is string => typeof s === 'string' && s !== '')
          : [],
  };
}

/**
 * Turns tokens into text without splitting a UTF-8 character: a token that ends inside a
 * multi-byte character is held until the character is complete (at most 4 tokens).
 */
export class IncrementalDetokenizer<T> {
  private pending: T[] = [];
  private recent: T[] = [];

  /** `detokenize(tokens, before)`: text of `tokens`, given the tokens just `before` them. */
  constructor(private readonly detokenize: (tokens: T[], before: T[]) => string) {}

  push(token: T): string {
    this.pending.push(token);
    const text = this.detokenize(this.pending, this.recent);
    if (text.endsWith('\uFFFD') && this.pending.length < 4) return '';
    return this.take(text);
  }

  /** Whatever is held, even if incomplete. */
  flush(): string {
    return this.pending.length ? this.take(this.detokenize(this.pending, this.recent)) : '';
  }

  private take(text: string): string {
    this.recent = [...this.recent, ...this.pending].slice(-8);
    this.pending = [];
    return text;
  }
}

/**
 * Streams text while watching for stop sequences: the text before a stop is released, the stop
 * and everything after it never are. Text that might be the start of a stop is held back until
 * it is clearly not.
 */
export class StopFilter {
  private held = '';

  constructor(private readonly stops: readonly string[]) {}

  /** Text that may be sent now, and whether a stop sequence was reached. */
  push(text: string): { text: string; stopped: boolean } {
    const buf = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i !== -1 && (cut === -1 || i < cut)) cut = i;
    }
    if (cut !== -1) {
      this.held = '';
      return { text: buf.slice(0, cut), stopped: true };
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, buf.length); k > hold; k--) {
        if (buf.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    this.held = buf.slice(buf.length - hold);
    return { text: buf.slice(0, buf.length - hold), stopped: false };
  }

  /** The held-back text, at the end of a reply that no stop sequence ended. */
  flush(): string {
    const t = this.held;
    this.held = '';
    return t;
  }
}

/** Ollama-style parameter count: 115.26K, 268.10M, 3.2B. */
export function formatParameterCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)}K`;
  return String(n);
}
