/**
 * Before the fault suite: forget old row results. After it: gather the rows into
 * docs/RELIABILITY.md, with the figures this run measured.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RowReport } from './harness.js';

const ROOT = join(import.meta.dirname, '../..');
const RESULTS = join(ROOT, 'test/faults/.results');
/** Rows of the fault suite (issue 4's table). */
const ROWS_IN_SUITE = 15;
/** Prose below this line of docs/RELIABILITY.md is written by hand and kept by every run. */
export const PROSE_MARKER = '<!-- Written by hand below this line; the fault suite keeps it. -->';

/** The hand-written part of the document now, from the marker on ('' when there is none). */
function keptProse(file: string): string {
  if (!existsSync(file)) return '';
  const text = readFileSync(file, 'utf8');
  const at = text.indexOf(PROSE_MARKER);
  return at === -1 ? '' : text.slice(at);
}

export function setup(): () => void {
  rmSync(RESULTS, { recursive: true, force: true });
  return () => {
    if (!existsSync(RESULTS)) return;
    const rows = readdirSync(RESULTS)
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(join(RESULTS, f), 'utf8')) as RowReport)
      .sort((a, b) => a.row - b.row);
    if (rows.length === 0) return;
    const redis = (() => {
      try {
        return execFileSync('redis-server', ['--version']).toString().trim().split(' ').slice(0, 3).join(' ');
      } catch {
        return 'redis-server';
      }
    })();
    const lines = [
      '# Reliability: the fault suite',
      '',
      'Written by `npm run test:faults`, which runs the built programs as real processes against a',
      'throwaway redis-server, kills and pauses them, and asserts that nothing is lost. Intervals',
      'are shortened (heartbeat 1 s, health TTL and stale-after 3 s, job lock 3 s) so the suite runs in',
      'minutes; in production they are 5 s, 15 s, 15 s and 10 s, and every time below scales with them.',
      '',
      `Last run: ${new Date().toISOString()} on Node ${process.version}, ${redis}, ${rows.length} rows.`,
      '',
      '| # | fault | measured |',
      '|---|-------|----------|',
      ...rows.map((r) => `| ${r.row} | ${r.title} | ${Object.entries(r.figures).map(([k, v]) => `${k}: ${v}`).join('; ')} |`),
      '',
    ];
    // Only a run of the whole suite rewrites the document; a run of some rows leaves it as it
    // was and writes its rows beside the results.
    const whole = rows.length >= ROWS_IN_SUITE;
    const prose = keptProse(join(ROOT, 'docs/RELIABILITY.md'));
    if (prose) lines.push(prose.trimEnd(), '');
    writeFileSync(whole ? join(ROOT, 'docs/RELIABILITY.md') : join(RESULTS, 'RELIABILITY.partial.md'), lines.join('\n'));
  };
}
