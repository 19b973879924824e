/**
 * The simulated Pis, on the Ollama simulator's own profiles (src/simulator/profiles.ts): RAM,
 * storage bandwidth, tokens per second per model, the slowdown of parallel streams, heat
 * (src/simulator/thermal.ts, the same model), Ollama's loaded-model limit (3), keep-alive (5 min)
 * and eviction of the idle model that expires soonest. Time is simulated milliseconds.
 */
import { ThermalModel } from '../simulator/thermal.js';
import { SimClock } from '../simulator/clock.js';
import { MODEL_CATALOG, NODE_PROFILES, STORAGE_BANDWIDTH, type ModelSpec, type NodeProfile, type StorageKind } from '../simulator/profiles.js';

export const KEEP_ALIVE_MS = 300_000;
export const MAX_LOADED_MODELS = 3;

export interface Job {
  id: number;
  model: string;
  arrival: number;
  promptTokens: number;
  evalTokens: number;
  /** Set when placed / started / done. */
  node: number;
  placedAt: number;
  start: number;
  firstToken: number;
  end: number;
  cold: boolean;
  avoidable: boolean;
  /** Ms the job waited for its model to load, and its prompt and generation times. */
  loadMs: number;
  promptMs: number;
  moves: number;
}

export interface Copy {
  /** When the model is ready (load finished). */
  readyAt: number;
  active: number;
  /** When it unloads if unused; Infinity while in use. */
  expiresAt: number;
  lastUsed: number;
}

export interface SimNode {
  index: number;
  id: string;
  profile: NodeProfile;
  storage: StorageKind;
  slots: number;
  modelRam: number;
  installed: string[];
  /** Jobs placed here not started, FIFO. */
  queue: Job[];
  running: number;
  /** Jobs running, for their true finish times. */
  active: Set<Job>;
  copies: Map<string, Copy>;
  usedRam: number;
  thermal: ThermalModel;
  /** Exclusion with hysteresis: set above max, cleared only below readmit. */
  hot: boolean;
  full: boolean;
  /** When the bridge last asked it to unload a model for RAM (ms). */
  reliefAt: number;
  busyMs: number;
  lastBusyChange: number;
  loads: number;
}

export const SPECS = new Map<string, ModelSpec>(MODEL_CATALOG.map((m) => [m.name, m]));

export function spec(model: string): ModelSpec {
  const s = SPECS.get(model);
  if (!s) throw new Error(`unknown model ${model}`);
  return s;
}

/**
 * The cluster's boards: 3 nodes are one of each (16, 8, 4 GB); larger clusters are a quarter
 * 16 GB, half 8 GB, a quarter 4 GB, and every fourth node reads models from NVMe instead of
 * microSD. Every node has every model it can hold installed. Concurrency follows SPEC 6: 2 on
 * the 16 GB board, 1 on the others (the 4 GB board with an explicit --concurrency 1).
 */
export function buildCluster(size: number): SimNode[] {
  const nodes: SimNode[] = [];
  const tiers = size === 3 ? ['pi5-16g', 'pi5-8g', 'pi5-4g'] : undefined;
  for (let i = 0; i < size; i++) {
    const name = tiers ? tiers[i]! : i % 4 === 0 ? 'pi5-16g' : i % 4 === 2 ? 'pi5-4g' : 'pi5-8g';
    const profile = NODE_PROFILES[name]!;
    const storage: StorageKind = size > 3 && i % 4 === 3 ? 'nvme' : 'microsd';
    const modelRam = profile.ramBytes - profile.baseUsedBytes;
    const installed = MODEL_CATALOG.filter((m) => m.name in profile.rates && m.memoryBytes <= modelRam).map((m) => m.name);
    const clock = new SimClock(1);
    const thermal = new ThermalModel(profile.thermal, clock);
    thermal.step(0, 0);
    nodes.push({
      index: i,
      id: `pi-${String(i).padStart(4, '0')}`,
      profile,
      storage,
      slots: profile.ramBytes >= 12 * 1024 ** 3 ? 2 : 1,
      modelRam,
      installed,
      queue: [],
      running: 0,
      active: new Set(),
      copies: new Map(),
      usedRam: 0,
      thermal,
      hot: false,
      full: false,
      reliefAt: Number.NEGATIVE_INFINITY,
      busyMs: 0,
      lastBusyChange: 0,
      loads: 0,
    });
  }
  return nodes;
}

export function loadTimeMs(n: SimNode, model: string): number {
  return (spec(model).diskBytes / STORAGE_BANDWIDTH[n.storage]) * 1000;
}

/** Prompt and generation time of one job on `n` with `streams` generating at once. */
export function serviceMs(n: SimNode, job: Pick<Job, 'model' | 'promptTokens' | 'evalTokens'>, streams: number): { promptMs: number; evalMs: number } {
  const rates = n.profile.rates[job.model];
  if (!rates) throw new Error(`${n.id} cannot run ${job.model}`);
  const slow = (1 + n.profile.parallelSlowdown * (Math.max(1, streams) - 1)) / n.thermal.rateFactor();
  return { promptMs: (job.promptTokens / rates.promptTps) * 1000 * slow, evalMs: (job.evalTokens / rates.evalTps) * 1000 * slow };
}

/** Unload `model` from `n` (an idle copy). */
export function unloadCopy(n: SimNode, model: string): void {
  if (n.copies.delete(model)) n.usedRam -= spec(model).memoryBytes;
}

/** Drop copies whose keep-alive ran out (Ollama unloads them then). */
export function expire(n: SimNode, now: number): string[] {
  const gone: string[] = [];
  for (const [m, c] of n.copies) {
    if (c.active === 0 && c.expiresAt <= now) {
      n.copies.delete(m);
      n.usedRam -= spec(m).memoryBytes;
      gone.push(m);
    }
  }
  return gone;
}

/**
 * Make room for `model` as Ollama's scheduler does: unload idle copies, the one expiring soonest
 * first, until it fits in RAM and under the loaded-model limit. False when busy copies leave no
 * room (the job waits for one to finish).
 */
export function makeRoom(n: SimNode, model: string, evicted: (m: string) => void): boolean {
  const need = spec(model).memoryBytes;
  while (n.copies.size >= MAX_LOADED_MODELS || n.usedRam + need > n.modelRam) {
    let victim: string | undefined;
    let soonest = Number.POSITIVE_INFINITY;
    for (const [m, c] of n.copies) {
      if (c.active === 0 && c.expiresAt < soonest) {
        soonest = c.expiresAt;
        victim = m;
      }
    }
    if (victim === undefined) return false;
    n.copies.delete(victim);
    n.usedRam -= spec(victim).memoryBytes;
    evicted(victim);
  }
  return true;
}

export function ramPercent(n: SimNode): number {
  return ((n.profile.baseUsedBytes + n.usedRam) / n.profile.ramBytes) * 100;
}

/** Requests per second the node completes, alone or in parallel, for a mix of jobs. */
export function throughput(n: SimNode, mix: readonly { model: string; weight: number }[], meanPrompt: number, meanEval: number): number {
  let meanMs = 0;
  let w = 0;
  for (const { model, weight } of mix) {
    if (!n.installed.includes(model)) continue;
    const s = serviceMs(n, { model, promptTokens: meanPrompt, evalTokens: meanEval }, n.slots);
    meanMs += weight * (s.promptMs + s.evalMs);
    w += weight;
  }
  return w === 0 ? 0 : (n.slots * 1000) / (meanMs / w);
}
