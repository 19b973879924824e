/**
 * `--routing balanced`, pure: no Redis, no clock of its own. SPEC.md section 6.
 *
 * For each eligible node that has the model (loaded; else installed; else, when no node reports
 * it installed, a node that does not report installed_models), the expected time to first token
 * is the wait for a free job slot there plus the model's load time when it is not loaded there.
 * The smallest wins and ties keep the guide's order. Three refinements, each for a reason:
 * - The guide's own choice stands whenever it can start the request at once (a free slot):
 *   on an idle cluster every choice is exactly `pickNode`'s, a cold choice included.
 * - A cold load must beat the best warm node by `coldMarginMs`: a load also costs memory (it
 *   may evict another model) and estimates are noisy, so a near tie is not worth it.
 * - `model_not_found` and `no_healthy_node` are the guide's answers, unchanged.
 */
import type { Routing } from '../contracts/types.js';
import { normalizeModel } from '../contracts/index.js';
import type { CostLearner } from './learner.js';
import { normalizeCached } from './model-names.js';
import { pickNode, type Decision, type NodeView } from './routing.js';
import { WarmOrder } from './warm-order.js';

/** How busy a node is now: jobs placed there and not finished, from the bridge's own counts. */
export interface NodeLoad {
  /** Jobs in the node's queue not yet started. */
  waiting: number;
  /** Jobs the node is running. */
  running: number;
  /**
   * Expected ms of work ahead (the remaining time of the running jobs plus the answer time of
   * the waiting ones), when the caller knows better than counts times the learned answer time.
   */
  workMs?: number;
  /** Ms until a load of the asked model already under way there completes (0: none). */
  loadingMs?: number;
}

export type LoadOf = (nodeId: string, model: string) => NodeLoad;

/**
 * A caller's memory of candidate lists in which no node had a free job slot, valid while no
 * node has freed one since (the caller knows: its load figures only went up). Lets a backlog on
 * a thousand busy nodes skip walking them all for every request.
 */
export interface FreeScan {
  /** No node of `pool` had a free slot at the last look, and none has freed one since. */
  noneFree(pool: readonly NodeView[]): boolean;
  /** A walk of every node of `pool` found none with a free slot. */
  sawNoneFree(pool: readonly NodeView[]): void;
  /**
   * A stamp that changes whenever the expected start of any warm node of `want` may have gone
   * down, or its candidate list changed: while it holds, the busy warm nodes are kept in order
   * (`WarmOrder`) instead of weighed one by one for every request. Undefined: weigh them all.
   */
  warmStamp?(want: string): string | undefined;
}

export interface BalancedOptions {
  /** A cold load must start the request this much sooner than the best warm node. @defaultValue 2000 */
  coldMarginMs?: number;
  /**
   * ... and at least this share of the best warm node's expected wait sooner, over the square
   * root of the answers that wait is made of. The wait is an estimate (answer lengths are
   * heavy-tailed and unknown until they end) whose relative error shrinks as the square root of
   * the answers it adds up, while a load's time is known: behind one running answer a load must
   * start the job twice as soon (or more, by the share); behind nine, a third sooner. A load
   * the warm node would have beaten costs memory and evicts models for nothing.
   * @defaultValue 1
   */
  coldMarginShare?: number;
  /** Share of an answer a running job still has ahead of it, on average. @defaultValue 0.5 */
  runningResidual?: number;
  /**
   * While the model is loaded on some eligible node, load it elsewhere only on a node with a
   * free slot (spare capacity). @defaultValue true
   */
  coldOnlyWhenFree?: boolean;
}

export const DEFAULT_COLD_MARGIN_MS = 2_000;
export const DEFAULT_COLD_MARGIN_SHARE = 1;

/** How much sooner a cold load must start a job than the warm node of `warm` would. */
export function coldMarginMs(warm: Eta, o?: BalancedOptions): number {
  const share = (o?.coldMarginShare ?? DEFAULT_COLD_MARGIN_SHARE) / Math.sqrt(Math.max(1, warm.answers));
  return Math.max(o?.coldMarginMs ?? DEFAULT_COLD_MARGIN_MS, Math.min(1, share) * warm.etaMs);
}
export const DEFAULT_RUNNING_RESIDUAL = 0.5;

export type BalancedDecision =
  | {
      kind: 'routed';
      node: NodeView;
      routing: Routing;
      /** Expected ms until the request starts producing (slot wait + load). */
      etaMs: number;
      waitMs: number;
      loadMs: number;
      /** The guide's choice, for counters. */
      guide: NodeView;
      /** Departed from the guide's choice to start sooner. */
      spill: boolean;
      /** The chosen node must load the model first. */
      coldLoad: boolean;
      /** A warm node was chosen over a cold one that had a free slot: waiting was cheaper. */
      avoidedColdLoad: boolean;
    }
  | { kind: 'model_not_found' }
  | { kind: 'no_healthy_node' };

