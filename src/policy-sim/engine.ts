/**
 * One discrete-event run: arrivals are routed by a policy on the bridge's (stale) view, queue on
 * their node, start when a job slot is free (loading the model first when it is not loaded,
 * evicting like Ollama), and finish after prompt and generation at the node's speed. With
 * `balanced`, every response feeds the cost learner, a node that frees a slot pulls a waiting
 * job from elsewhere when shouldMove says so, and the last warm copy of a model with recent
 * demand has its keep-alive renewed (the bridge's part of the policy).
 */
import { CostLearner } from '../router/learner.js';
import { RELIEF_EVERY_MS, shouldMove, shouldRenewKeepAlive, unloadChoice } from '../router/moves.js';
import { KEEP_ALIVE_MS, buildCluster, loadTimeMs, makeRoom, expire, serviceMs, spec, unloadCopy, type Job, type SimNode } from './cluster.js';
import { TimeHeap } from './heap.js';
import { IdleWarmMeter, Outcomes, summarize, type RunMetrics } from './metrics.js';
import { loadFn, makePolicy, type PolicyContext, type PolicyName } from './policies.js';
import type { Arrival } from './workload.js';
import { MODELS, modelWeights } from './workload.js';
import { BridgeView, REFRESH_MS } from './view.js';

export interface RunSpec {
  size: number;
  policy: PolicyName;
  arrivals: readonly Arrival[];
  /** Heat and thermal exclusion on. @defaultValue true */
  heat?: boolean;
  /** Parts of the real problem taken away, to measure what each costs (ROUTING.md's ablation). */
  ablate?: Ablation;
}

/** What an ablation run leaves out. */
export interface Ablation {
  /** Loading a model takes no time (it still takes RAM, and may evict another), and the bridge knows it. */
  freeLoads?: boolean;
  /** Every node reports at every refresh (1 s) instead of every 5 s. */
  freshView?: boolean;
}

export class Run {
  readonly nodes: SimNode[];
  private readonly view: BridgeView;
  private readonly learner: CostLearner;
  private readonly ctx: PolicyContext;
  private readonly heap = new TimeHeap<Job>();
  private readonly held: Job[] = [];
  /** Requests arrived, and what became of those that ended. */
  private arrived = 0;
  private readonly outcomes = new Outcomes();
  private readonly meter: IdleWarmMeter;
  private readonly lastDemand = new Map<string, number>();
  /** Per model, the nodes with jobs of it queued, and how many. */
  private readonly queuedBy = new Map<string, Map<SimNode, number>>();
  private readonly balanced: boolean;
  private readonly place;
  private spills = 0;
  private avoided = 0;
  private moves = 0;
  private pullFrom = 0;

  constructor(private readonly s: RunSpec) {
    this.nodes = buildCluster(s.size);
    this.balanced = s.policy === 'balanced';
    this.meter = new IdleWarmMeter(this.nodes);
    warmStart(this.nodes);
    this.view = new BridgeView(this.nodes, s.heat ?? true, (n, now) => this.meter.update(n, now), s.ablate?.freshView ?? false);
    // With loads free the bridge knows it: a load it has not seen costs nothing (it learns
    // nothing from a 0 ms load, so this default is what it goes by).
    this.learner = new CostLearner(s.ablate?.freeLoads ? { loadMs: 0 } : {});
    // Model sizes reach the learner as the bridge's do: from the nodes' health documents.
    for (const v of this.view.views) this.learner.noteSizes(v.health.installed_sizes_mb);
    this.ctx = { nodes: this.nodes, view: this.view, learner: this.learner, byId: new Map(this.nodes.map((n) => [n.id, n])) };
    this.place = makePolicy(s.policy, this.nodes);
  }

