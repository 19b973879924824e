/**
 * Rebalancing (`--routing balanced`, SPEC.md sections 6 and 7): after each registry refresh,
 * a job still waiting in one node's queue moves to another eligible node that can start it
 * sooner by a clear margin (`shouldMove`, src/router/moves.ts): a node that finished early, a
 * model that just finished loading, a node that cooled down or came back. Jobs waiting on a
 * node excluded for temperature or RAM may move too (they would wait there for nothing). The
 * queues of dead and unavailable nodes are the dead-node sweep's.
 *
 * A move keeps section 7's guarantees:
 *   1. one script, atomically: the job is still waiting in the old queue (not taken by a
 *      worker), the request is not answered, the old node still owns it; then the owner
 *      becomes the new node and `{p}:moves` records the move in progress;
 *   2. the same job data (same attempt count: a move is not an attempt) is added to the new
 *      node's queue under the same job id;
 *   3. the old copy is removed, and the move's record deleted.
 * Never started twice: a worker that takes the old copy after step 1 finds another owner in
 * its start script and gives way. Never lost: a bridge that dies between steps leaves the
 * record, and any bridge finishes the move later (adding under the same id is a no-op).
 * Jobs are looked at from the back of a queue (those that wait longest gain most).
 */
import { Job } from 'bullmq';
import type { Redis, Result } from 'ioredis';
import { normalizeModel } from '../contracts/index.js';
import type { InferenceJobData } from '../lib/bus.js';
import type { Logger } from '../lib/logger.js';
import { jobIdFor, type Names } from '../lib/names.js';
import { withTimeout } from '../lib/time.js';
import type { Dispatcher } from './dispatcher.js';
import type { LoadTracker } from './load.js';
import { moveTarget, shouldMove, type MoveOptions, type MoveTarget } from './moves.js';
import type { Placer } from './placer.js';
import type { Snapshot } from './registry.js';
import type { BridgeStats } from './stats.js';

/**
 * claim a move of a waiting job.
 * KEYS: 1 request hash, 2 old queue's prioritized zset, 3 old queue's wait list, 4 moves hash
 * ARGV: 1 from node, 2 to node, 3 job id, 4 request id, 5 now (ms)
 * Returns 'ok' | 'done' (answered) | 'owner' (another node owns it) | 'started' (not waiting)
 */