/** The candidates for one model, each list in the guide's order. */
export interface Candidates {
  loaded: readonly NodeView[];
  installed: readonly NodeView[];
  unknown: readonly NodeView[];
}

/** Build the candidate lists by one walk of `ordered` (the eligible nodes in routing order). */
export function candidatesOf(model: string, ordered: readonly NodeView[]): Candidates {
  const want = normalizeModel(model);
  const loaded: NodeView[] = [];
  const installed: NodeView[] = [];
  const unknown: NodeView[] = [];
  for (const n of ordered) {
    if (n.installed === undefined) unknown.push(n);
    else if (n.installed.has(want)) installed.push(n);
    if (n.loaded.has(want)) loaded.push(n);
  }
  return { loaded, installed, unknown };
}

export function slotsOf(n: NodeView): number {
  const c = n.health.concurrency;
  return typeof c === 'number' && Number.isFinite(c) && c >= 1 ? Math.floor(c) : 1;
}

/**
 * Expected ms before a job placed now on `n` gets a slot, `ahead` jobs being before it (running
 * ones included) and `workMs` the work they hold. With c slots it waits for ahead - c + 1 of
 * them to finish, spread over c slots.
 */
export function slotWaitMs(slots: number, ahead: number, workMs: number): number {
  if (ahead < slots || ahead <= 0) return 0;
  return (workMs * (ahead - slots + 1)) / (ahead * slots);
}

/** The work held by `l`'s jobs on `nodeId`, `answerMs` being one answer there. */
export function workOf(l: NodeLoad, answerMs: number, residual: number): number {
  if (l.workMs !== undefined && Number.isFinite(l.workMs)) return Math.max(0, l.workMs);
  return (Math.max(0, l.running) * residual + Math.max(0, l.waiting)) * answerMs;
}

export interface Eta {
  etaMs: number;
  waitMs: number;
  loadMs: number;
  /** The node could start the job at once (a free slot). */
  free: boolean;
  /** Answers that must end before a slot frees (0 when free). */
  answers: number;
}

/** Expected time to first token for `model` on `n`, `warm` saying whether it is loaded there. */
export function etaOn(n: NodeView, model: string, warm: boolean, load: LoadOf, learner: CostLearner, o?: BalancedOptions): Eta {
  const id = n.health.node_id;
  const l = load(id, model);
  const slots = slotsOf(n);
  const ahead = Math.max(0, l.waiting) + Math.max(0, l.running);
  const free = ahead < slots;
  const waitMs = free ? 0 : slotWaitMs(slots, ahead, workOf(l, learner.answerMs(id, model), o?.runningResidual ?? DEFAULT_RUNNING_RESIDUAL));
  const answers = free ? 0 : ahead - slots + 1;
  if (warm) {
    const loading = Math.max(0, l.loadingMs ?? 0);
    return { etaMs: Math.max(waitMs, loading), waitMs, loadMs: loading, free, answers };
  }
  const loadMs = learner.loadMs(id, model);
  return { etaMs: waitMs + loadMs, waitMs, loadMs, free, answers };
}

/**
 * Choose a node for `model` among `ordered` (eligible, in routing order): the guide's answer
 * when it can start at once, else the node with the smallest expected time to first token.
 * `avoid` names nodes to pass over when another choice exists, as in `pickNode`.
 */
export function pickBalanced(
  model: string,
  ordered: readonly NodeView[],
  load: LoadOf,
  learner: CostLearner,
  avoid?: ReadonlySet<string>,
  options?: BalancedOptions,
): BalancedDecision {
  return balancedFrom(model, pickNode(model, ordered, avoid), candidatesOf(model, ordered), load, learner, avoid, options);
}

/**
 * The balanced rule from the guide's decision and the candidate lists (a caller with an index,
 * such as the bridge's RoutingIndex, passes them without walking every node).
 */
