import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RouterMetrics } from '../../src/router/metrics.js';
import type { Snapshot } from '../../src/router/registry.js';
import { GatewayMetrics } from '../../src/gateway/metrics.js';
import { createWorkerMetrics } from '../../src/worker/metrics.js';

interface Panel {
  type: string;
  title: string;
  targets?: { expr: string }[];
}

const dashboard = JSON.parse(readFileSync(join(import.meta.dirname, '../../dashboards/orion-inference.json'), 'utf8')) as {
  panels: Panel[];
  __inputs: { name: string }[];
};

/** Every metric name the three processes expose, with the series suffixes Prometheus adds. */
async function exposedNames(): Promise<Set<string>> {
  const router = new RouterMetrics({
    snapshot: () => ({ views: new Map(), at: Date.now() }) as unknown as Snapshot,
    depths: async () => new Map(),
  });
  const worker = createWorkerMetrics('pi-8g');
  const out = new Set<string>();
  for (const reg of [router.registry, worker.registry, new GatewayMetrics().registry]) {
    for (const m of await reg.getMetricsAsJSON()) {
      out.add(m.name);
      if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.add(m.name + s);
    }
  }
  return out;
}

describe('the Grafana dashboard', () => {
  it('is importable: a Prometheus data-source input and panels with queries', () => {
    expect(dashboard.__inputs.map((i) => i.name)).toEqual(['DS_PROMETHEUS']);
    const withQueries = dashboard.panels.filter((p) => p.type !== 'row');
    expect(withQueries.length).toBeGreaterThanOrEqual(15);
    for (const p of withQueries) expect(p.targets?.length, p.title).toBeGreaterThan(0);
  });

  it('queries only metrics that the bridge, the worker and the gateway expose', async () => {
    const exposed = await exposedNames();
    const used = new Set<string>();
    for (const p of dashboard.panels) for (const t of p.targets ?? []) for (const m of t.expr.matchAll(/\borion_(?:router|worker|gateway)_[a-z_]+/g)) used.add(m[0]);
    expect(used.size).toBeGreaterThan(10);
    const missing = [...used].filter((name) => !exposed.has(name));
    expect(missing).toEqual([]);
  });
});
