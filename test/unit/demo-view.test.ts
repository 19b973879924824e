import { describe, expect, it } from 'vitest';
import { PLAIN, fit, newTally, screen, styleFor, summarize, summaryText, type NodeRow } from '../../src/demo/view.js';

const rows: NodeRow[] = ['pi-16g', 'pi-8g'].map((id, i) => ({
  node_id: id, cpu_percent: 10, ram_percent: 40 + i, temp_celsius: 55, models: ['llama3.2:3b', 'gemma3:1b', 'qwen2.5:0.5b'], available: true,
  last_seen: '2026-01-19T12:00:00Z', eligible: i === 0, excluded_reason: i === 0 ? undefined : 'temperature',
}));
const header = ['ORION inference demo: 2 simulated Pi 5s, x20 time, 3 req/s, 60 s', '  Bull Board http://localhost:8080/admin/queues   Ctrl-C stops', '  http://localhost:8080/nodes   http://localhost:8080/stats', '  http://localhost:8080/metrics', '  redis-cli -p 6390 HGETALL orion:inference:health'];
const events = Array.from({ length: 50 }, (_, i) => `12:00:${String(i).padStart(2, '0')} r-${i} gemma3:1b → pi-16g fallback, 1234 ms, COLD LOAD 9.6 s on a Pi, with a very long tail of words that would wrap`);

describe('the demo live view', () => {
  it('fits 80x24: no line over 80 columns, at most 23 lines, title and URLs first and whole', () => {
    const lines = screen(header, rows, newTally(), events, 5, 60, { columns: 80, rows: 24 }, PLAIN).split('\n');
    expect(lines.length).toBeLessThanOrEqual(23);
    for (const l of lines) expect([...l].length).toBeLessThanOrEqual(80);
    expect(lines.slice(0, header.length)).toEqual(header);
    expect(lines.at(-1)).toMatch(/r-49 .*…$/);
  });

  it('cuts a long line at a word, never mid-word', () => {
    expect(fit('alpha beta gamma delta', 14)).toBe('alpha beta…');
    expect(fit('short', 14)).toBe('short');
  });

  it('colours only on a terminal without NO_COLOR', () => {
    const colour = styleFor(true, {});
    expect(colour).not.toBe(PLAIN);
    expect(styleFor(true, { NO_COLOR: '1' })).toBe(PLAIN);
    expect(styleFor(false, {})).toBe(PLAIN);
    expect(screen(header, rows, newTally(), events, 5, 60, { columns: 80, rows: 24 }, colour)).toContain('\x1b[32meligible\x1b[0m');
  });

  it('summarises the bridge with its own consistent counters, not a raw /stats dump', () => {
    const s = summarize(newTally(), 20, { total_routed: 177, sticky_hits: 160, fallbacks: 17, errors: 2, cluster_total_routed: 175 });
    const text = summaryText(s);
    expect(text).toContain("the bridge's /stats: 177 placed on a node (160 sticky + 17 fallback), 2 refused");
    expect(text).not.toContain('cluster');
    expect(text).not.toContain('total_routed');
  });
});
