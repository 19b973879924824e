/**
 * What the balanced rule knows about the cluster's speed, learned from the final responses the
 * workers publish (SPEC.md section 4): per node and model, the time one answer occupies a job
 * slot and the time a cold load takes; per node, the rate it loads models at (MB/s), from loads
 * of models of known size. Pure: no Redis, no clock; the bridge feeds it and may share it between
 * bridges through `toJSON` / `fromJSON`.
 *
 * An answer's time, when responses carry token counts (Ollama's prompt_eval_count and eval_count):
 * the node's ms per token for the model times the model's mean lengths; else a moving average of
 * whole answer times. Estimates fall back in this order: learned for (node, model); for a load, the model's size at
 * the node's learned rate; the same model on other nodes (the mean of what was learned there);
 * the default (`--default-answer-time`, `--default-load-time`).
 */
import type { InferenceResponse } from '../contracts/types.js';
import { normalizeCached } from './model-names.js';

/**
 * A cold load of a 2 GB model (llama3.2:3b) from a Raspberry Pi 5's microSD card at 85 MB/s:
 * about 24 s (the Ollama simulator's pi5 profiles; ROUTING-NOTES.md).
 */
export const DEFAULT_LOAD_TIME_MS = 24_000;
/**
 * One chat answer on a Pi 5: about 210 tokens on average (Azure chat trace) at 10-12 tokens/s
 * for a 1B-class model, plus its prompt: about 20 s.
 */
export const DEFAULT_ANSWER_TIME_MS = 20_000;
/** Weight of a new observation in the moving averages. */
export const LEARN_ALPHA = 0.2;
/**
 * Answer lengths are heavy-tailed (a few tokens to thousands), so an average of whole answer
 * times per node jumps with every sample. With token counts the learner splits the two: per
 * node and model the ms per prompt token and per generated token (steady), and per model the
 * mean prompt and answer length over every node, a plain mean of the last this many samples.
 */
export const TOKEN_MEAN_WINDOW = 500;
/** Loads learned between two exact recomputations of the load floors (`loadFloorMs`). */
const FLOOR_REFRESH = 500;
/** Ollama reports a few ms of load_duration on a warm model; above this it was a cold load. */
export const COLD_LOAD_MIN_MS = 500;

/** The fields of a final response (SPEC.md section 4) the learner reads. */
export type Observation = Pick<
  InferenceResponse,
  'total_duration_ms' | 'load_duration_ms' | 'prompt_eval_duration_ms' | 'eval_duration_ms' | 'prompt_eval_count' | 'eval_count'
>;

export interface LearnerDefaults {
  /** @defaultValue DEFAULT_LOAD_TIME_MS */
  loadMs: number;
  /** @defaultValue DEFAULT_ANSWER_TIME_MS */
  answerMs: number;
}

/** An exponentially weighted mean and how many samples made it. */
interface Ewma {
  v: number;
  n: number;
}

export interface LearnerJSON {
  v: 1;
  answer: Record<string, Ewma>;
  load: Record<string, Ewma>;
  rate: Record<string, Ewma>;
  sizes: Record<string, number>;
  /** Per node and model: ms per prompt token, ms per generated token. */
  promptTok?: Record<string, Ewma>;
  evalTok?: Record<string, Ewma>;
  /** Per model: mean prompt and answer length in tokens. */
  promptLen?: Record<string, Ewma>;
  evalLen?: Record<string, Ewma>;
}

/** A plain mean over the last `TOKEN_MEAN_WINDOW` samples (a moving average after that). */
function windowMean(prev: Ewma | undefined, x: number): Ewma {
  if (prev === undefined) return { v: x, n: 1 };
  const n = prev.n + 1;
  return { v: prev.v + (x - prev.v) / Math.min(n, TOKEN_MEAN_WINDOW), n };
}

function ewma(prev: Ewma | undefined, x: number): Ewma {
  if (prev === undefined) return { v: x, n: 1 };
  return { v: prev.v + LEARN_ALPHA * (x - prev.v), n: prev.n + 1 };
}

/** Per node, per model: nested maps, so a lookup builds no key string. */
type Table = Map<string, Map<string, Ewma>>;
const getIn = (t: Table, node: string, model: string): Ewma | undefined => t.get(node)?.get(model);
function setIn(t: Table, node: string, model: string, e: Ewma): void {
  let row = t.get(node);
  if (row === undefined) t.set(node, (row = new Map()));
  row.set(model, e);
}
function flatten(t: Table): Record<string, Ewma> {
  const out: Record<string, Ewma> = {};
  for (const [node, row] of t) for (const [m, e] of row) out[`${node}\u0000${m}`] = e;
  return out;
}
const finite = (x: number | undefined): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;

