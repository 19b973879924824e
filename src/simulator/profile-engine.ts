/**
 * The profile engine: no real inference. Loading waits size / disk bandwidth; a generation waits
 * prompt tokens / prompt rate, then emits deterministic tokens paced at the board's eval rate
 * (slowed by concurrent streams and thermal throttling). All waits run on the simulated clock.
 */
import { createHash } from 'node:crypto';
import { SimClock, delay, monoNow } from './clock.js';
import type { EngineModelInfo, GenerateInput, GenerateResult, GenerationEngine } from './engine.js';
import { MODEL_CATALOG, type ModelSpec, type NodeProfile } from './profiles.js';
import { countPromptTokens, planTokens } from './text.js';

export interface ProfileEngineOptions {
  profile: NodeProfile;
  clock: SimClock;
  /** Bytes per second the node reads models at. */
  diskBandwidth: number;
  /** Bounds of a response's natural length in tokens. @defaultValue [8, 64] */
  responseTokens?: [number, number];
  /** Extra speed multiplier read before each token (thermal throttling). @defaultValue 1 */
  rateFactor?: () => number;
}

/** A digest that looks like Ollama's (64 hex) and is stable per model name. */
export function modelDigest(name: string): string {
  return createHash('sha256').update(`orion-sim/${name}`).digest('hex');
}

export function engineInfo(spec: ModelSpec): EngineModelInfo {
  return {
    name: spec.name,
    sizeBytes: spec.diskBytes,
    memoryBytes: spec.memoryBytes,
    digest: modelDigest(spec.name),
    family: spec.family,
    parameterSize: spec.parameterSize,
    quantizationLevel: spec.quantizationLevel,
    contextLength: spec.contextLength,
  };
}

export class ProfileEngine implements GenerationEngine {
  readonly kind = 'profile' as const;
  private readonly specs: ModelSpec[];
  private active = 0;
  private readonly closing = new AbortController();

  constructor(private readonly opts: ProfileEngineOptions) {
    this.specs = MODEL_CATALOG.filter((m) => m.name in opts.profile.rates);
  }

  models(): EngineModelInfo[] {
    return this.specs.map(engineInfo);
  }

  /** Simulated milliseconds a cold load of this model takes on this node. */
  loadTimeMs(model: string): number {
    return (this.spec(model).diskBytes / this.opts.diskBandwidth) * 1000;
  }

  async load(model: string, signal?: AbortSignal): Promise<void> {
    const ms = this.loadTimeMs(model);
    await this.opts.clock.sleep(ms, anySignal(signal, this.closing.signal));
  }

  async unload(_model: string): Promise<void> {}

  /** Preloading at start-up: the node starts with the model already in memory. */
  loadInstantly(model: string): void {
    this.spec(model);
  }

  async generate(input: GenerateInput): Promise<GenerateResult> {
    const rates = this.opts.profile.rates[input.model];
    if (!rates) throw new Error(`model '${input.model}' is not known to profile ${this.opts.profile.name}`);
    const signal = anySignal(input.signal, this.closing.signal);
    const [minTokens, maxTokens] = this.opts.responseTokens ?? [8, 64];
    const seed = typeof input.options['seed'] === 'number' ? input.options['seed'] : 0;
    const plan = planTokens(
      { model: input.model, prompt: input.prompt, system: input.system, messages: input.messages, seed, format: input.format },
      input.options,
      minTokens,
      maxTokens,
    );
    const promptEvalCount = countPromptTokens(input);

    this.active++;
    try {
      const t0 = monoNow();
      await this.opts.clock.sleep((promptEvalCount / (rates.promptTps * this.factor())) * 1000, signal);
      const t1 = monoNow();
      // Tokens are due on an absolute schedule so timer granularity does not slow the average rate.
      let due = t1;
      for (const token of plan.tokens) {
        due += this.opts.clock.toReal(1000 / (rates.evalTps * this.factor()));
        await delay(due - monoNow(), signal);
        input.onToken(token);
      }
      const t2 = monoNow();
      return {
        doneReason: plan.doneReason,
        promptEvalCount,
        promptEvalDurationNs: Math.round((t1 - t0) * 1e6),
        evalCount: plan.tokens.length,
        evalDurationNs: Math.round((t2 - t1) * 1e6),
      };
    } finally {
      this.active--;
    }
  }

  async close(): Promise<void> {
    this.closing.abort();
  }

  private factor(): number {
    const contention = 1 + this.opts.profile.parallelSlowdown * Math.max(0, this.active - 1);
    return (this.opts.rateFactor?.() ?? 1) / contention;
  }

  private spec(model: string): ModelSpec {
    const spec = this.specs.find((m) => m.name === model);
    if (!spec) throw new Error(`model '${model}' is not known to profile ${this.opts.profile.name}`);
    return spec;
  }
}

function anySignal(a: AbortSignal | undefined, b: AbortSignal): AbortSignal {
  return a ? AbortSignal.any([a, b]) : b;
}
