import { describe, expect, it } from 'vitest';
import { BEGIN, END, renderTable, splice, type RowReport } from '../../scripts/reliability.js';

describe('docs/RELIABILITY.md from a fault-suite run', () => {
  const rows: RowReport[] = [
    { row: 2, title: 'kill a worker', figures: { answered: '100/100', 'seconds': 5 } },
    { row: 1, title: 'throughput', figures: { answered: '1000/1000' } },
  ];

  it('renders one table line per row with its figures', () => {
    const t = renderTable(rows, new Date('2026-01-01T00:00:00Z'));
    expect(t).toMatch(/^Last run: 2026-01-01T00:00:00.000Z on Node v\d+/);
    expect(t).toContain('| 2 | kill a worker | answered: 100/100; seconds: 5 |');
    expect(t).toContain('| 1 | throughput | answered: 1000/1000 |');
  });

  it('replaces only what lies between the markers, keeping the prose around them', () => {
    const doc = `# Title\n\nProse before.\n\n${BEGIN}\nold table\n${END}\n\n## Notes someone added\n\nMore prose.\n`;
    const out = splice(doc, 'new table');
    expect(out).toBe(`# Title\n\nProse before.\n\n${BEGIN}\nnew table\n${END}\n\n## Notes someone added\n\nMore prose.\n`);
    expect(splice(out, 'new table')).toBe(out);
  });

  it('adds the markers at the end of a document that has none', () => {
    expect(splice('# Title\n', 'table')).toBe(`# Title\n\n${BEGIN}\ntable\n${END}\n`);
  });
});
