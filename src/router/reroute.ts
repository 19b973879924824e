/**
 * Jobs a worker handed back (SPEC.md section 7): the worker posts a RerouteNotice on
 * `{p}:reroute` and fails its copy; the bridge (group `orion-inference-router`) places the job
 * on another eligible node, avoiding the nodes it already failed on:
 *
 *   tried += node; counts false (the node's fault, e.g. Ollama down) gives the attempt back;
 *   attempts used up -> the notice's error is the final answer (dead-lettered; the copy stays
 *     in the failed set); past its deadline -> left to the deadline sweep;
 *   placed = owner -> add on the new node (same job id) -> remove the failed copy;
 *   no eligible node -> the notice stays pending here and is tried after each refresh.
 *
 * A notice is acked once handled. Handling one again (after a crash) finds the owner already
 * changed and only finishes that move.
 */
import { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { InferenceResponse } from '../contracts/types.js';
import { replyStreamOf, type InferenceJobData, type RerouteNotice } from '../lib/bus.js';
import { jobLockKey } from '../lib/bull.js';
import { failRequest, jobLetter } from '../lib/failures.js';
import { ERROR_CODES, type ErrorCode } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { isValidNodeId, isValidRequestId, jobIdFor, type Names } from '../lib/names.js';
import { Batch, type Acks } from './consumer.js';
import { Serial } from '../lib/serial.js';
import type { Dispatcher } from './dispatcher.js';
import type { Placer } from './placer.js';
import type { Registry } from './registry.js';
import type { BridgeStats } from './stats.js';

export interface RerouteOptions {
  redis: Redis;
  n: Names;
  log: Logger;
  registry: Registry;
  placer: Placer;
  dispatcher: Dispatcher;
  stats: BridgeStats;
  /** The reroute stream's group: notices retried are acked there, and pending ones kept. */
  group: Acks;
  now?: () => number;
}

export function parseNotice(fields: readonly string[]): RerouteNotice | undefined {
  const i = fields.indexOf('data');
  if (i === -1 || i % 2 !== 0) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(fields[i + 1] ?? '');
  } catch {
    return undefined;
  }
  const d = doc as Partial<RerouteNotice> | null;
  if (!d || !isValidRequestId(d.request_id) || typeof d.node_id !== 'string' || !isValidNodeId(d.node_id)) return undefined;
  const code: ErrorCode = (ERROR_CODES as readonly string[]).includes(d.code as string) ? (d.code as ErrorCode) : 'backend_error';
  return { request_id: d.request_id, node_id: d.node_id, code, message: typeof d.message === 'string' ? d.message : '', counts: d.counts !== false };
}

/**
 * Answer a placed request with an error because it cannot go on, and dead-letter it. Shared by
 * notices and dead nodes.
 */
export async function giveUpJob(
  o: Pick<RerouteOptions, 'redis' | 'n' | 'log'>,
  data: InferenceJobData,
  node: string,
  code: ErrorCode,
  message: string,
): Promise<boolean> {
  const { redis, n, log } = o;
  const req = data.request;
  const answer: Partial<InferenceResponse> = { model: req.model, node_id: node, routing: data.routing };
  if (data.attempt >= 1) answer.attempt = data.attempt;
  if (req.metadata !== undefined) answer.metadata = req.metadata;
  const failure = { requestId: req.request_id, replyTo: replyStreamOf(n, req), code, message, answer, letter: jobLetter(data, node) };
  const ok = await failRequest(redis, n, failure);
  if (ok) log.warn({ request_id: req.request_id, code, node, attempt: data.attempt }, 'request failed for good');
  return ok;
}

export class RerouteHandler {
  /** Notices not finished yet, by entry id. */
  private readonly pending = new Map<string, RerouteNotice>();
  private readonly lane = new Serial();

  constructor(private readonly o: RerouteOptions) {}

  pendingCount(): number {
    return this.pending.size;
  }

  /** Work on the notices of a batch; the batch acks the unreadable ones and those finished. */
  handle(batch: Batch): Promise<void> {
    return this.lane.run(async () => {
      for (const e of batch.entries) {
        const notice = e.fields ? parseNotice(e.fields) : undefined;
        if (!notice) {
          if (e.fields) this.o.log.warn({ entry_id: e.id }, 'unreadable reroute notice dropped');
          batch.finish(e.id);
          continue;
        }
        this.pending.set(e.id, notice);
      }
      await this.work([...this.pending.keys()].filter((id) => batch.entries.some((e) => e.id === id)), batch);
    });
  }

  /** Try the unfinished notices again (after a registry refresh). */
  retryPending(): Promise<void> {
    return this.lane.run(() => this.work([...this.pending.keys()], new Batch(this.o.group)));
  }

  async touchPending(): Promise<void> {
    if (this.pending.size > 0) await this.o.group.touch([...this.pending.keys()]);
  }

  /** Handle the notices of these entries; those finished are acked with `batch` and forgotten. */
  private async work(entryIds: string[], batch: Batch): Promise<void> {
    const done: string[] = [];
    for (const entryId of entryIds) {
      const notice = this.pending.get(entryId);
      if (!notice) continue;
      try {
        if (!(await this.process(notice))) continue;
        batch.finish(entryId);
        done.push(entryId);
      } catch (err) {
        this.o.log.warn({ request_id: notice.request_id, err: (err as Error).message }, 'reroute failed; trying again later');
      }
    }
    await batch.ack(this.o.dispatcher.timeoutMs);
    for (const id of done) this.pending.delete(id);
  }

  /** Handle one notice; false when it must be tried again later. */
  async process(notice: RerouteNotice): Promise<boolean> {
    const { redis, n, dispatcher, placer, stats, log } = this.o;
    const id = notice.request_id;
    const from = notice.node_id;
    const jobId = jobIdFor(id);
    const old = await Job.fromId<InferenceJobData>(dispatcher.queue(from), jobId);
    if (!old) return true;
    const [final, owner] = await redis.hmget(n.requestKey(id), 'final', 'node');
    if (final != null) return true;
    const data = { ...old.data, tried: [...new Set([...(old.data.tried ?? []), from])] };
    if (owner != null && owner !== from) {
      // Moved already (this notice handled before a crash, or the node declared dead): finish.
      return dispatcher.move({ nodeId: owner, data }, from, old);
    }
    const state = await old.getState();
    if (state === 'active' && (await redis.exists(jobLockKey(dispatcher.queue(from), jobId))) === 1) {
      return false; // the worker is still failing its copy
    }
    if (!notice.counts) data.attempt = Math.max(0, data.attempt - 1);
    if (data.deadline <= (this.o.now?.() ?? Date.now())) return true;
    if (data.attempt >= data.max_attempts) {
      await giveUpJob(this.o, data, from, notice.code, `${notice.message} (attempt ${data.attempt} of ${data.max_attempts})`);
      return true;
    }
    const c = placer.choose(data.request.model, new Set(data.tried));
    if (c.kind === 'model_not_found') {
      await giveUpJob(this.o, data, from, 'model_not_found', `no eligible node has model '${data.request.model}' installed`);
      return true;
    }
    if (c.kind === 'wait') return false;
    const to = c.node.health.node_id;
    data.routing = c.routing;
    placer.placing(to, data.request.model, c.routing);
    const moved = await placer.writing(dispatcher.move({ nodeId: to, data }, from, old, `handed back: ${notice.code}`));
    stats.rerouted('notice');
    placer.count(to, c.flags);
    log.info({ request_id: id, from, to, routing: c.routing, attempt: data.attempt, code: notice.code }, 'job moved to another node');
    return moved;
  }
}
