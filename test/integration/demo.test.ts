import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Summary } from '../../src/demo/view.js';
import { requireBuilt } from '../helpers/built.js';
import { startRedis } from '../helpers/redis.js';

const bin = join(import.meta.dirname, '../../dist/src/bin/demo.js');
requireBuilt(bin);

describe('the one-command demo', () => {
  it('runs to completion with sticky hits, a cold load, the hot node skipped, and every request answered', async () => {
    const redis = await startRedis();
    const dir = mkdtempSync(join(tmpdir(), 'orion-demo-test-'));
    const summaryFile = join(dir, 'summary.json');
    try {
      const output = await new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, [bin, '--duration', '15s', '--plain', '--redis-addr', redis.addr, '--summary-json', summaryFile, '--log-file', join(dir, 'demo.log')], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        child.on('error', reject);
        child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`demo exited ${code}:\n${out}`))));
      });
      const summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as Summary;
      expect(summary.sent).toBeGreaterThan(20);
      expect(summary.unanswered).toBe(0);
      expect(summary.sticky_hits).toBeGreaterThan(0);
      expect(summary.sticky_hits).toBeGreaterThan(summary.fallbacks);
      expect(summary.cold_loads).toBeGreaterThan(0);
      expect(Object.keys(summary.errors).every((code) => code === 'model_not_found')).toBe(true);
      expect(output).toContain('bridge: pi-8g skipped: temperature (was eligible)');
      expect(output).toContain('bridge: pi-8g eligible (was skipped: temperature)');
      expect(output).toContain('Summary');
    } finally {
      await redis.stop();
    }
  }, 180_000);
});