export function balancedFrom(
  model: string,
  guide: Decision,
  c: Candidates,
  load: LoadOf,
  learner: CostLearner,
  avoid?: ReadonlySet<string>,
  o?: BalancedOptions,
  scan?: FreeScan,
): BalancedDecision {
  if (guide.kind !== 'routed') return guide;
  const g = guide.node;
  const want = normalizeCached(model);
  const gWarm = g.loaded.has(want);
  const gEta = etaOn(g, want, gWarm, load, learner, o);
  const keep = (avoidedColdLoad = false): BalancedDecision => routed(g, g, gWarm, gEta, avoidedColdLoad);
  if (gEta.free && !(gWarm && gEta.loadMs > 0)) return keep();
  const all = avoid === undefined || avoid.size === 0;
  const w: Weighing = { want, g, gEta, load, learner, o, scan, all, ok: (n) => all || !avoid.has(n.health.node_id) };
  const warm = bestWarm(c.loaded, w);
  const margin = warm === undefined ? 0 : coldMarginMs(warm.e, o);
  const { cold, coldFree } = soonestCold(c, warm, margin, w);
  const best = cold !== undefined && (warm === undefined || cold.e.etaMs + margin < warm.e.etaMs) ? { ...cold, warm: false } : warm && { ...warm, warm: true };
  if (best === undefined) return keep();
  if (best.n === g || (best.e.etaMs >= gEta.etaMs && (gWarm || !best.warm))) return keep(gWarm && coldFree);
  return routed(best.n, g, best.warm, best.e, best.warm && coldFree);
}

/** What `balancedFrom` weighs nodes with: the model, the guide's node and its ETA, the costs. */
interface Weighing {
  want: string;
  g: NodeView;
  gEta: Eta;
  load: LoadOf;
  learner: CostLearner;
  o: BalancedOptions | undefined;
  scan: FreeScan | undefined;
  /** No node is to be avoided (`ok` passes every node). */
  all: boolean;
  ok: (n: NodeView) => boolean;
}

/** The busy warm nodes of one `bestWarm` walk and their counts: reused, never shrunk (routing is
 * synchronous), so a walk allocates nothing. */
const busyNodes: NodeView[] = [];
const busyFigures: number[] = [];
const busyMs: number[] = [];
const FIGURES = 6;

/** Per candidate list, its busy warm nodes in order of expected start, under a caller's stamp. */
const warmOrders = new WeakMap<readonly NodeView[], WarmOrder>();

/**
 * A busy warm node's expected start now, as `bestWarm`'s walk computes it; NaN when it has a free
 * slot or a load under way (a `WarmOrder`'s condition is then broken).
 */
function busyMsNow(n: NodeView, w: Weighing, answerMs: (node: string) => number): number {
  const l = w.load(n.health.node_id, w.want);
  const ahead = Math.max(0, l.waiting) + Math.max(0, l.running);
  const slots = slotsOf(n);
  if (ahead < slots || Math.max(0, l.loadingMs ?? 0) > 0) return Number.NaN;
  if (n === w.g) return w.gEta.etaMs;
  return slotWaitMs(slots, ahead, workOf(l, answerMs(n.health.node_id), w.o?.runningResidual ?? DEFAULT_RUNNING_RESIDUAL));
}

/**
 * Warm: nothing starts sooner than at once, so the first warm node with a free slot and no load
 * under way wins outright, looked for by counts alone (with a thousand nodes most requests end
 * here). Ties go to the guide's order, the order of `loaded`. When every warm node is busy, the
 * smallest expected wait: the counts read on the way are kept, so each node's load is asked for
 * once, and the answer times are looked up only then, the model's part of them once. Under the
 * caller's `warmStamp` the busy nodes found are kept in order (`WarmOrder`), and until the stamp
 * changes a request asks only the nodes at the top of that order.
 */
