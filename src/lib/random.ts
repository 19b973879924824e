/**
 * The project's one seeded generator, for whatever must repeat from a seed: the Ollama
 * simulator's text and faults, the policy simulator's workloads, property tests.
 */

/** mulberry32: small, fast, good enough for simulation and tests; floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
