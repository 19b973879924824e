/**
 * Dead nodes (SPEC.md section 7): a node whose TTL key `{p}:health:{id}` is gone has no worker
 * to run its queue, and BullMQ's stalled-job check runs only inside that queue's workers. After
 * each registry refresh the bridge looks at every known node that is dead and, while holding a
 * short lock (`SET {p}:reroute-lock:{id} <consumer> NX PX 5000`, so sibling bridges do not do
 * the same work), moves to eligible nodes:
 *   - its waiting, prioritized and delayed jobs (never started: the attempt is unchanged);
 *   - its active jobs whose lock key is gone (the started attempt was counted by the dead
 *     worker; with attempts used up the request is answered `backend_error` and the job is
 *     moved to the failed set instead).
 * A node that is alive but reports itself unavailable (Ollama not answering, worker shutting
 * down), or that an operator drained (`orion drain`), takes no new jobs: its waiting jobs are
 * moved the same way, its active ones left to finish there.
 * A move is owner -> add (same id) -> remove, safe to repeat after a crash at any step. Jobs
 * whose request is answered already are cleared away; jobs past their deadline are left to the
 * deadline sweep.
 */
import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { jobLockKey } from '../lib/bull.js';
import type { InferenceJobData } from '../lib/bus.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import { withTimeout } from '../lib/time.js';
import type { Dispatcher } from './dispatcher.js';
import type { Placer } from './placer.js';
import type { Registry, Snapshot } from './registry.js';
import { giveUpJob } from './reroute.js';
import type { BridgeStats } from './stats.js';

export interface DeadNodeOptions {
  redis: Redis;
  n: Names;
  log: Logger;
  consumer: string;
  registry: Registry;
  placer: Placer;
  dispatcher: Dispatcher;
  stats: BridgeStats;
  /** Jobs looked at per node and state per pass. @defaultValue 200 */
  pageSize?: number;
  now?: () => number;
}