export class CostLearner {
  readonly defaults: LearnerDefaults;
  private readonly answer: Table = new Map();
  private readonly load: Table = new Map();
  private readonly norm = normalizeCached;
  /** Per node, per model: ms per prompt token and per generated token (one lookup for both). */
  private readonly tok = new Map<string, Map<string, { prompt?: Ewma; eval?: Ewma }>>();
  /** Per model: mean prompt and answer lengths, tokens. */
  private readonly lens = new Map<string, { prompt?: Ewma; eval?: Ewma }>();
  /** Per node, MB/s. */
  private readonly rate = new Map<string, Ewma>();
  /** Per model, MB on disk (from whoever knows: `/api/tags`, a catalogue, a test). */
  private readonly sizes = new Map<string, number>();
  /** Per model: the mean answer / load time over every node that learned one (a cache). */
  private readonly answerByModel = new Map<string, { sum: number; count: number }>();
  private readonly loadByModel = new Map<string, { sum: number; count: number }>();
  /** Per model, `loadFloorMs`'s answer until the next load is learned. */
  private readonly floors = new Map<string, number>();
  private floorUpdates = 0;

  /** Observations taken so far: answer times may have changed whenever it moves. */
  private changes = 0;

  get version(): number {
    return this.changes;
  }

  constructor(defaults: Partial<LearnerDefaults> = {}) {
    this.defaults = { loadMs: defaults.loadMs ?? DEFAULT_LOAD_TIME_MS, answerMs: defaults.answerMs ?? DEFAULT_ANSWER_TIME_MS };
  }

  /** Remember a model's size on disk, in MB, for estimating loads where it was never loaded. */
  noteSize(model: string, sizeMb: number): void {
    if (finite(sizeMb) && sizeMb > 0 && this.sizes.get(this.norm(model)) !== sizeMb) {
      this.sizes.set(this.norm(model), sizeMb);
      this.floors.clear();
    }
  }

  /**
   * Remember the sizes a node publishes in its health document (`installed_sizes_mb`, SPEC.md
   * section 5: model -> MB). Lenient: anything but a positive finite number is skipped.
   */
  noteSizes(sizes: unknown): void {
    if (typeof sizes !== 'object' || sizes === null || Array.isArray(sizes)) return;
    for (const [m, mb] of Object.entries(sizes as Record<string, unknown>)) if (typeof mb === 'number') this.noteSize(m, mb);
  }

  /** Learn from one final response of `model` served on `node`. Bad or missing fields are ignored. */
  observe(node: string, model: string, o: Observation, sizeMb?: number): void {
    this.changes++;
    const m = this.norm(model);
    if (sizeMb !== undefined) this.noteSize(m, sizeMb);
    const load = finite(o.load_duration_ms) ? o.load_duration_ms : 0;
    let busy: number | undefined;
    if (finite(o.prompt_eval_duration_ms) || finite(o.eval_duration_ms)) {
      busy = (finite(o.prompt_eval_duration_ms) ? o.prompt_eval_duration_ms : 0) + (finite(o.eval_duration_ms) ? o.eval_duration_ms : 0);
    } else if (finite(o.total_duration_ms)) {
      busy = Math.max(0, o.total_duration_ms - load);
    }
    if (busy !== undefined && busy > 0) this.learn(this.answer, this.answerByModel, node, m, busy);
    const pc = o.prompt_eval_count;
    const ec = o.eval_count;
    if (finite(pc) && finite(ec) && pc + ec > 0 && finite(o.prompt_eval_duration_ms) && finite(o.eval_duration_ms)) {
      const len = this.lens.get(m) ?? {};
      this.lens.set(m, { prompt: windowMean(len.prompt, pc), eval: windowMean(len.eval, ec) });
      const t = this.tokOf(node, m);
      if (pc > 0) t.prompt = ewma(t.prompt, o.prompt_eval_duration_ms / pc);
      if (ec > 0) t.eval = ewma(t.eval, o.eval_duration_ms / ec);
    }
    if (load >= COLD_LOAD_MIN_MS) {
      this.learn(this.load, this.loadByModel, node, m, load);
      const size = this.sizes.get(m);
      if (size !== undefined) this.rate.set(node, ewma(this.rate.get(node), size / (load / 1000)));
      this.lowerFloors(node, m);
    }
  }

