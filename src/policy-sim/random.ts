/**
 * Seeded randomness for the policy simulator: one stream per (seed, purpose), so a run is a pure
 * function of its seed and changing one workload knob does not reshuffle the others.
 */
import { seededRandom } from '../lib/random.js';

/** The project's seeded generator (mulberry32); returns [0, 1). */
export const rng = seededRandom;

/** A seed for one purpose of one run. */
export function subSeed(seed: number, purpose: string): number {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < purpose.length; i++) h = Math.imul(h ^ purpose.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function exponential(r: () => number, mean: number): number {
  return -Math.log(1 - r()) * mean;
}

/** Standard normal by Box-Muller. */
export function normal(r: () => number): number {
  const u = 1 - r();
  const v = r();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Lognormal with the given median and 90th percentile. */
export function lognormal(r: () => number, median: number, p90: number): number {
  const sigma = Math.log(p90 / median) / 1.2815515655446004;
  return median * Math.exp(sigma * normal(r));
}

/** Zipf weights 1/k^s for k = 1..n, normalised. */
export function zipfWeights(n: number, s: number): number[] {
  const w = Array.from({ length: n }, (_, k) => 1 / (k + 1) ** s);
  const sum = w.reduce((a, b) => a + b, 0);
  return w.map((x) => x / sum);
}

/** Index drawn from cumulative weights. */
export function pick(r: () => number, cumulative: readonly number[]): number {
  const x = r();
  for (let i = 0; i < cumulative.length; i++) if (x < cumulative[i]!) return i;
  return cumulative.length - 1;
}

export function cumulative(weights: readonly number[]): number[] {
  let acc = 0;
  return weights.map((w) => (acc += w));
}

/** FNV-1a 32-bit hash of a string (the consistent-hashing ring). */
export function hash32(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  h ^= h >>> 13;
  h = Math.imul(h, 0x5bd1e995);
  return (h ^ (h >>> 15)) >>> 0;
}
