/**
 * Decisions the balanced rule takes after placement, pure like `pickBalanced`: moving a job that
 * still waits to a node that can start it sooner by a clear margin, and keeping the last warm
 * copy of a model with recent demand from expiring. The bridge owns the doing (SPEC.md section
 * 7's guarantees). A second copy of a model starts when a job would start sooner by loading it
 * on a free node than by waiting for a warm one, by the cold margin (`balancedFrom` for a new
 * job, `shouldMove` for one at the back of a backlog): that is when the backlog outgrows the
 * warm copies, and the job that pays for the load is one that gains by it.
 */
import type { Routing } from '../contracts/types.js';
import { normalizeModel } from '../contracts/index.js';
import {
  coldMarginMs,
  DEFAULT_RUNNING_RESIDUAL,
  candidatesOf,
  etaOn,
  slotWaitMs,
  slotsOf,
  type BalancedOptions,
  type Eta,
  type LoadOf,
} from './balanced.js';
import type { CostLearner } from './learner.js';
import type { NodeView } from './routing.js';

/** A job still waiting in a node's queue. */
export interface WaitingJob {
  model: string;
  /** The node whose queue holds it. */
  nodeId: string;
  /** Jobs before it on that node, the running ones included. */
  ahead: number;
}

export interface MoveOptions extends BalancedOptions {
  /** A move must start the job at least this much sooner. @defaultValue 2000 */
  minGainMs?: number;
  /** ... and at least this share of its expected wait where it is. @defaultValue 0.25 */
  minGainShare?: number;
}

export const DEFAULT_MIN_GAIN_MS = 2_000;
export const DEFAULT_MIN_GAIN_SHARE = 0.25;

export interface Move {
  node: NodeView;
  routing: Routing;
  fromEtaMs: number;
  toEtaMs: number;
  gainMs: number;
  coldLoad: boolean;
}

/** Expected ms until `job` starts where it is; Infinity when its node is gone or not eligible. */
export function etaInPlace(job: WaitingJob, from: NodeView | undefined, load: LoadOf, learner: CostLearner, o?: BalancedOptions): number {
  if (from === undefined || !from.eligible) return Number.POSITIVE_INFINITY;
  const model = normalizeModel(job.model);
  const l = load(job.nodeId, model);
  const answer = learner.answerMs(job.nodeId, model);
  const running = Math.min(Math.max(0, l.running), job.ahead);
  const work = (running * (o?.runningResidual ?? DEFAULT_RUNNING_RESIDUAL) + Math.max(0, job.ahead - running)) * answer;
  const wait = slotWaitMs(slotsOf(from), job.ahead, work);
  if (from.loaded.has(model)) return Math.max(wait, l.loadingMs ?? 0);
  return wait + learner.loadMs(job.nodeId, model);
}

/** The node a job of one model would move to, found once for many jobs (see `shouldMove`). */
export interface MoveTarget {
  node: NodeView;
  eta: Eta;
  warm: boolean;
}

/**
 * The eligible node (of `ordered`, other than `exceptNode`) that would start `model` soonest:
 * the best warm one, unless a cold one beats it by the cold margin. It does not depend on the
 * job, so a caller weighing many jobs of one model from one queue finds it once.
 */
export function moveTarget(
  model: string,
  exceptNode: string,
  ordered: readonly NodeView[],
  load: LoadOf,
  learner: CostLearner,
  o?: MoveOptions,
): MoveTarget | undefined {
  const key = normalizeModel(model);
  const c = candidatesOf(key, ordered);
  const best = (list: readonly NodeView[], warm: boolean): MoveTarget | undefined => {
    let b: MoveTarget | undefined;
    for (const n of list) {
      if (n.health.node_id === exceptNode || n.loaded.has(key) !== warm) continue;
      const e = etaOn(n, key, warm, load, learner, o);
      if (b === undefined || e.etaMs < b.eta.etaMs) b = { node: n, eta: e, warm };
    }
    return b;
  };
  const warm = best(c.loaded, true);
  const cold = best(c.installed.length > 0 || warm !== undefined ? c.installed : c.unknown, false);
  const margin = warm === undefined ? 0 : coldMarginMs(warm.eta, o);
  return cold !== undefined && (warm === undefined || cold.eta.etaMs + margin < warm.eta.etaMs) ? cold : warm;
}

/**
 * Where `job` should move, if anywhere: `moveTarget` for its model (or what `targetOf` gives,
 * the same found once for several jobs), and only when the gain is over max(minGainMs,
 * minGainShare x the wait where it is).
 */
export function shouldMove(
  job: WaitingJob,
  from: NodeView | undefined,
  ordered: readonly NodeView[],
  load: LoadOf,
  learner: CostLearner,
  o?: MoveOptions,
  targetOf?: (model: string) => MoveTarget | undefined,
): Move | undefined {
  const fromEta = etaInPlace(job, from, load, learner, o);
  if (fromEta <= (o?.minGainMs ?? DEFAULT_MIN_GAIN_MS)) return undefined;
  const pick = targetOf !== undefined ? targetOf(job.model) : moveTarget(job.model, job.nodeId, ordered, load, learner, o);
  if (pick === undefined) return undefined;
  const gain = fromEta - pick.eta.etaMs;
  const need = Math.max(o?.minGainMs ?? DEFAULT_MIN_GAIN_MS, (o?.minGainShare ?? DEFAULT_MIN_GAIN_SHARE) * (Number.isFinite(fromEta) ? fromEta : 0));
  if (!(gain > need)) return undefined;
  return { node: pick.node, routing: pick.warm ? 'sticky' : 'fallback', fromEtaMs: fromEta, toEtaMs: pick.eta.etaMs, gainMs: gain, coldLoad: !pick.warm };
}

export interface KeepAliveState {
  /** Eligible nodes with the model loaded now. */
  warmCopies: number;
  /** When the model was last asked for (ms, the caller's clock). */
  lastDemandMs: number;
  /** When the copy in question would unload (Ollama's `expires_at`), ms. */
  expiresAtMs: number;
  now: number;
}

export interface KeepAliveOptions {
  /** Demand this recent counts as recent. @defaultValue 600000 (10 min) */
  demandWindowMs?: number;
  /** Renew this long before the copy would expire. @defaultValue 60000 */
  renewBeforeMs?: number;
}

/** Whether to renew the keep-alive of the last warm copy of a model with recent demand. */
export function shouldRenewKeepAlive(s: KeepAliveState, o?: KeepAliveOptions): boolean {
  if (s.warmCopies !== 1) return false;
  if (s.now - s.lastDemandMs > (o?.demandWindowMs ?? 600_000)) return false;
  return s.expiresAtMs - s.now <= (o?.renewBeforeMs ?? 60_000);
}

/** RAM relief (relief.ts): at most one unload per node this often. */
export const RELIEF_EVERY_MS = 15_000;

/**
 * The model a node over its RAM limit should unload: the one used longest ago (`lastUse`:
 * ms, undefined when never seen used, which counts as oldest), ties by name.
 */
export function unloadChoice(models: Iterable<string>, lastUse: (model: string) => number | undefined): string | undefined {
  let pick: string | undefined;
  let pickAt = Number.POSITIVE_INFINITY;
  for (const m of models) {
    const at = lastUse(m) ?? Number.NEGATIVE_INFINITY;
    if (pick === undefined || at < pickAt || (at === pickAt && m < pick)) {
      pick = m;
      pickAt = at;
    }
  }
  return pick;
}
