/**
 * Model names as the routing code compares them (`normalizeModel`), remembered: the same few
 * names come with every request, and normalising one is string work a hot path can skip.
 */
import { normalizeModel } from '../contracts/index.js';

/** A `normalizeModel` that remembers up to `limit` names (beyond that it just computes). */
export function memoNormalize(limit = 10_000): (model: string) => string {
  const seen = new Map<string, string>();
  return (model) => {
    let m = seen.get(model);
    if (m === undefined) {
      m = normalizeModel(model);
      if (seen.size < limit) seen.set(model, m);
    }
    return m;
  };
}

/** One shared memo for the routing code (the learner, the index, the balanced rule). */
export const normalizeCached = memoNormalize();
