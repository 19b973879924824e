/**
 * Arrivals for the policy simulator: Poisson or bursty (a two-state modulated Poisson process),
 * Zipf popularity over the catalogue's models, chat-like lengths, or a recorded log replayed.
 *
 * Recorded log (JSONL, one arrival a line, never any content):
 *   {"at_ms": 1733390000123, "model": "gemma3:1b", "prompt_tokens": 142, "eval_tokens": 210}
 * `at_ms` is any millisecond clock (epoch ms from the bridge); lines may come in any order and
 * the replay starts at the earliest. `prompt_tokens` and `eval_tokens` are Ollama's prompt_eval_count and eval_count; when
 * missing they are drawn like the synthetic workload's.
 */
import { cumulative, exponential, lognormal, pick, rng, subSeed, zipfWeights } from './random.js';

/** Popularity order: small chat models first, the 8B model last (it runs only on 8/16 GB). */
export const MODELS = ['gemma3:1b', 'llama3.2:1b', 'qwen2.5:0.5b', 'llama3.2:3b', 'tinyllama:latest', 'llama3.1:8b'];
export const ZIPF_S = 1.0;
/** Answer length, tokens: median 130, p90 420 (Azure LLM chat trace 2023: p50 129, p90 424). */
export const EVAL_MEDIAN = 130;
export const EVAL_P90 = 420;
/**
 * Prompt length, tokens: median 150, p90 600. Shorter than the Azure trace (p50 1,020), which
 * comes from datacentre chat; on a Pi 5 a 1,000-token prompt alone takes 20-60 s.
 */
export const PROMPT_MEDIAN = 150;
export const PROMPT_P90 = 600;
export const MAX_TOKENS = 4096;

export type ArrivalKind = 'poisson' | 'bursty' | 'replay';

export interface Arrival {
  at: number;
  model: string;
  promptTokens: number;
  evalTokens: number;
}

export function modelWeights(): { model: string; weight: number }[] {
  const w = zipfWeights(MODELS.length, ZIPF_S);
  return MODELS.map((model, i) => ({ model, weight: w[i]! }));
}

/** Mean of a lognormal with this median and p90, capped like the draws. */
export function lognormalMean(median: number, p90: number): number {
  const sigma = Math.log(p90 / median) / 1.2815515655446004;
  return median * Math.exp((sigma * sigma) / 2);
}

export function lengths(r: () => number): { promptTokens: number; evalTokens: number } {
  return {
    promptTokens: Math.min(MAX_TOKENS, Math.max(1, Math.round(lognormal(r, PROMPT_MEDIAN, PROMPT_P90)))),
    evalTokens: Math.min(MAX_TOKENS, Math.max(1, Math.round(lognormal(r, EVAL_MEDIAN, EVAL_P90)))),
  };
}

/**
 * `count` arrivals at `ratePerS` on average. Bursty: periods of high rate (2.2x, mean 60 s) and
 * low rate (0.4x, mean 120 s) alternate, the same mean rate, an inter-arrival CV well above 1.
 */
export function generate(kind: 'poisson' | 'bursty', count: number, ratePerS: number, seed: number): Arrival[] {
  const ra = rng(subSeed(seed, 'arrivals'));
  const rm = rng(subSeed(seed, 'models'));
  const rl = rng(subSeed(seed, 'lengths'));
  const cum = cumulative(modelWeights().map((m) => m.weight));
  const out: Arrival[] = [];
  const meanGap = 1000 / ratePerS;
  let t = 0;
  let high = false;
  let phaseEnd = kind === 'bursty' ? exponential(ra, 120_000) : Number.POSITIVE_INFINITY;
  while (out.length < count) {
    const gap = kind === 'bursty' ? meanGap / (high ? 2.2 : 0.4) : meanGap;
    const next = t + exponential(ra, gap);
    if (next > phaseEnd) {
      // Memoryless: restart the draw at the phase change with the new rate.
      t = phaseEnd;
      high = !high;
      phaseEnd = t + exponential(ra, high ? 60_000 : 120_000);
      continue;
    }
    t = next;
    out.push({ at: t, model: MODELS[pick(rm, cum)]!, ...lengths(rl) });
  }
  return out;
}

/** Parse a recorded log; throws naming the first bad line. */
export function parseReplay(text: string, seed: number): Arrival[] {
  const rl = rng(subSeed(seed, 'lengths'));
  const out: Arrival[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch {
      throw new Error(`replay line ${i + 1}: not JSON`);
    }
    const d = doc as { at_ms?: unknown; model?: unknown; prompt_tokens?: unknown; eval_tokens?: unknown };
    if (typeof d.at_ms !== 'number' || !Number.isFinite(d.at_ms) || typeof d.model !== 'string') {
      throw new Error(`replay line ${i + 1}: needs a numeric at_ms and a model`);
    }
    const drawn = lengths(rl);
    const tok = (v: unknown, dflt: number): number => (typeof v === 'number' && v >= 1 ? Math.min(MAX_TOKENS, Math.round(v)) : dflt);
    out.push({ at: d.at_ms, model: d.model, promptTokens: tok(d.prompt_tokens, drawn.promptTokens), evalTokens: tok(d.eval_tokens, drawn.evalTokens) });
  }
  out.sort((a, b) => a.at - b.at);
  const first = out[0]?.at ?? 0;
  for (const a of out) a.at -= first;
  return out;
}

/** The log line for one arrival, as the bridge would record it. */
export function replayLine(a: Arrival, epochMs = 0): string {
  return JSON.stringify({ at_ms: Math.round(epochMs + a.at), model: a.model, prompt_tokens: a.promptTokens, eval_tokens: a.evalTokens });
}