function bestWarm(loaded: readonly NodeView[], w: Weighing): { n: NodeView; e: Eta } | undefined {
  const stamp = w.all ? w.scan?.warmStamp?.(w.want) : undefined;
  if (stamp !== undefined) {
    const order = warmOrders.get(loaded);
    if (order !== undefined && order.stamp === stamp) {
      const answerMs = w.learner.answerTimesOf(w.want);
      const n = order.best((x) => busyMsNow(x, w, answerMs));
      if (n !== undefined) return { n, e: n === w.g ? w.gEta : etaOn(n, w.want, true, w.load, w.learner, w.o) };
      warmOrders.delete(loaded);
    }
  }
  let busy = 0;
  let anyLoading = false;
  for (const n of loaded) {
    if (!w.ok(n)) continue;
    const l = w.load(n.health.node_id, w.want);
    const ahead = Math.max(0, l.waiting) + Math.max(0, l.running);
    const loading = Math.max(0, l.loadingMs ?? 0);
    const slots = slotsOf(n);
    if (ahead < slots && loading <= 0) return { n, e: { etaMs: 0, waitMs: 0, loadMs: 0, free: true, answers: 0 } };
    anyLoading ||= loading > 0;
    // `load` may hand back one object for every node: its figures are copied out.
    const f = busy * FIGURES;
    busyNodes[busy++] = n;
    busyFigures[f] = ahead;
    busyFigures[f + 1] = slots;
    busyFigures[f + 2] = loading;
    busyFigures[f + 3] = Math.max(0, l.running);
    busyFigures[f + 4] = Math.max(0, l.waiting);
    busyFigures[f + 5] = l.workMs ?? Number.NaN;
  }
  const answerMs = busy > 0 ? w.learner.answerTimesOf(w.want) : undefined;
  const residual = w.o?.runningResidual ?? DEFAULT_RUNNING_RESIDUAL;
  let best = -1;
  let bestMs = Number.POSITIVE_INFINITY;
  for (let i = 0; i < busy; i++) {
    const n = busyNodes[i]!;
    let ms: number;
    if (n === w.g) ms = w.gEta.etaMs;
    else {
      const f = i * FIGURES;
      const ahead = busyFigures[f]!;
      const slots = busyFigures[f + 1]!;
      const loading = busyFigures[f + 2]!;
      const workMs = busyFigures[f + 5]!;
      if (ahead < slots) ms = loading;
      else {
        const work = Number.isFinite(workMs) ? Math.max(0, workMs) : (busyFigures[f + 3]! * residual + busyFigures[f + 4]!) * answerMs!(n.health.node_id);
        ms = Math.max(slotWaitMs(slots, ahead, work), loading);
      }
    }
    busyMs[i] = ms;
    if (best < 0 || ms < bestMs) {
      best = i;
      bestMs = ms;
    }
  }
  if (best < 0) return undefined;
  // Every warm node busy and none loading: keep them in order for the next requests.
  if (stamp !== undefined && !anyLoading) warmOrders.set(loaded, new WarmOrder(stamp, busyNodes, busyMs, busy));
  const n = busyNodes[best]!;
  return { n, e: n === w.g ? w.gEta : etaOn(n, w.want, true, w.load, w.learner, w.o) };
}

/**
 * Cold: weighed only when a load could beat the best warm node; else only asked whether one
 * could have started at once (the counter of cold loads avoided). While the model is warm
 * somewhere, a load goes only to a node with a free slot: loading behind a queue delays that
 * queue by the load and evicts models it may need.
 */
function soonestCold(
  c: Candidates,
  warm: { n: NodeView; e: Eta } | undefined,
  margin: number,
  w: Weighing,
): { cold: { n: NodeView; e: Eta } | undefined; coldFree: boolean } {
  const { want, g, load, o } = w;
  const floor = w.learner.loadFloorMs(want);
  const weigh = warm === undefined || warm.e.etaMs > floor + margin;
  let cold: { n: NodeView; e: Eta } | undefined;
  let coldFree = false;
  // A warm node that starts it at once is the answer, and no load was avoided: nothing to weigh.
  if (!weigh && warm !== undefined && warm.e.etaMs <= 0) return { cold, coldFree };
  const onlyFree = o?.coldOnlyWhenFree ?? true;
  // Nodes that report the model installed; when none does, those that do not say (the guide's).
  const pool = c.installed.length > 0 || warm !== undefined ? c.installed : c.unknown;
  // Only a node with a free slot can matter: none had one at the last look, none has one now.
  const freeOnly = !weigh || (warm !== undefined && onlyFree);
  if (freeOnly && w.scan?.noneFree(pool)) return { cold, coldFree };
  let whole = true;
  for (const n of pool) {
    if (!w.ok(n)) whole = false;
    if (!w.ok(n) || n.loaded.has(want)) continue;
    if (!weigh) {
      const l = load(n.health.node_id, want);
      if (l.waiting + l.running < slotsOf(n)) return { cold, coldFree: true };
      continue;
    }
    if (warm !== undefined && onlyFree && n !== g) {
      const l = load(n.health.node_id, want);
      if (l.waiting + l.running >= slotsOf(n)) continue;
    }
    const e = n === g ? w.gEta : etaOn(n, want, false, load, w.learner, o);
    coldFree ||= e.free;
    if (warm !== undefined && !e.free && onlyFree) continue;
    if (cold === undefined || e.etaMs < cold.e.etaMs) cold = { n, e };
    if (cold.e.etaMs <= floor) return { cold, coldFree };
  }
  if (freeOnly && whole && !coldFree) w.scan?.sawNoneFree(pool);
  return { cold, coldFree };
}

function routed(n: NodeView, g: NodeView, warm: boolean, e: Eta, avoidedColdLoad: boolean): BalancedDecision {
  return {
    kind: 'routed',
    node: n,
    routing: warm ? 'sticky' : 'fallback',
    etaMs: e.etaMs,
    waitMs: e.waitMs,
    loadMs: e.loadMs,
    guide: g,
    spill: n !== g,
    coldLoad: !warm,
    avoidedColdLoad: avoidedColdLoad && warm && e.waitMs > 0,
  };
}
