/**
 * Warm copies (`--routing balanced`, SPEC.md section 6), after each registry refresh: the last
 * warm copy of a model asked for recently is kept from expiring. Shortly before Ollama would
 * unload it (its last use + `--model-keep-alive`), and when no job of its node would renew it
 * anyway, a keep-alive job goes to that node: an ORION request with an empty prompt (Ollama
 * keeps the model for `keep_alive` and answers without generating), id `orion-keep-warm-...`,
 * answered on `{p}:responses:orion-keep-warm` (kept short; no client reads it). A short lock
 * per model and node keeps sibling bridges from sending the same.
 *
 * Second copies are not started on speculation here: a load ahead of demand, on a backlog of two
 * or three jobs, is one the warm node would have beaten (measured in the policy simulator). A
 * second copy starts when a job would start sooner there, load and cold margin included: the
 * placer for new jobs, the Mover for the back of a backlog (moves.ts).
 *
 * When the copy will expire: Ollama's own `expires_at`, which the node's health document
 * carries (`models_expire_at`, on Redis's clock). From a worker that does not publish it, the
 * bridge counts from the copy's last use it saw; when it saw none (e.g. after a restart), from
 * the moment it first saw the copy, which is at or after the real last use, so Ollama may unload
 * the copy before the renewal is due: that errs towards a renewal missed (the model loads again
 * on demand) rather than one sent for nothing.
 */
import type { Redis } from 'ioredis';
import { normalizeModel } from '../contracts/index.js';
import type { InferenceRequest } from '../contracts/types.js';
import type { InferenceJobData } from '../lib/bus.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import type { Dispatcher } from './dispatcher.js';
import { shouldRenewKeepAlive } from './moves.js';
import type { Placer } from './placer.js';
import type { Snapshot } from './registry.js';
import type { NodeView } from './routing.js';
import type { BridgeStats } from './stats.js';

export interface KeepWarmOptions {
  redis: Redis;
  n: Names;
  log: Logger;
  dispatcher: Dispatcher;
  placer: Placer;
  stats: BridgeStats;
  /** How long Ollama keeps an idle model loaded (its keep_alive); also what a renewal asks for. @defaultValue 5 min */
  modelKeepAliveMs?: number;
  /** A model asked for within this is in demand. @defaultValue 10 min */
  demandWindowMs?: number;
}

export class KeepWarm {
  private seq = 0;

  constructor(private readonly o: KeepWarmOptions) {}

  async pass(s: Snapshot): Promise<void> {
    const { placer } = this.o;
    const now = placer.now();
    const demandWindow = this.o.demandWindowMs ?? 600_000;
    const warm = warmNodes(s);
    for (const [model, last] of placer.lastDemand) {
      if (now - last > demandWindow) continue;
      const copies = warm.get(model) ?? [];
      try {
        if (copies.length === 1) await this.renew(copies[0]!, model, last, now, s.at);
      } catch (err) {
        this.o.log.warn({ model, err: (err as Error).message }, 'keep-warm step failed; trying again after the next refresh');
      }
    }
  }

  /** `at`: the snapshot's time on Redis's clock (the clock of the health documents). */
  private async renew(node: NodeView, model: string, lastDemandMs: number, now: number, at: number): Promise<void> {
    const { placer } = this.o;
    const id = node.health.node_id;
    const load = placer.loadOf(id, model);
    if (load.waiting + load.running > 0) return; // a job there renews it anyway
    const left = expiresInMs(node, model, at);
    let expiresAtMs: number;
    if (left !== undefined) expiresAtMs = now + left;
    else {
      const lastUse = placer.lastUse.get(`${id}\u0000${model}`);
      if (lastUse === undefined) {
        // Never seen used here: count from now (the bridge does not know when Ollama last used it).
        placer.lastUse.set(`${id}\u0000${model}`, now);
        return;
      }
      expiresAtMs = lastUse + (this.o.modelKeepAliveMs ?? 300_000);
    }
    if (!shouldRenewKeepAlive({ warmCopies: 1, lastDemandMs, expiresAtMs, now })) return;
    if (await this.send(node, model, 'sticky')) {
      this.o.stats.keptWarm(id);
      this.o.log.info({ node: id, model }, 'keep-alive renewed: the last warm copy of a model in demand');
    }
  }

