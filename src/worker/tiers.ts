/**
 * How many jobs a node runs at once, from its RAM (SPEC.md section 6):
 *   >= 12 GiB (the 16 GB Pi)  2
 *   6-12 GiB  (the 8 GB Pi)   1
 *   < 6 GiB   (the 4 GB Pi)   refused: kinematics only, no LLM tasks, unless --concurrency says so
 * A "16 GB" board reports a little under 16 GiB of MemTotal (the firmware keeps some), hence
 * thresholds well below the nominal sizes.
 */
import { ConfigError } from '../lib/errors.js';

const GIB = 1024 ** 3;
const TIER_TWO_MIN_BYTES = 12 * GIB;
const TIER_ONE_MIN_BYTES = 6 * GIB;

export interface ConcurrencyChoice {
  concurrency: number;
  /** Where the number came from, for the start-up log. */
  source: 'flag' | 'ram-tier';
  ramTotalBytes: number;
}

export function formatGiB(bytes: number): string {
  return `${(bytes / GIB).toFixed(1)} GiB`;
}

/**
 * The concurrency for a node with `ramTotalBytes` of RAM, or the explicit `override`.
 * Throws a ConfigError saying why when the node is too small and no override is given.
 */
export function chooseConcurrency(ramTotalBytes: number, override?: number): ConcurrencyChoice {
  if (override !== undefined) return { concurrency: override, source: 'flag', ramTotalBytes };
  if (ramTotalBytes >= TIER_TWO_MIN_BYTES) return { concurrency: 2, source: 'ram-tier', ramTotalBytes };
  if (ramTotalBytes >= TIER_ONE_MIN_BYTES) return { concurrency: 1, source: 'ram-tier', ramTotalBytes };
  throw new ConfigError([
    `this node has ${formatGiB(ramTotalBytes)} of RAM, under the 6 GiB an LLM worker needs: ` +
      'the 4 GB Pi is kinematics only, no LLM tasks. Start it anyway with an explicit --concurrency (ORION_CONCURRENCY).',
  ]);
}