  run(): RunMetrics {
    const arr = this.s.arrivals;
    let ai = 0;
    let tick = REFRESH_MS;
    while (ai < arr.length || this.heap.size > 0 || this.held.length > 0) {
      const ta = ai < arr.length ? arr[ai]!.at : Number.POSITIVE_INFINITY;
      const tf = this.heap.peekKey();
      if (tick <= ta && tick <= tf) {
        this.onTick(tick);
        tick += REFRESH_MS;
        // With every request placed, only balanced's rebalancer still reads the view.
        if (ai >= arr.length && this.held.length === 0 && !this.balanced) tick = Number.POSITIVE_INFINITY;
      } else if (tf <= ta) {
        this.finish(this.heap.pop()!, tf);
      } else {
        const a = arr[ai++]!;
        this.arrive({ id: ai, model: a.model, arrival: a.at, promptTokens: a.promptTokens, evalTokens: a.evalTokens, node: -1, placedAt: 0, start: -1, firstToken: -1, end: -1, cold: false, avoidable: false, loadMs: 0, promptMs: 0, moves: 0 }, a.at);
      }
      if (tick > 1e12 && tick !== Number.POSITIVE_INFINITY) throw new Error('simulation did not drain');
      if (tick === Number.POSITIVE_INFINITY && ai >= arr.length && this.heap.size === 0 && this.held.length > 0) throw new Error('requests held forever');
    }
    if (this.outcomes.count !== this.arrived) throw new Error(`${this.arrived - this.outcomes.count} requests never ended`);
    const horizon = this.outcomes.horizon;
    this.meter.advance(horizon);
    return summarize(this.outcomes, this.nodes, horizon, this.meter, { spills: this.spills, avoidedColdLoads: this.avoided, moves: this.moves });
  }

  private arrive(job: Job, now: number): void {
    this.arrived++;
    this.lastDemand.set(job.model, now);
    this.route(job, now);
  }

  private route(job: Job, now: number): void {
    const p = this.place(job.model, this.ctx);
    if (p === undefined) {
      this.held.push(job);
      return;
    }
    if (p.spill) this.spills++;
    if (p.avoidedColdLoad) this.avoided++;
    const n = this.nodes[p.node]!;
    if (!this.view.views[n.index]!.loaded.has(job.model)) this.view.noteLoading(n, job.model, now);
    if (!n.copies.has(job.model)) job.avoidable = this.warmWouldBeSooner(job, n, now);
    this.enqueue(job, n, now);
  }

  private enqueue(job: Job, n: SimNode, now: number): void {
    job.node = n.index;
    job.placedAt = now;
    n.queue.push(job);
    let on = this.queuedBy.get(job.model);
    if (on === undefined) this.queuedBy.set(job.model, (on = new Map()));
    on.set(n, (on.get(n) ?? 0) + 1);
    this.meter.waiting(job.model, +1, now);
    this.meter.update(n, now);
    this.startJobs(n, now);
  }

  /** How long loading `model` takes on `n` in this run. */
  private loadMs(n: SimNode, model: string): number {
    return this.s.ablate?.freeLoads ? 0 : loadTimeMs(n, model);
  }

  /** Ground truth at placement: a node with the model loaded would have started the job sooner. */
  private warmWouldBeSooner(job: Job, cold: SimNode, now: number): boolean {
    const coldEta = trueStart(cold, now) + this.loadMs(cold, job.model);
    for (const n of this.meter.warmNodes(job.model)) {
      const copy = n.copies.get(job.model);
      if (n === cold || copy === undefined || !this.view.views[n.index]!.eligible) continue;
      if (Math.max(trueStart(n, now), copy.readyAt) < coldEta) return true;
    }
    return false;
  }

  private startJobs(n: SimNode, now: number): void {
    const gone = expire(n, now);
    if (gone.length > 0) this.meter.update(n, now);
    while (n.running < n.slots && n.queue.length > 0) {
      const job = n.queue[0]!;
      let copy = n.copies.get(job.model);
      if (copy === undefined) {
        if (!makeRoom(n, job.model, () => undefined)) break;
        copy = { readyAt: now + this.loadMs(n, job.model), active: 0, expiresAt: Number.POSITIVE_INFINITY, lastUsed: now };
        n.copies.set(job.model, copy);
        n.usedRam += spec(job.model).memoryBytes;
        n.loads++;
        job.cold = true;
      }
      n.queue.shift();
      this.unqueued(n, job.model);
      this.meter.waiting(job.model, -1, now);
      if (n.running === 0) this.busy(n, now, true);
      n.running++;
      copy.active++;
      copy.expiresAt = Number.POSITIVE_INFINITY;
      const ready = Math.max(now, copy.readyAt);
      const t = serviceMs(n, job, n.running);
      job.start = now;
      job.loadMs = ready - now;
      job.promptMs = t.promptMs;
      n.active.add(job);
      job.firstToken = ready + t.promptMs;
      job.end = job.firstToken + t.evalMs;
      this.heap.push(job.end, job);
    }
    this.meter.update(n, now);
  }