/** Delete the lock only if it is still ours. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export class DeadNodeSweeper {
  private running: Promise<void> | undefined;

  constructor(private readonly o: DeadNodeOptions) {}

  /** One pass over the dead nodes of the snapshot (skipped while the previous one runs). */
  sweep(s: Snapshot): Promise<void> {
    if (!this.running) {
      const run = this.sweepAll(s).finally(() => {
        this.running = undefined;
      });
      this.running = run;
    }
    return this.running;
  }

  private async sweepAll(s: Snapshot): Promise<void> {
    if (s.eligible.length === 0) return;
    // A node that reports itself unavailable (Ollama down, worker shutting down) is alive but
    // takes no new jobs: what waits in its queue goes elsewhere too; its running jobs stay.
    const unavailable = [...s.views.values()].filter((v) => v.excludedReason === 'unavailable' || v.excludedReason === 'drained').map((v) => v.health.node_id);
    for (const [node, dead] of [...s.dead.map((id) => [id, true] as const), ...unavailable.map((id) => [id, false] as const)]) {
      try {
        await this.sweepNode(node, s, dead);
      } catch (err) {
        this.o.log.warn({ node, err: (err as Error).message }, 'could not move the jobs of a dead or unavailable node; trying again');
      }
    }
  }

  async stop(): Promise<void> {
    await this.running;
  }

  /** Move a node's jobs elsewhere: the waiting ones, and the active ones whose lock is gone when it is dead. */
  private async sweepNode(node: string, s: Snapshot, dead: boolean): Promise<number> {
    const { redis, n, dispatcher, consumer } = this.o;
    const q = dispatcher.queue(node);
    const states = dead ? (['wait', 'prioritized', 'delayed', 'active'] as const) : (['wait', 'prioritized', 'delayed'] as const);
    const counts = await withTimeout(q.getJobCounts(...states), dispatcher.timeoutMs, 'job counts');
    if (Object.values(counts).every((c) => c === 0)) return 0;
    const lock = n.rerouteLockKey(node);
    if ((await redis.set(lock, consumer, 'PX', 5000, 'NX')) !== 'OK') return 0;
    try {
      const page = (this.o.pageSize ?? 200) - 1;
      const waiting = await q.getJobs(['wait', 'prioritized', 'delayed'], 0, page);
      let active: Job<InferenceJobData>[] = [];
      if ((counts['active'] ?? 0) > 0) {
        const all = await q.getJobs(['active'], 0, page);
        const pipe = redis.pipeline();
        for (const j of all) pipe.exists(jobLockKey(q, String(j.id)));
        const locks = (await pipe.exec()) ?? [];
        active = all.filter((_, i) => locks[i]?.[1] === 0);
      }
      const jobs = [...waiting.map((job) => ({ job, active: false })), ...active.map((job) => ({ job, active: true }))].filter(
        ({ job }) => job?.id !== undefined && typeof job.data?.request?.request_id === 'string',
      );
      if (jobs.length === 0) return 0;
      const look = redis.pipeline();
      for (const { job } of jobs) look.hmget(n.requestKey(job.data.request.request_id), 'final', 'node');
      const rows = (await look.exec()) ?? [];
      let moved = 0;
      for (let i = 0; i < jobs.length; i++) {
        const { job, active: isActive } = jobs[i]!;
        const [final, owner] = (rows[i]?.[1] ?? [null, null]) as (string | null)[];
        try {
          if (await this.handleJob(node, job, isActive, final ?? undefined, owner ?? undefined, s)) moved++;
        } catch (err) {
          this.o.log.warn({ node, job_id: job.id, err: (err as Error).message }, 'could not move a job of a dead node');
        }
      }
      if (moved > 0) this.o.log.info({ node, moved }, dead ? 'jobs of a dead node moved to eligible nodes' : 'waiting jobs of an unavailable or drained node moved to eligible nodes');
      return moved;
    } finally {
      await redis.eval(RELEASE, 1, lock, consumer).catch(() => undefined);
    }
  }

  private async handleJob(node: string, job: Job<InferenceJobData>, active: boolean, final: string | undefined, owner: string | undefined, s: Snapshot): Promise<boolean> {
    const { dispatcher, placer, stats } = this.o;
    const data = job.data;
    const clear = async (why: string): Promise<void> => {
      if (active) await job.moveToFailed(new Error(why), '0', false);
      else await dispatcher.removeCopy(node, job.id!);
    };
    if (final !== undefined) {
      await clear('answered already');
      return false;
    }
    if (owner !== undefined && owner !== node) {
      // A move that stopped half-way (or a stale copy): finish it.
      return dispatcher.move({ nodeId: owner, data }, node, job);
    }
    if (data.deadline <= (this.o.now?.() ?? Date.now())) return false;
    if (active && data.attempt >= data.max_attempts) {
      const why = `node ${node} stopped answering during attempt ${data.attempt} of ${data.max_attempts}`;
      await giveUpJob(this.o, data, node, 'backend_error', why);
      await clear(why);
      return false;
    }
    const c = placer.choose(data.request.model, new Set([...(data.tried ?? []), node]));
    // An unavailable node may be the one that has the model (while its Ollama is down it
    // reports none): its jobs wait for it rather than being refused.
    if (c.kind === 'wait' || (c.kind === 'model_not_found' && !s.dead.includes(node))) return false;
    if (c.kind === 'model_not_found') {
      const why = `no eligible node has model '${data.request.model}' installed`;
      await giveUpJob(this.o, data, node, 'model_not_found', why);
      await clear(why);
      return false;
    }
    const to = c.node.health.node_id;
    placer.placing(to, data.request.model, c.routing);
    const why = s.dead.includes(node) ? 'dead_node' : s.views.get(node)?.excludedReason === 'drained' ? 'drained_node' : 'unavailable_node';
    await placer.writing(dispatcher.move({ nodeId: to, data: { ...data, routing: c.routing } }, node, job, why.replace('_', ' ')));
    stats.rerouted(why);
    placer.count(to, c.flags);
    return true;
  }
}
