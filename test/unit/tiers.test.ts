import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/lib/errors.js';
import { chooseConcurrency } from '../../src/worker/tiers.js';

const GiB = 1024 ** 3;

describe('concurrency by RAM tier', () => {
  it.each([
    ['the 16 GB Pi (15.8 GiB reported) runs 2 at once', 16_608_704 * 1024, 2],
    ['exactly 12 GiB runs 2 at once', 12 * GiB, 2],
    ['one byte under 12 GiB runs 1', 12 * GiB - 1, 1],
    ['the 8 GB Pi (7.7 GiB reported) runs 1', 8_058_956 * 1024, 1],
    ['exactly 6 GiB runs 1', 6 * GiB, 1],
  ])('%s', (_name, bytes, want) => {
    expect(chooseConcurrency(bytes)).toEqual({ concurrency: want, source: 'ram-tier', ramTotalBytes: bytes });
  });

  it('refuses a node under 6 GiB without --concurrency, saying the 4 GB Pi is kinematics only', () => {
    for (const bytes of [6 * GiB - 1, 3_882_172 * 1024]) {
      let err: unknown;
      try {
        chooseConcurrency(bytes);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const msg = (err as ConfigError).problems.join('\n');
      expect(msg).toMatch(/4 GB Pi is kinematics only/);
      expect(msg).toMatch(/--concurrency/);
      expect(msg).toMatch(/under the 6 GiB/);
    }
  });

  it('an explicit --concurrency wins on every tier, including under 6 GiB', () => {
    expect(chooseConcurrency(3 * GiB, 1)).toMatchObject({ concurrency: 1, source: 'flag' });
    expect(chooseConcurrency(16 * GiB, 4)).toMatchObject({ concurrency: 4, source: 'flag' });
    expect(chooseConcurrency(8 * GiB, 2)).toMatchObject({ concurrency: 2, source: 'flag' });
  });
});
