/**
 * What the bridge watches for in the node registry besides health: entries that are no node id
 * (junk a worker's ACL user could write), and one node id used by two worker processes.
 */
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';

/** How long an instance id counts as seen, and how often a duplicate is warned about again. */
export const INSTANCE_WINDOW_MS = 60_000;

/**
 * Instance ids of each node's health documents over time. A node whose document goes back to
 * an instance id after another one was seen (A, B, A) has two worker processes; a single
 * change (A, B) is a restart.
 */
export class InstanceTracker {
  private readonly nodes = new Map<string, { last: string; seen: Map<string, number>; flippedAt: number; warnedAt: number }>();

  /** Note the instance ids of this refresh's documents; returns the nodes with duplicates. */
  see(docs: ReadonlyMap<string, Record<string, unknown>>, now: number, log: Logger): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [node, doc] of docs) {
      const own = typeof doc['instance_id'] === 'string' ? doc['instance_id'] : undefined;
      const reported = Array.isArray(doc['duplicate_instances']) ? doc['duplicate_instances'].filter((x): x is string => typeof x === 'string') : [];
      if (own === undefined && reported.length === 0) continue;
      let r = this.nodes.get(node);
      if (!r && own !== undefined) this.nodes.set(node, (r = { last: own, seen: new Map(), flippedAt: -Infinity, warnedAt: -Infinity }));
      if (r && own !== undefined) {
        for (const [id, at] of r.seen) if (now - at > INSTANCE_WINDOW_MS) r.seen.delete(id);
        if (own !== r.last && r.seen.has(own)) r.flippedAt = now;
        r.seen.set(own, now);
        r.last = own;
      }
      const flipping = r !== undefined && now - r.flippedAt <= INSTANCE_WINDOW_MS;
      const ids = new Set([...reported, ...(flipping ? r!.seen.keys() : [])]);
      if (own !== undefined && ids.size > 0) ids.add(own);
      if (ids.size < 2) continue;
      out.set(node, [...ids].sort());
      if (r && now - r.warnedAt >= INSTANCE_WINDOW_MS) {
        r.warnedAt = now;
        log.warn({ node, instances: [...ids].sort() }, 'more than one worker process publishes health under this node id; give each its own --node-id');
      }
    }
    for (const node of this.nodes.keys()) if (!docs.has(node)) this.nodes.delete(node);
    return out;
  }
}

/** How often the same junk in the registry is warned about again. */
export const JUNK_WARN_EVERY_MS = 10 * 60_000;

/**
 * Registry entries that are no node id: warned about when first seen and then at most every
 * JUNK_WARN_EVERY_MS, not at every refresh.
 */
export class JunkWarnings {
  private readonly warnedAt = new Map<string, number>();

  /** The entries of this refresh that are junk; returns those warned about now. */
  see(junk: readonly string[], now: number, log: Logger, n: Names): string[] {
    const present = new Set(junk);
    for (const id of this.warnedAt.keys()) if (!present.has(id)) this.warnedAt.delete(id);
    const due = junk.filter((id) => now - (this.warnedAt.get(id) ?? -Infinity) >= JUNK_WARN_EVERY_MS);
    if (due.length === 0) return due;
    for (const id of due) this.warnedAt.set(id, now);
    log.warn(
      { entries: due.slice(0, 20).map((id) => id.slice(0, 80)), count: junk.length, keys: [n.health, n.nodes] },
      'registry entries that are no node id (1-64 of [A-Za-z0-9._-]) skipped; remove them with HDEL/SREM',
    );
    return due;
  }
}
