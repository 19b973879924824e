/**
 * Before the fault suite: forget old row results. After it: write the table this run measured
 * to build/reports/RELIABILITY.md. No test writes a tracked file: `npm run reliability` puts a
 * whole run's table into docs/RELIABILITY.md (scripts/reliability.ts).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readRows, renderTable, REPORTS, ROW_RESULTS } from '../../scripts/reliability.js';

export function setup(): () => void {
  rmSync(ROW_RESULTS, { recursive: true, force: true });
  return () => {
    const rows = readRows();
    if (rows.length === 0) return;
    mkdirSync(REPORTS, { recursive: true });
    writeFileSync(join(REPORTS, 'RELIABILITY.md'), `# Fault suite: this run\n\n${renderTable(rows)}\n`);
  };
}
