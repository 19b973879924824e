import { describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../src/contracts/types.js';
import { healthHandler, nodesHandler } from '../../src/router/http.js';
import type { Snapshot } from '../../src/router/registry.js';
import { RoutingIndex } from '../../src/router/routing-index.js';
import { eligibleInOrder, toNodeView } from '../../src/router/routing.js';
import { countsOf } from '../../src/router/stats.js';

describe('the bridge\'s handlers', () => {
  it('/health is the guide\'s document, keys in the guide\'s order', () => {
    expect(JSON.stringify(healthHandler().body)).toBe('{"status":"ok","service":"orion-inference-router","version":"0.1.0"}');
  });

  it('/nodes puts eligible nodes first in routing order, then the rest by id, each as published plus eligible', () => {
    const now = Date.parse('2026-01-19T12:00:05Z');
    const t = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };
    const docs: Record<string, Record<string, unknown>> = {
      'pi-8g': { node_id: 'pi-8g', cpu_percent: 45.2, ram_percent: 62.1, temp_celsius: 55.0, models: ['gemma3:1b'], available: true, last_seen: '2026-01-19T12:00:00Z' },
      'pi-16g': { node_id: 'pi-16g', cpu_percent: 5, ram_percent: 20, temp_celsius: null, models: [], available: true, last_seen: '2026-01-19T12:00:00Z', worker_version: '0.1.0' },
      'pi-4g': { node_id: 'pi-4g', cpu_percent: 5, ram_percent: 10, temp_celsius: 80, models: [], available: true, last_seen: '2026-01-19T12:00:00Z' },
      'a-off': { node_id: 'a-off', cpu_percent: 5, ram_percent: 10, temp_celsius: 40, models: [], available: false, last_seen: '2026-01-19T12:00:00Z', reason: 'ollama unreachable' },
    };
    const views = new Map(Object.entries(docs).map(([id, d]) => [id, toNodeView(d as unknown as NodeHealth, true, now, t)]));
    const eligible = eligibleInOrder(views.values());
    const snap: Snapshot = { at: now, views, published: new Map(Object.entries(docs)), eligible, index: new RoutingIndex(eligible), known: [...views.keys()], dead: [], modelsAnywhere: new Set(), duplicates: new Map() };
    const body = nodesHandler({ snapshot: () => snap }).body as Record<string, unknown>[];
    expect(body.map((x) => x['node_id'])).toEqual(['pi-16g', 'pi-8g', 'a-off', 'pi-4g']);
    expect(JSON.stringify(body[1])).toBe(
      '{"node_id":"pi-8g","cpu_percent":45.2,"ram_percent":62.1,"temp_celsius":55,"models":["gemma3:1b"],"available":true,"last_seen":"2026-01-19T12:00:00Z","eligible":true}',
    );
    expect(body[2]).toEqual({ ...docs['a-off'], eligible: false, excluded_reason: 'unavailable' });
    expect(body[3]).toMatchObject({ eligible: false, excluded_reason: 'temperature' });
  });

  it('reads counters from a Redis hash, missing ones as 0', () => {
    expect(countsOf({ total_routed: '5', sticky_hits: '4', fallbacks: '1', junk: 'x' })).toMatchObject({ total_routed: 5, sticky_hits: 4, fallbacks: 1, errors: 0 });
  });
});