  /** Put a keep-alive job on `node` (at most one per model and node a minute, across bridges). */
  private send(node: NodeView, model: string, routing: 'sticky'): Promise<boolean> {
    const keepAlive = `${Math.round((this.o.modelKeepAliveMs ?? 300_000) / 1000)}s`;
    return sendModelJob(this.o, node, model, { kind: 'keep-warm', keepAlive, routing, lockKey: `${model}@${node.health.node_id}`, lockMs: 60_000, seq: ++this.seq });
  }
}

/** What `sendModelJob` sends: a keep-alive renewal or an unload (keep_alive 0). */
export interface ModelJob {
  kind: 'keep-warm' | 'unload';
  /** Ollama's keep_alive for the model after the job: a renewal's duration, or '0s' to unload. */
  keepAlive: string;
  routing: 'sticky';
  /** Under `{p}:keep-warm-lock:`: one such job per key and `lockMs` across bridges. */
  lockKey: string;
  lockMs: number;
  seq: number;
}

/**
 * Put a job that only acts on a loaded model on `node`: an ORION request with an empty prompt
 * (Ollama applies `keep_alive` to the model and answers without generating), id
 * `orion-<kind>-...`, answered on `{p}:responses:orion-keep-warm` (kept short; no client reads
 * it). False when a sibling bridge (or this one) sent one under the same lock lately.
 */
export async function sendModelJob(o: Pick<KeepWarmOptions, 'redis' | 'n' | 'dispatcher' | 'placer'>, node: NodeView, model: string, job: ModelJob): Promise<boolean> {
  const { redis, n, dispatcher, placer } = o;
  const id = node.health.node_id;
  const lock = await redis.set(n.keepWarmLockKey(job.lockKey), '1', 'PX', job.lockMs, 'NX');
  if (lock !== 'OK') return false;
  const now = placer.now();
  const request: InferenceRequest = {
    request_id: `orion-${job.kind}-${now}-${process.pid}-${job.seq}`,
    model,
    prompt: '',
    keep_alive: job.keepAlive,
    reply_to: n.keepWarmReplies,
    priority: 0,
    timeout_ms: 300_000,
    source: `orion-${job.kind}`,
  };
  const data: InferenceJobData = { request, entry_id: '', seen_at: now, deadline: now + 300_000, attempt: 0, max_attempts: 1, routing: job.routing, tried: [] };
  placer.placing(id, model, job.routing);
  await placer.writing(dispatcher.addCopy({ nodeId: id, data }));
  await redis.xtrim(n.keepWarmReplies, 'MAXLEN', '~', 100).catch(() => 0);
  return true;
}

/**
 * Ms until Ollama unloads `model` (normalised) on `node`, from the `models_expire_at` of its last
 * health document, `at` being now on the same (Redis's) clock; undefined when it does not say.
 */
function expiresInMs(node: NodeView, model: string, at: number): number | undefined {
  for (const [m, iso] of Object.entries(node.health.models_expire_at ?? {})) {
    if (normalizeModel(m) !== model) continue;
    const t = Date.parse(iso);
    return Number.isFinite(t) ? t - at : undefined;
  }
  return undefined;
}

/** Eligible nodes that report each model loaded (anticipated loads not counted). */
function warmNodes(s: Snapshot): Map<string, NodeView[]> {
  const out = new Map<string, NodeView[]>();
  for (const v of s.eligible) {
    for (const m of v.health.models) {
      const k = normalizeModel(m);
      const list = out.get(k);
      if (list) list.push(v);
      else out.set(k, [v]);
    }
  }
  return out;
}
