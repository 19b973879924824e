/**
 * docs/RELIABILITY.md from a fault-suite run. The suite (`vitest run --project faults`) writes one
 * JSON file per row under build/reports/faults/ and the table it measured to
 * build/reports/RELIABILITY.md, and never touches a tracked file. `npm run reliability` runs the
 * whole suite and then this script, which puts the table into docs/RELIABILITY.md between the
 * markers below, leaving every other line of the document as it was.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { projectRoot } from '../src/lib/paths.js';

/** One row of the fault suite's table, written by the row's test. */
export interface RowReport {
  row: number;
  title: string;
  figures: Record<string, string | number>;
}

/** Rows of the whole fault suite: one per file test/faults/NN-*.test.ts. */
export function rowsInSuite(root = projectRoot()): number[] {
  return readdirSync(join(root, 'test/faults'))
    .map((f) => /^(\d+)-.*\.test\.ts$/.exec(f)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}
export const BEGIN = '<!-- fault-suite table: written by `npm run reliability`; edit outside these markers -->';
export const END = '<!-- end of fault-suite table -->';

const ROOT = projectRoot();
export const REPORTS = join(ROOT, 'build/reports');
export const ROW_RESULTS = join(REPORTS, 'faults');
const DOC = join(ROOT, 'docs/RELIABILITY.md');

export function readRows(dir = ROW_RESULTS): RowReport[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as RowReport)
    .sort((a, b) => a.row - b.row);
}

function redisVersion(): string {
  try {
    return execFileSync('redis-server', ['--version']).toString().trim().split(' ').slice(0, 3).join(' ');
  } catch {
    return 'redis-server';
  }
}

/** The generated block: when and where it ran, then one table line per row. */
export function renderTable(rows: readonly RowReport[], at = new Date()): string {
  return [
    `Last run: ${at.toISOString()} on Node ${process.version}, ${redisVersion()}, ${rows.length} of ${rowsInSuite().length} rows.`,
    '',
    '| # | fault | measured |',
    '|---|-------|----------|',
    ...rows.map((r) => `| ${r.row} | ${r.title} | ${Object.entries(r.figures).map(([k, v]) => `${k}: ${v}`).join('; ')} |`),
  ].join('\n');
}

/** The document with the block between the markers replaced (the markers are added at the end if absent). */
export function splice(doc: string, block: string): string {
  const b = doc.indexOf(BEGIN);
  const e = doc.indexOf(END);
  const inner = `${BEGIN}\n${block}\n${END}`;
  if (b === -1 || e === -1 || e < b) return `${doc.trimEnd()}\n\n${inner}\n`;
  return doc.slice(0, b) + inner + doc.slice(e + END.length);
}

function main(): number {
  const rows = readRows();
  const missing = rowsInSuite().filter((r) => !rows.some((x) => x.row === r));
  if (missing.length > 0) {
    console.error(`docs/RELIABILITY.md left as it was: rows ${missing.join(', ')} have no result in ${ROW_RESULTS} (run the whole fault suite: npm run reliability)`);
    return 1;
  }
  writeFileSync(DOC, splice(readFileSync(DOC, 'utf8'), renderTable(rows)));
  console.log(`docs/RELIABILITY.md: table of ${rows.length} rows written`);
  return 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main();