const CLAIM_MOVE = `
if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return 'done' end
local owner = redis.call('HGET', KEYS[1], 'node')
if owner ~= ARGV[1] then return 'owner' end
if not redis.call('ZSCORE', KEYS[2], ARGV[3]) and not redis.call('LPOS', KEYS[3], ARGV[3]) then return 'started' end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[1] .. ',' .. ARGV[2] .. ',' .. ARGV[5])
return 'ok'
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    orionClaimMove(k1: string, k2: string, k3: string, k4: string, from: string, to: string, jobId: string, requestId: string, now: number): Result<string, Context>;
  }
}

export interface MoverOptions {
  redis: Redis;
  n: Names;
  log: Logger;
  dispatcher: Dispatcher;
  placer: Placer;
  load: LoadTracker;
  stats: BridgeStats;
  moves?: MoveOptions;
  /** Jobs looked at per node per pass, from the back of its queue. @defaultValue 20 */
  perNode?: number;
  /** Moves per pass at most. @defaultValue 200 */
  maxPerPass?: number;
  /**
   * Queues whose tails are read per pass at most: half the most backlogged, half the others in
   * turn, pass after pass. Reading a tail costs a round trip and the jobs' data; on a large
   * cluster where every node has a backlog, reading them all every second would cost the bridge
   * more than placing the requests. @defaultValue 32
   */
  maxSourcesPerPass?: number;
  /** A move record this old is finished by whichever bridge sees it. @defaultValue 10 s */
  staleMoveMs?: number;
}

interface Candidate {
  jobId: string;
  data: InferenceJobData;
  /** Jobs before it in its queue, running ones included. */
  ahead: number;
}

/**
 * The queues a pass reads, of `all` (most backlogged first): all of them when they are at most
 * `max`; else the most backlogged half of `max`, and the rest of `max` from the others in turn,
 * starting at `turn`. Returns the turn for the next pass: every queue is read within
 * ceil(others / (max - max/2)) passes.
 */
export function moveSources<T>(all: readonly T[], max: number, turn: number): { picked: T[]; turn: number } {
  if (all.length <= max) return { picked: [...all], turn };
  const top = Math.ceil(max / 2);
  const rest = all.length - top;
  const picked = all.slice(0, top);
  const start = turn % rest;
  for (let i = 0; i < max - top; i++) picked.push(all[top + ((start + i) % rest)]!);
  return { picked, turn: (start + max - top) % rest };
}

export class Mover {
  private running: Promise<void> | undefined;
  /** Where the next pass starts among the queues that are not the most backlogged. */
  private turn = 0;

  constructor(private readonly o: MoverOptions) {
    if (typeof (o.redis as Partial<Redis>).orionClaimMove !== 'function') o.redis.defineCommand('orionClaimMove', { numberOfKeys: 4, lua: CLAIM_MOVE });
  }

  /** One pass (skipped while the previous one runs). */
  pass(s: Snapshot): Promise<void> {
    if (!this.running) {
      this.running = this.passOnce(s)
        .catch((err: Error) => this.o.log.warn({ err: err.message }, 'rebalancing pass failed; trying again after the next refresh'))
        .finally(() => (this.running = undefined));
    }
    return this.running;
  }

  async stop(): Promise<void> {
    await this.running;
  }

  private async passOnce(s: Snapshot): Promise<void> {
    await this.finishStale();
    if (s.eligible.length === 0) return;
    let budget = this.o.maxPerPass ?? 200;
    const all = [...this.o.load.busy()]
      .filter(([id, f]) => f.waiting > 0 && this.movableFrom(s, id))
      .sort((a, b) => b[1].waiting - a[1].waiting);
    const { picked, turn } = moveSources(all, this.o.maxSourcesPerPass ?? 32, this.turn);
    this.turn = turn;
    for (const [from] of picked) {
      if (budget <= 0) break;
      budget -= await this.fromNode(s, from, budget);
    }
  }

  /** Whether waiting jobs may be taken from this node's queue here (not the dead-node sweep's). */
  private movableFrom(s: Snapshot, id: string): boolean {
    const v = s.views.get(id);
    if (v === undefined || s.dead.includes(id)) return false;
    return v.eligible || v.excludedReason === 'temperature' || v.excludedReason === 'ram';
  }

  /** Look at the back of one node's queue and move what gains; returns the moves made. */
  private async fromNode(s: Snapshot, from: string, budget: number): Promise<number> {
    const { placer } = this.o;
    const jobs = await this.tail(from);
    let moved = 0;
    // Where a job of each model would go: the same for every job of the model here until a
    // move changes the loads (then found again). Jobs that tried nodes before look for their own.
    const targets = new Map<string, MoveTarget | undefined>();
    const targetOf = (model: string): MoveTarget | undefined => {
      if (!targets.has(model)) targets.set(model, moveTarget(model, from, s.eligible, placer.loadOf, placer.learner, this.o.moves));
      return targets.get(model);
    };
    for (const c of jobs) {
      if (moved >= budget) break;
      const job = { model: c.data.request.model, nodeId: from, ahead: c.ahead };
      const tried = new Set(c.data.tried ?? []);
      const ordered = tried.size === 0 ? s.eligible : s.eligible.filter((v) => !tried.has(v.health.node_id));
      const m = shouldMove(job, s.views.get(from), ordered, placer.loadOf, placer.learner, this.o.moves, tried.size === 0 ? targetOf : undefined);
      if (m === undefined) continue;
      targets.clear();
      const to = m.node.health.node_id;
      try {
        if (await this.move(c, from, to, m.routing)) {
          moved++;
          this.o.stats.moved(from, to, m.gainMs);
          placer.count(to, { spill: true, coldLoad: m.coldLoad, avoidedColdLoad: false });
          this.o.log.info({ request_id: c.data.request.request_id, from, to, routing: m.routing, gain_ms: Math.round(m.gainMs) }, 'waiting job moved to a node that starts it sooner');
        }
      } catch (err) {
        this.o.log.warn({ request_id: c.data.request.request_id, from, to, err: (err as Error).message }, 'move failed; the job stays or the move is finished later');
      }
    }
    return moved;
  }

  /** The last `perNode` waiting jobs of a queue, the one that would start last first. */
  private async tail(node: string): Promise<Candidate[]> {
    const { redis, n, dispatcher } = this.o;
    const k = this.o.perNode ?? 20;
    const res =
      (await withTimeout(
        redis
          .pipeline()
          .llen(n.nodeQueueKey(node, 'wait'))
          .zcard(n.nodeQueueKey(node, 'prioritized'))
          .llen(n.nodeQueueKey(node, 'active'))
          .zrange(n.nodeQueueKey(node, 'prioritized'), -k, -1)
          .lrange(n.nodeQueueKey(node, 'wait'), 0, k - 1)
          .exec(),
        dispatcher.timeoutMs,
        'reading a queue',
      )) ?? [];
    const waitLen = Number(res[0]?.[1] ?? 0);
    const prioLen = Number(res[1]?.[1] ?? 0);
    const running = Number(res[2]?.[1] ?? 0);
    const prio = (res[3]?.[1] ?? []) as string[];
    const wait = (res[4]?.[1] ?? []) as string[];
    // Start order: the wait list from its tail, then the prioritized set by score.
    const order: { id: string; before: number }[] = [];
    prio.forEach((id, i) => order.push({ id, before: waitLen + prioLen - prio.length + i }));
    wait.forEach((id, i) => order.push({ id, before: waitLen - 1 - i }));
    order.sort((a, b) => b.before - a.before);
    const picked = order.slice(0, k);
    if (picked.length === 0) return [];
    const look = redis.pipeline();
    for (const p of picked) look.hget(n.nodeQueueKey(node, p.id), 'data');
    const rows = (await withTimeout(look.exec(), dispatcher.timeoutMs, 'reading jobs')) ?? [];
    const out: Candidate[] = [];
    picked.forEach((p, i) => {
      const raw = rows[i]?.[1];
      if (typeof raw !== 'string') return;
      try {
        const data = JSON.parse(raw) as InferenceJobData;
        if (typeof data?.request?.request_id === 'string' && typeof data.request.model === 'string') out.push({ jobId: p.id, data, ahead: p.before + running });
      } catch {
        /* not ours to judge: the worker refuses an unreadable job */
      }
    });
    return out;
  }

  /** Steps 1-3 of a move; false when the job was not movable any more. */
  private async move(c: Candidate, from: string, to: string, routing: 'sticky' | 'fallback'): Promise<boolean> {
    const { redis, n, dispatcher, placer } = this.o;
    const id = c.data.request.request_id;
    const claim = await withTimeout(
      redis.orionClaimMove(n.requestKey(id), n.nodeQueueKey(from, 'prioritized'), n.nodeQueueKey(from, 'wait'), n.moves, from, to, c.jobId, id, Date.now()),
      dispatcher.timeoutMs,
      'claiming a move',
    );
    if (claim !== 'ok') return false;
    placer.left(from);
    placer.placing(to, normalizeModel(c.data.request.model), routing);
    await placer.writing(this.finish(id, from, to, { ...c.data, routing }));
    return true;
  }

  /** Steps 2 and 3: add on `to` (a no-op when there), remove from `from`, forget the record. */
  private async finish(id: string, from: string, to: string, data: InferenceJobData): Promise<void> {
    const { redis, n, dispatcher } = this.o;
    await dispatcher.addCopy({ nodeId: to, data });
    await dispatcher.removeCopy(from, jobIdFor(id)).catch(() => false);
    await redis.hdel(n.moves, id);
  }

  /** Finish moves another bridge (or this one, before a restart) left half-way. */
  private async finishStale(): Promise<void> {
    const { redis, n, dispatcher, log } = this.o;
    const all = await redis.hgetall(n.moves);
    const cutoff = Date.now() - (this.o.staleMoveMs ?? 10_000);
    for (const [id, v] of Object.entries(all)) {
      const [from = '', to = '', at = '0'] = v.split(',');
      if (Number(at) > cutoff) continue;
      try {
        const [final, owner] = await redis.hmget(n.requestKey(id), 'final', 'node');
        if (final != null || owner !== to) {
          await redis.hdel(n.moves, id);
          continue;
        }
        if (await Job.fromId(dispatcher.queue(to), jobIdFor(id))) {
          await dispatcher.removeCopy(from, jobIdFor(id)).catch(() => false);
          await redis.hdel(n.moves, id);
          continue;
        }
        const old = await Job.fromId<InferenceJobData>(dispatcher.queue(from), jobIdFor(id));
        if (!old?.data?.request) {
          log.warn({ request_id: id, from, to }, 'a move left half-way has no job to finish it with; its deadline answers it');
          await redis.hdel(n.moves, id);
          continue;
        }
        await this.finish(id, from, to, old.data);
        log.info({ request_id: id, from, to }, 'finished a move left half-way');
      } catch (err) {
        log.warn({ request_id: id, err: (err as Error).message }, 'could not finish a move left half-way; trying again');
      }
    }
  }
}