  /**
   * Keep `loadFloorMs` a lower bound after a load was learned on `node`, without walking every
   * node: each cached floor only goes down to the new figures (the load of `m` there, the mean
   * of `m`, every sized model at the node's new rate). A floor that became loose (the figure it
   * came from went up) is recomputed after FLOOR_REFRESH loads.
   */
  private lowerFloors(node: string, m: string): void {
    if (++this.floorUpdates >= FLOOR_REFRESH) {
      this.floorUpdates = 0;
      this.floors.clear();
      return;
    }
    const own = getIn(this.load, node, m)?.v;
    const agg = this.loadByModel.get(m);
    const f = this.floors.get(m);
    if (f !== undefined && own !== undefined && agg !== undefined) this.floors.set(m, Math.min(f, own, agg.sum / agg.count));
    const rate = this.rate.get(node)?.v;
    if (rate === undefined || !(rate > 0)) return;
    for (const [model, floor] of this.floors) {
      const size = this.sizes.get(model);
      if (size !== undefined) this.floors.set(model, Math.min(floor, (size / rate) * 1000));
    }
  }

  private tokOf(node: string, m: string): { prompt?: Ewma; eval?: Ewma } {
    let row = this.tok.get(node);
    if (row === undefined) this.tok.set(node, (row = new Map()));
    let t = row.get(m);
    if (t === undefined) row.set(m, (t = {}));
    return t;
  }

  private tokTable(kind: 'prompt' | 'eval'): Table {
    const out: Table = new Map();
    for (const [node, row] of this.tok) for (const [m, t] of row) if (t[kind] !== undefined) setIn(out, node, m, t[kind]);
    return out;
  }

  private learn(table: Table, byModel: Map<string, { sum: number; count: number }>, node: string, m: string, x: number): void {
    const prev = getIn(table, node, m);
    const next = ewma(prev, x);
    setIn(table, node, m, next);
    const agg = byModel.get(m) ?? { sum: 0, count: 0 };
    agg.sum += next.v - (prev?.v ?? 0);
    if (prev === undefined) agg.count += 1;
    byModel.set(m, agg);
  }

  /** Expected ms one answer of `model` occupies a job slot on `node` (prompt + generation). */
  answerMs(node: string, model: string): number {
    const m = this.norm(model);
    return this.answerOn(node, m, this.lens.get(m));
  }

  /**
   * `answerMs` for one model, as a function of the node: the model's mean lengths are looked up
   * once, for a caller weighing many nodes.
   */
  answerTimesOf(model: string): (node: string) => number {
    const m = this.norm(model);
    const lens = this.lens.get(m);
    return (node) => this.answerOn(node, m, lens);
  }

  /**
   * One answer of `m` (normalised) on `node`, `lens` being the model's mean lengths: with token
   * counts, the node's speed for the model times those lengths; else the node's own mean answer
   * time, the mean over nodes, the default.
   */
  private answerOn(node: string, m: string, lens: { prompt?: Ewma; eval?: Ewma } | undefined): number {
    const lenEval = lens?.eval?.v;
    const t = lenEval === undefined ? undefined : this.tok.get(node)?.get(m);
    if (t?.eval !== undefined && lenEval !== undefined) return lenEval * t.eval.v + (t.prompt === undefined ? 0 : (lens?.prompt?.v ?? 0) * t.prompt.v);
    return getIn(this.answer, node, m)?.v ?? this.answerMeanMs(m);
  }

  /** The mean answer time of `m` over the nodes that learned one, else the default. */
  private answerMeanMs(m: string): number {
    const agg = this.answerByModel.get(m);
    return agg !== undefined && agg.count > 0 ? agg.sum / agg.count : this.defaults.answerMs;
  }

  /** Expected ms a cold load of `model` takes on `node`; `sizeMb` overrides a remembered size. */
  loadMs(node: string, model: string, sizeMb?: number): number {
    const m = this.norm(model);
    const own = getIn(this.load, node, m);
    if (own !== undefined) return own.v;
    const size = sizeMb ?? this.sizes.get(m);
    const rate = this.rate.get(node);
    if (size !== undefined && rate !== undefined && rate.v > 0) return (size / rate.v) * 1000;
    const agg = this.loadByModel.get(m);
    if (agg !== undefined && agg.count > 0) return agg.sum / agg.count;
    return this.defaults.loadMs;
  }