  private busy(n: SimNode, now: number, on: boolean): void {
    n.thermal.step(on ? 0 : 1, now);
    if (!on) n.busyMs += now - n.lastBusyChange;
    n.lastBusyChange = now;
  }

  private finish(job: Job, now: number): void {
    const n = this.nodes[job.node]!;
    n.running--;
    if (n.running === 0) this.busy(n, now, false);
    const copy = n.copies.get(job.model)!;
    copy.active--;
    copy.lastUsed = now;
    if (copy.active === 0) copy.expiresAt = now + KEEP_ALIVE_MS;
    n.active.delete(job);
    this.outcomes.record(job);
    // What the worker's final response says (Ollama's durations), all the bridge learns from.
    // Only the job that started a load reports it: one that waited on a load under way would
    // report the rest of it, which a learner must not take for a whole load.
    this.learner.observe(n.id, job.model, {
      load_duration_ms: job.cold ? job.loadMs : 0,
      prompt_eval_duration_ms: job.promptMs,
      eval_duration_ms: job.end - job.firstToken,
      total_duration_ms: job.end - job.start,
      prompt_eval_count: job.promptTokens,
      eval_count: job.evalTokens,
    });
    this.startJobs(n, now);
    if (this.balanced) this.pull(n, now);
  }

  /**
   * A node with a free slot and nothing queued takes waiting jobs that start sooner there: first
   * a job of a model it has loaded (from the nodes queuing that model), else any job (a move that
   * loads the model there), each time the one that gains most.
   */
  private pull(n: SimNode, now: number): void {
    const to = this.view.views[n.index]!;
    if (!to.eligible) return;
    const load = loadFn(this.ctx);
    const targets = [to];
    const consider = (from: SimNode, at: number, best: Pulled | undefined): Pulled | undefined => {
      const job = from.queue[at]!;
      if (!to.installed?.has(job.model)) return best;
      const mv = shouldMove({ model: job.model, nodeId: from.id, ahead: from.running + at }, this.view.views[from.index], targets, load, this.learner);
      return mv && (best === undefined || mv.gainMs > best.gain) ? { job, at, from, gain: mv.gainMs } : best;
    };
    while (n.running + n.queue.length < n.slots && this.meter.anyWaiting()) {
      let best: Pulled | undefined;
      for (const m of to.loaded) {
        const on = this.queuedBy.get(m);
        if (on === undefined) continue;
        let looked = 0;
        for (const from of on.keys()) {
          if (from === n) continue;
          if (++looked > PULL_LOOK) break;
          best = consider(from, lastOf(from.queue, m), best);
        }
      }
      if (best === undefined) {
        let looked = 0;
        for (const from of this.meter.queuedOn()) {
          if (from === n || from.queue.length === 0) continue;
          if (++looked > PULL_LOOK) break;
          best = consider(from, pickFromQueue(from.queue, to.loaded), best);
        }
      }
      if (best === undefined) return;
      best.from.queue.splice(best.at, 1);
      const model = best.job.model;
      this.unqueued(best.from, model);
      if (!best.from.copies.has(model) && !best.from.queue.some((j) => j.model === model)) this.view.forgetLoading(best.from, model);
      this.meter.waiting(model, -1, now);
      this.meter.update(best.from, now);
      best.job.moves++;
      this.moves++;
      if (!to.loaded.has(model)) this.view.noteLoading(n, model, now);
      this.enqueue(best.job, n, now);
    }
  }

  private unqueued(n: SimNode, model: string): void {
    const on = this.queuedBy.get(model)!;
    const k = on.get(n)! - 1;
    if (k === 0) on.delete(n);
    else on.set(n, k);
  }

  private onTick(now: number): void {
    this.view.tick(now);
    if (this.balanced && Math.round(now / REFRESH_MS) % 5 === 0) this.renewKeepAlive(now);
    if (this.balanced) this.relieveRam(now);
    if (this.held.length > 0) {
      const again = this.held.splice(0);
      for (const j of again) this.route(j, now);
    }
    if (!this.balanced) return;
    // The bridge's rebalancer, every 2 s: first the free nodes that have a queued model loaded
    // (from the snapshot's index), then others in turn, a bounded number a round.
    if (Math.round(now / REFRESH_MS) % 2 !== 0 || !this.meter.anyWaiting()) return;
    let budget = PULL_NODES;
    for (const [m, on] of this.queuedBy) {
      if (on.size === 0) continue;
      for (const v of this.view.index.candidates(m).loaded) {
        const n = this.ctx.byId.get(v.health.node_id)!;
        if (n.running + n.queue.length >= n.slots) continue;
        this.pull(n, now);
        if (--budget === 0 || on.size === 0) break;
      }
      if (budget === 0 || !this.meter.anyWaiting()) return;
    }
    const N = this.nodes.length;
    for (let k = 0; k < N; k++) {
      const n = this.nodes[(this.pullFrom + k) % N]!;
      if (n.running + n.queue.length >= n.slots) continue;
      this.pullFrom = (n.index + 1) % N;
      this.pull(n, now);
      if (--budget <= 0 || !this.meter.anyWaiting()) break;
    }
  }

