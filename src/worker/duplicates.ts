/**
 * Two workers started with the same --node-id overwrite each other's health and share one
 * queue, unnoticed. Each worker process has a random instance id, published in its health
 * document (`instance_id`); before each write it reads the document it replaces. One written
 * by another instance within the window means a second process runs under this node id: the
 * worker warns (when first seen, then once a window while it lasts) and publishes the other ids
 * in `duplicate_instances`, which the bridge's /nodes shows.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../lib/logger.js';

/** How long another instance counts as present after its document was last seen. */
export const DUPLICATE_WINDOW_MS = 60_000;

/** The `instance_id` of a health document's JSON, if it has one. */
export function instanceIdOf(json: string | null | undefined): string | undefined {
  if (!json) return undefined;
  try {
    const doc = JSON.parse(json) as { instance_id?: unknown };
    return typeof doc.instance_id === 'string' && doc.instance_id !== '' ? doc.instance_id : undefined;
  } catch {
    return undefined;
  }
}

export class DuplicateWatch {
  readonly instanceId: string;
  /** Other instance id -> when its document was last seen (ms). */
  private readonly others = new Map<string, number>();
  private warnedAt = -Infinity;

  constructor(instanceId: string = randomUUID()) {
    this.instanceId = instanceId;
  }

  /** The other instances seen within the window, sorted. */
  current(now: number): string[] {
    for (const [id, at] of this.others) if (now - at > DUPLICATE_WINDOW_MS) this.others.delete(id);
    return [...this.others.keys()].sort();
  }

  /**
   * The document this worker's write replaced (its JSON, or null). Returns the other instance
   * ids when a warning is due now, else undefined.
   */
  replaced(previous: string | null | undefined, now: number, nodeId: string, log: Logger): string[] | undefined {
    const other = instanceIdOf(previous);
    if (other !== undefined && other !== this.instanceId) this.others.set(other, now);
    const ids = this.current(now);
    if (ids.length === 0 || now - this.warnedAt < DUPLICATE_WINDOW_MS) return undefined;
    this.warnedAt = now;
    log.warn(
      { node: nodeId, instance_id: this.instanceId, duplicate_instances: ids },
      'another worker process publishes health under this node id; give each worker its own --node-id',
    );
    return ids;
  }
}