  /**
   * A lower bound of `loadMs(n, model)` over every node n: a cheap test that lets a caller skip
   * looking at cold nodes when waiting on a warm one is already shorter than any load.
   */
  loadFloorMs(model: string): number {
    const m = this.norm(model);
    let floor = this.floors.get(m);
    if (floor !== undefined) return floor;
    const agg = this.loadByModel.get(m);
    floor = agg !== undefined && agg.count > 0 ? agg.sum / agg.count : this.defaults.loadMs;
    for (const row of this.load.values()) {
      const e = row.get(m);
      if (e !== undefined && e.v < floor) floor = e.v;
    }
    const size = this.sizes.get(m);
    if (size !== undefined) for (const r of this.rate.values()) if (r.v > 0) floor = Math.min(floor, (size / r.v) * 1000);
    this.floors.set(m, floor);
    return floor;
  }

  /** The node's learned load rate in MB/s, if any. */
  loadRateMbps(node: string): number | undefined {
    return this.rate.get(node)?.v;
  }

  toJSON(): LearnerJSON {
    return {
      v: 1,
      answer: flatten(this.answer),
      load: flatten(this.load),
      rate: Object.fromEntries(this.rate),
      sizes: Object.fromEntries(this.sizes),
      promptTok: flatten(this.tokTable('prompt')),
      evalTok: flatten(this.tokTable('eval')),
      promptLen: pick(this.lens, 'prompt'),
      evalLen: pick(this.lens, 'eval'),
    };
  }

  /** Rebuild from `toJSON`'s output; entries that are not well-formed are skipped. */
  static fromJSON(doc: unknown, defaults: Partial<LearnerDefaults> = {}): CostLearner {
    const l = new CostLearner(defaults);
    if (typeof doc !== 'object' || doc === null) return l;
    const d = doc as Partial<LearnerJSON>;
    for (const [k, e] of entries(d.answer)) l.restore(l.answer, l.answerByModel, k, e);
    for (const [k, e] of entries(d.load)) l.restore(l.load, l.loadByModel, k, e);
    for (const [k, e] of entries(d.rate)) l.rate.set(k, e);
    for (const kind of ['prompt', 'eval'] as const) {
      const table: Table = new Map();
      for (const [k, e] of entries(kind === 'prompt' ? d.promptTok : d.evalTok)) unflatten(table, k, e);
      for (const [node, row] of table) for (const [m, e] of row) l.tokOf(node, m)[kind] = e;
      for (const [m, e] of entries(kind === 'prompt' ? d.promptLen : d.evalLen)) {
        const len = l.lens.get(m) ?? {};
        len[kind] = e;
        l.lens.set(m, len);
      }
    }
    if (typeof d.sizes === 'object' && d.sizes !== null) {
      for (const [m, s] of Object.entries(d.sizes)) if (typeof s === 'number') l.noteSize(m, s);
    }
    return l;
  }

  private restore(table: Table, byModel: Map<string, { sum: number; count: number }>, k: string, e: Ewma): void {
    const m = unflatten(table, k, e);
    if (m === undefined) return;
    const agg = byModel.get(m) ?? { sum: 0, count: 0 };
    agg.sum += e.v;
    agg.count += 1;
    byModel.set(m, agg);
  }
}

function pick(lens: ReadonlyMap<string, { prompt?: Ewma; eval?: Ewma }>, kind: 'prompt' | 'eval'): Record<string, Ewma> {
  const out: Record<string, Ewma> = {};
  for (const [m, len] of lens) if (len[kind] !== undefined) out[m] = len[kind];
  return out;
}

/** Put a `flatten`ed entry back; returns its model, or undefined when the key is malformed. */
function unflatten(t: Table, k: string, e: Ewma): string | undefined {
  const sep = k.indexOf('\u0000');
  if (sep <= 0) return undefined;
  const m = k.slice(sep + 1);
  setIn(t, k.slice(0, sep), m, e);
  return m;
}

function entries(rec: unknown): [string, Ewma][] {
  if (typeof rec !== 'object' || rec === null) return [];
  const out: [string, Ewma][] = [];
  for (const [k, e] of Object.entries(rec as Record<string, unknown>)) {
    const x = e as Partial<Ewma> | null;
    if (x !== null && typeof x === 'object' && finite(x.v) && typeof x.n === 'number') out.push([k, { v: x.v, n: x.n }]);
  }
  return out;
}
