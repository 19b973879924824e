/**
 * Tests that run the built programs (the fault suite, the demo, the bench smoke test) need
 * `dist/`. Without it they fail, saying so, rather than being skipped without a word.
 */
import { existsSync } from 'node:fs';
import { relative } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;

/** Throws unless every file exists: "dist/... is missing: run `npm run build` first". */
export function requireBuilt(...files: string[]): void {
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length === 0) return;
  throw new Error(
    `${missing.map((f) => relative(ROOT, f)).join(', ')} missing: this test runs the built programs; ` +
      'run `npm run build` first (npm test, npm run test:integration and npm run test:faults build before they run)',
  );
}
