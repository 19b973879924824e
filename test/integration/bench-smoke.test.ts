/**
 * The benchmark in CI, briefly, so it cannot rot: `node dist/bench/run.js --quick --runs 1`
 * must run to the end (exit 0) and print every row P1-P7 and P9 with a number. Figures are not judged
 * here (the machine running CI is not the one the goals are for); BENCHMARKS.md has them.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { requireBuilt } from '../helpers/built.js';

const runJs = fileURLToPath(new URL('../../dist/bench/run.js', import.meta.url));
requireBuilt(runJs);

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [runJs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('benchmark (quick)', () => {
  it('runs every row P1-P7 and P9 and prints a number for each', { timeout: 240_000 }, async () => {
    const { code, stdout, stderr } = await runBench(['--quick', '--runs', '1']);
    expect(code, stderr.slice(-2000)).toBe(0);
    const rows = stdout
      .split('\n')
      .filter((l) => /^\| P\d /.test(l))
      .map((l) => l.split('|').map((c) => c.trim()));
    for (const row of ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P9']) {
      const mine = rows.filter((cells) => cells[1] === row);
      expect(mine.length, `row ${row} in:\n${stdout}`).toBeGreaterThan(0);
      for (const cells of mine) expect(Number.isFinite(Number(cells[3]!.replace(/,/g, ''))), `value of ${cells.join(' | ')}`).toBe(true);
    }
  });
});
