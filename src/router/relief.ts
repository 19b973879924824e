/**
 * RAM relief (`--routing balanced`, SPEC.md section 6). A node over `--max-ram` gets no work
 * until it is back under `--readmit-ram`, and nothing else makes its Ollama unload an idle
 * model before the model's keep-alive ends (5 min by default): an 8 GB board that loaded a
 * second model sits out that long. After each registry refresh, such a node with no job waiting
 * or running is asked to unload its least recently used model: a job with an empty prompt and
 * keep_alive 0 (Ollama unloads the model and answers without generating; `sendModelJob`). One
 * model a node at a time: a lock per node (RELIEF_EVERY_MS, across bridges) leaves the node a
 * heartbeat or two to report the RAM it freed before the next one goes.
 */
import type { Logger } from '../lib/logger.js';
import { sendModelJob, type KeepWarmOptions } from './keepwarm.js';
import { RELIEF_EVERY_MS, unloadChoice } from './moves.js';
import type { Placer } from './placer.js';
import type { Snapshot } from './registry.js';
import type { NodeView } from './routing.js';
import type { BridgeStats } from './stats.js';

export interface ReliefOptions extends Pick<KeepWarmOptions, 'redis' | 'n' | 'dispatcher'> {
  log: Logger;
  placer: Placer;
  stats: BridgeStats;
}

export class RamRelief {
  private seq = 0;

  constructor(private readonly o: ReliefOptions) {}

  async pass(s: Snapshot): Promise<void> {
    for (const v of s.views.values()) {
      if (!overRam(v)) continue;
      try {
        await this.relieve(v);
      } catch (err) {
        this.o.log.warn({ node: v.health.node_id, err: (err as Error).message }, 'RAM relief step failed; trying again after the next refresh');
      }
    }
  }

  private async relieve(v: NodeView): Promise<void> {
    const { placer } = this.o;
    const id = v.health.node_id;
    const load = placer.loadOf(id, v.health.models[0]!);
    if (load.waiting + load.running > 0) return; // its jobs come first; the next refresh looks again
    const model = unloadChoice(v.health.models, (m) => placer.lastUse.get(`${id}\u0000${m}`));
    if (model === undefined) return;
    const sent = await sendModelJob(this.o, v, model, { kind: 'unload', keepAlive: '0s', routing: 'sticky', lockKey: `unload@${id}`, lockMs: RELIEF_EVERY_MS, seq: ++this.seq });
    if (!sent) return;
    this.o.stats.ramUnload(id);
    this.o.log.info({ node: id, model, ram_percent: v.health.ram_percent }, 'unloading the least recently used model of a node over its RAM limit');
  }
}

/** Excluded for RAM (over the limit, or not yet under the readmit mark), reporting, with a model loaded. */
function overRam(v: NodeView): boolean {
  return v.excludedReason === 'ram' && v.ttlAlive && v.health.available && v.health.models.length > 0;
}