  /**
   * The bridge's RAM relief (src/router/relief.ts): a node excluded for RAM with nothing to do
   * unloads its least recently used idle model, one a node every RELIEF_EVERY_MS.
   */
  private relieveRam(now: number): void {
    for (const n of this.nodes) {
      if (!n.full || n.running > 0 || n.queue.length > 0 || now - n.reliefAt < RELIEF_EVERY_MS) continue;
      const idle: string[] = [];
      for (const [m, c] of n.copies) if (c.active === 0 && c.readyAt <= now) idle.push(m);
      const m = unloadChoice(idle, (x) => n.copies.get(x)?.lastUsed);
      if (m === undefined) continue;
      n.reliefAt = now;
      unloadCopy(n, m);
      this.meter.update(n, now);
    }
  }

  /** The bridge's keep-alive loop: the last warm copy of a model asked for lately stays. */
  private renewKeepAlive(now: number): void {
    for (const m of MODELS) {
      const warm = this.meter.warmNodes(m);
      if (warm.size !== 1) continue;
      const n = warm.values().next().value as SimNode;
      const c = n.copies.get(m);
      if (c === undefined || c.active > 0) continue;
      if (shouldRenewKeepAlive({ warmCopies: 1, lastDemandMs: this.lastDemand.get(m) ?? -Infinity, expiresAtMs: c.expiresAt, now })) c.expiresAt = now + KEEP_ALIVE_MS;
    }
  }
}

/** Queued nodes the rebalancer looks at per free slot (the longest-waiting first). */
const PULL_LOOK = 16;
/** Free nodes the periodic rebalancer tries per round. */
const PULL_NODES = 32;

interface Pulled {
  job: Job;
  at: number;
  from: SimNode;
  gain: number;
}

/** Index of the last job of `model` in `queue` (-1: none). */
function lastOf(queue: readonly Job[], model: string): number {
  for (let i = queue.length - 1; i >= 0; i--) if (queue[i]!.model === model) return i;
  return -1;
}

/** The job to offer a free node: the last one of a model loaded there, else the last one. */
function pickFromQueue(queue: readonly Job[], warm: ReadonlySet<string>): number {
  for (let i = queue.length - 1; i >= 0; i--) if (warm.has(queue[i]!.model)) return i;
  return queue.length - 1;
}

/** When a job appended to `n`'s queue now would get a slot, from the true finish times. */
function trueStart(n: SimNode, now: number): number {
  const slots: number[] = [];
  for (const j of n.active) slots.push(j.end);
  while (slots.length < n.slots) slots.push(now);
  slots.sort((a, b) => a - b);
  for (const q of n.queue) {
    const t = serviceMs(n, q, 1);
    slots[0] = slots[0]! + t.promptMs + t.evalMs;
    slots.sort((a, b) => a - b);
  }
  return slots[0]!;
}

/**
 * Start state: every node has one model loaded, handed out in proportion to popularity, ready,
 * with a fresh keep-alive.
 */
export function warmStart(nodes: SimNode[]): void {
  const weights = modelWeights();
  const given = new Map<string, number>();
  for (const n of nodes) {
    let best: string | undefined;
    let deficit = Number.NEGATIVE_INFINITY;
    for (const { model, weight } of weights) {
      if (!n.installed.includes(model)) continue;
      const d = weight * nodes.length - (given.get(model) ?? 0);
      if (d > deficit) {
        deficit = d;
        best = model;
      }
    }
    if (best === undefined) continue;
    given.set(best, (given.get(best) ?? 0) + 1);
    n.copies.set(best, { readyAt: 0, active: 0, expiresAt: KEEP_ALIVE_MS, lastUsed: 0 });
    n.usedRam += spec(best).memoryBytes;
  }
}
