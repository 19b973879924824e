/**
 * P3, the registry's share: what one refresh of the bridge's registry reads and costs with
 * 1,000 nodes of which 200 wrote their health since the refresh before (a second of
 * heartbeats every 5 s). Two registries on the same Redis, refreshed in turn after each round
 * of writes: the bridge's (reads the documents written since its last refresh) and one that
 * reads the whole hash every time (`fullReadMs` 0: what every refresh did before). CPU is this
 * process's (the refresh runs here: the script call, the reply's parsing, the snapshot).
 */
import { Redis } from 'ioredis';
import { silentLogger } from '../src/lib/logger.js';
import { names } from '../src/lib/names.js';
import { Registry } from '../src/router/registry.js';
import { fmtNum, median, type RowResult } from './lib.js';
import { writeNodes, writeSome } from './nodes.js';

export interface RegistryRowOptions {
  port: number;
  nodes: number;
  /** Documents written between two refreshes. */
  changed: number;
  rounds: number;
}

function cpuMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.cpuUsage();
  return fn().then(() => {
    const d = process.cpuUsage(t0);
    return (d.user + d.system) / 1000;
  });
}

export async function runRegistryRow(o: RegistryRowOptions): Promise<RowResult[]> {
  const admin = new Redis(o.port, '127.0.0.1');
  const n = names('bench:registry');
  const thresholds = { maxTemp: 75, maxRam: 90, staleAfterMs: 15_000 };
  const conns = [new Redis(o.port, '127.0.0.1'), new Redis(o.port, '127.0.0.1')];
  try {
    await admin.flushall();
    await writeNodes(admin, n, o.nodes);
    const delta = new Registry({ redis: conns[0]!, n, thresholds, log: silentLogger });
    const full = new Registry({ redis: conns[1]!, n, thresholds, log: silentLogger, fullReadMs: 0 });
    await delta.refresh();
    await full.refresh();
    const ms = { delta: [] as number[], full: [] as number[] };
    const read0 = { delta: delta.reads(), full: full.reads() };
    let next = 0;
    for (let r = 0; r < o.rounds; r++) {
      await writeSome(admin, n, o.nodes, Array.from({ length: o.changed }, (_, j) => (next + j) % o.nodes));
      next = (next + o.changed) % o.nodes;
      // Alternate which goes first, so neither always finds Redis's caches warm.
      const order = r % 2 === 0 ? (['delta', 'full'] as const) : (['full', 'delta'] as const);
      for (const k of order) ms[k].push(await cpuMs(() => (k === 'delta' ? delta : full).refresh()));
    }
    const per = (r: Registry, k: 'delta' | 'full', f: 'docsRead' | 'docsParsed'): number => (r.reads()[f] - read0[k][f]) / o.rounds;
    const readDelta = per(delta, 'delta', 'docsRead');
    const cpuDelta = median(ms.delta);
    const cpuFull = median(ms.full);
    return [
      {
        row: 'P3',
        measure: `registry refresh, ${fmtNum(o.nodes)} nodes, ${o.changed} reported since the last: documents read`,
        detail:
          `${fmtNum(readDelta)} read and ${fmtNum(per(delta, 'delta', 'docsParsed'))} parsed per refresh (reading the whole hash: ${fmtNum(per(full, 'full', 'docsRead'))} read, ${fmtNum(per(full, 'full', 'docsParsed'))} parsed); ` +
          `CPU per refresh ${fmtNum(cpuDelta, 2)} ms vs ${fmtNum(cpuFull, 2)} ms reading the whole hash (median of ${o.rounds})`,
        value: readDelta,
        goal: `= ${o.changed} (what changed)`,
        met: readDelta === o.changed,
      },
    ];
  } finally {
    await admin.flushall().catch(() => undefined);
    for (const c of [admin, ...conns]) c.disconnect();
  }
}
