/**
 * The llama engine: real inference with llama.cpp (through node-llama-cpp) on models the project
 * generates itself, behind the simulator's GenerationEngine interface. Same HTTP server, same
 * scheduler as the profile engine; the text, the token counts and every duration are real.
 *
 *   const engine = await createLlamaEngine();          // writes tiny-llama:latest to a temp dir
 *   await engine.load('tiny-llama:latest');
 *   await engine.generate({ model: 'tiny-llama:latest', prompt: 'hi', options: { seed: 1 }, ... });
 *
 * Runs on the CPU with one thread per context by default (on a 2-core box two threads are far
 * slower than one). Every model file is validated before llama.cpp opens it, since some broken
 * files abort the process instead of throwing.
 */
import { createHash, randomInt } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  GgufFileInfo,
  LlamaContext,
  LlamaContextSequence,
  LlamaGrammar,
  LlamaGrammarEvaluationState,
  LlamaModel,
  SequenceEvaluateOptions,
  Token,
} from 'node-llama-cpp';
import { OrionError } from '../../lib/errors.js';
import { silentLogger, type Logger } from '../../lib/logger.js';
import type { EngineModelInfo, GenerateInput, GenerateResult, GenerationEngine } from '../engine.js';
import { validateLlamaGguf, type LlamaHyperParams } from './gguf-validate.js';
import {
  END_OF_TURN_STOP,
  IncrementalDetokenizer,
  StopFilter,
  formatParameterCount,
  renderChatPrompt,
  samplingPlan,
  type SamplingPlan,
} from './generation.js';
import { Pool, abortReason } from './pool.js';
import { addLlamaLogSink, llamaRuntime, type LlamaRuntime } from './runtime.js';
import { writeTinyLlama, type TinyLlamaSpec } from './tiny-model.js';

export const DEFAULT_LLAMA_MODEL = 'tiny-llama:latest';

/** A model to offer: a GGUF file on disk, or (no path) a tiny model generated at start. */
export interface LlamaModelSource {
  /** Ollama-style name; `:latest` is added when there is no tag. */
  name: string;
  /** An existing llama-architecture GGUF file. */
  path?: string;
  /** Spec of the generated model when there is no path. @defaultValue DEFAULT_TINY_LLAMA */
  tiny?: Partial<TinyLlamaSpec>;
}

export interface LlamaEngineOptions {
  /** @defaultValue `[{ name: 'tiny-llama:latest' }]`, the generated model */
  models?: LlamaModelSource[];
  /** Where generated models are written. @defaultValue a new temp directory, removed by close() */
  modelDir?: string;
  /** CPU threads per loaded model. @defaultValue 1 */
  threads?: number;
  /** Tokens per context (Ollama's num_ctx), capped at the model's context_length. @defaultValue 2048 */
  contextSize?: number;
  /** Generations one loaded model runs at once (Ollama's OLLAMA_NUM_PARALLEL). @defaultValue 1 */
  parallel?: number;
  logger?: Logger;
}

export interface LlamaEngine extends GenerationEngine {
  readonly kind: 'llama';
  /** The GGUF file behind a model name. */
  modelPath(model: string): string;
  /** Wall-clock milliseconds of the model's last load (llama.cpp model + context), if loaded. */
  lastLoadMs(model: string): number | undefined;
}

interface Loaded {
  model: LlamaModel;
  context: LlamaContext;
  sequences: Pool<LlamaContextSequence>;
  /** Generations running on this model, so unload can stop them first. */
  running: Map<AbortController, Promise<unknown>>;
}

interface Entry {
  info: EngineModelInfo;
  path: string;
  hyper: LlamaHyperParams;
  loaded?: Loaded;
  loading?: Promise<Loaded>;
  lastLoadMs?: number;
}

/** Ollama's rule: a name without a tag means `:latest`. */
export function normalizeModelName(name: string): string {
  return name.includes(':') ? name : `${name}:latest`;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Start the engine: load node-llama-cpp (about 1.7 s the first time in a process), write the
 * generated models, validate every model file and take its size, sha256 and memory. Rejects when
 * node-llama-cpp cannot run here; see `llamaAvailability()` to ask first.
 */
export async function createLlamaEngine(opts: LlamaEngineOptions = {}): Promise<LlamaEngine> {
  const runtime = await llamaRuntime();
  const ownDir = opts.modelDir === undefined;
  const dir = opts.modelDir ?? (await mkdtemp(join(tmpdir(), 'orion-llama-')));
  const contextSize = opts.contextSize ?? 2048;
  const parallel = Math.max(1, opts.parallel ?? 1);
  const entries = new Map<string, Entry>();
  try {
    for (const source of opts.models ?? [{ name: DEFAULT_LLAMA_MODEL }]) {
      const name = normalizeModelName(source.name);
      if (entries.has(name)) throw new RangeError(`model ${name} is listed twice`);
      const path = source.path ?? (await writeTinyLlama(join(dir, `${name.replace(/[^A-Za-z0-9._-]/g, '-')}.gguf`), source.tiny)).path;
      const { info, hyperParams: hyper, fileSize } = await validateLlamaGguf(path);
      const params = (info.tensorInfo ?? []).reduce((n, t) => n + t.dimensions.reduce<number>((a, b) => a * Number(b), 1), 0);
      entries.set(name, {
        path,
        hyper,
        info: {
          name,
          sizeBytes: fileSize,
          memoryBytes: await memoryEstimate(runtime, info, Math.min(contextSize, hyper.contextLength), parallel),
          digest: await sha256File(path),
          family: 'llama',
          parameterSize: formatParameterCount(params),
          quantizationLevel: 'F32',
          contextLength: hyper.contextLength,
        },
      });
    }
  } catch (err) {
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return new LlamaEngineImpl(runtime, entries, {
    dir: ownDir ? dir : undefined,
    contextSize,
    threads: opts.threads ?? 1,
    parallel,
    log: (opts.logger ?? silentLogger).child({ component: 'llama-engine' }),
  });
}

/**
 * RAM the model takes once loaded: its weights plus a context of `contextSize` tokens for
 * `sequences` sequences, by node-llama-cpp's estimator (the figure a loaded context reports as
 * its memory usage), so /api/ps shows the same size before and after a load.
 */
async function memoryEstimate(rt: LlamaRuntime, info: GgufFileInfo, contextSize: number, sequences: number): Promise<number> {
  const insights = await rt.mod.GgufInsights.from(info, rt.llama);
  const model = await insights.estimateModelResourceRequirementsV2({ gpuLayers: 0 });
  const context = await insights.estimateContextResourceRequirementsV2({ contextSize, modelGpuLayers: 0, sequences });
  return model.cpuRam + context.cpuRam;
}

/** The prompt's tokens after BOS; an over-long prompt keeps its end (as Ollama does), leaving room for a reply token. */
function promptTokens(model: LlamaModel, input: GenerateInput, contextSize: number): Token[] {
  const tokens = model.tokenize(renderChatPrompt(input));
  const bos = model.tokens.bos;
  const room = contextSize - 1 - (bos === null ? 0 : 1);
  const kept = tokens.length > room ? tokens.slice(tokens.length - room) : tokens;
  return bos === null ? kept : [bos, ...kept];
}

function samplerOptions(
  plan: SamplingPlan,
  sequence: LlamaContextSequence,
  grammar: LlamaGrammarEvaluationState | undefined,
  contextSize: number,
): SequenceEvaluateOptions {
  const lastN = plan.repeatLastN < 0 ? contextSize : plan.repeatLastN;
  const penalize = plan.repeatPenalty !== 1 || plan.presencePenalty !== 0 || plan.frequencyPenalty !== 0;
  return {
    temperature: plan.temperature,
    topK: plan.topK,
    topP: plan.topP,
    minP: plan.minP,
    seed: plan.seed ?? randomInt(2 ** 31),
    grammarEvaluationState: grammar,
    repeatPenalty:
      penalize && lastN > 0
        ? {
            // Like llama.cpp's repeat_last_n: the last tokens of the context, prompt included.
            punishTokens: () => sequence.contextTokens.slice(-lastN),
            penalty: plan.repeatPenalty,
            presencePenalty: plan.presencePenalty,
            frequencyPenalty: plan.frequencyPenalty,
          }
        : undefined,
  };
}

class LlamaEngineImpl implements LlamaEngine {
  readonly kind = 'llama' as const;
  private closing: Promise<void> | undefined;
  private readonly removeLogSink: () => void;

  constructor(
    private readonly rt: LlamaRuntime,
    private readonly entries: Map<string, Entry>,
    private readonly cfg: { dir: string | undefined; contextSize: number; threads: number; parallel: number; log: Logger },
  ) {
    this.removeLogSink = addLlamaLogSink(cfg.log);
  }

  models(): EngineModelInfo[] {
    return [...this.entries.values()].map((e) => ({ ...e.info }));
  }

  modelPath(model: string): string {
    return this.entry(model).path;
  }

  lastLoadMs(model: string): number | undefined {
    const e = this.entry(model);
    return e.loaded ? e.lastLoadMs : undefined;
  }

  async load(model: string, signal?: AbortSignal): Promise<void> {
    await this.ensureLoaded(this.entry(model), signal);
  }

  private ensureLoaded(entry: Entry, signal?: AbortSignal): Promise<Loaded> {
    if (this.closing) return Promise.reject(new OrionError('overloaded', 'the llama engine is closing'));
    if (entry.loaded) return Promise.resolve(entry.loaded);
    entry.loading ??= this.loadEntry(entry, signal).finally(() => {
      entry.loading = undefined;
    });
    return entry.loading;
  }

  private async loadEntry(entry: Entry, signal?: AbortSignal): Promise<Loaded> {
    const started = performance.now();
    // Checked again: the file could have changed since start, and a bad one aborts the process.
    await validateLlamaGguf(entry.path).catch((err: unknown) => {
      throw new OrionError('backend_error', `model ${entry.info.name} cannot be loaded: ${(err as Error).message}`, { cause: err });
    });
    const model = await this.rt.llama.loadModel({ modelPath: entry.path, gpuLayers: 0, loadSignal: signal });
    let context: LlamaContext;
    try {
      context = await model.createContext({
        contextSize: Math.min(this.cfg.contextSize, entry.hyper.contextLength),
        sequences: this.cfg.parallel,
        threads: this.cfg.threads,
        createSignal: signal,
      });
    } catch (err) {
      await model.dispose();
      throw err;
    }
    const sequences = Array.from({ length: this.cfg.parallel }, () => context.getSequence());
    const loaded: Loaded = { model, context, sequences: new Pool(sequences), running: new Map() };
    entry.loaded = loaded;
    entry.lastLoadMs = performance.now() - started;
    this.cfg.log.info({ model: entry.info.name, loadMs: Math.round(entry.lastLoadMs * 10) / 10 }, 'model loaded');
    return loaded;
  }

  async unload(model: string): Promise<void> {
    const entry = this.entry(model);
    await entry.loading?.catch(() => undefined);
    const loaded = entry.loaded;
    if (!loaded) return;
    entry.loaded = undefined;
    loaded.sequences.close(new OrionError('backend_error', `model ${entry.info.name} was unloaded`));
    for (const controller of loaded.running.keys()) controller.abort(new OrionError('backend_error', `model ${entry.info.name} was unloaded`));
    await Promise.allSettled(loaded.running.values());
    await loaded.context.dispose();
    await loaded.model.dispose();
    this.cfg.log.info({ model: entry.info.name }, 'model unloaded');
  }

  async generate(input: GenerateInput): Promise<GenerateResult> {
    const entry = this.entry(input.model);
    // The scheduler loads first so the load is timed apart; a direct caller gets it done here.
    const loaded = await this.ensureLoaded(entry, input.signal);
    const controller = new AbortController();
    const signal = AbortSignal.any([input.signal, controller.signal]);
    const run = this.run(loaded, input, signal);
    loaded.running.set(controller, run);
    try {
      return await run;
    } finally {
      loaded.running.delete(controller);
    }
  }

  private async run(loaded: Loaded, input: GenerateInput, signal: AbortSignal): Promise<GenerateResult> {
    const plan = samplingPlan(input.options);
    const grammar = await this.grammarFor(input.format, loaded.model);
    const sequence = await loaded.sequences.acquire(signal);
    try {
      await sequence.clearHistory();
      return await this.evaluate(loaded, sequence, input, plan, grammar, signal);
    } finally {
      loaded.sequences.release(sequence);
    }
  }

  private async evaluate(
    loaded: Loaded,
    sequence: LlamaContextSequence,
    input: GenerateInput,
    plan: SamplingPlan,
    grammar: LlamaGrammarEvaluationState | undefined,
    signal: AbortSignal,
  ): Promise<GenerateResult> {
    const { model } = loaded;
    const contextSize = loaded.context.contextSize;
    const prompt = promptTokens(model, input, contextSize);
    const maxNew = Math.min(plan.numPredict < 0 ? Infinity : plan.numPredict, contextSize - prompt.length);
    const started = process.hrtime.bigint();
    signal.throwIfAborted();
    if (maxNew <= 0) {
      await sequence.evaluateWithoutGeneratingNewTokens(prompt);
      const ns = Number(process.hrtime.bigint() - started);
      return { doneReason: 'length', promptEvalCount: prompt.length, promptEvalDurationNs: ns, evalCount: 0, evalDurationNs: 0 };
    }

    const decoder = new IncrementalDetokenizer<Token>((tokens, before) => model.detokenize(tokens, false, before));
    const stops = new StopFilter([...plan.stop, END_OF_TURN_STOP]);
    const tokens = sequence.evaluate(prompt, samplerOptions(plan, sequence, grammar, contextSize));

    let firstToken: bigint | undefined;
    let evalCount = 0;
    let doneReason: GenerateResult['doneReason'] = 'stop';
    let stopped = false;
    for await (const token of tokens) {
      firstToken ??= process.hrtime.bigint();
      if (signal.aborted) break;
      evalCount++;
      const piece = stops.push(decoder.push(token));
      if (piece.text) input.onToken(piece.text);
      if (piece.stopped) {
        stopped = true;
        break;
      }
      if (evalCount >= maxNew) {
        doneReason = 'length';
        break;
      }
    }
    if (signal.aborted) throw abortReason(signal);
    if (!stopped) {
      const rest = stops.push(decoder.flush());
      const tail = rest.text + (rest.stopped ? '' : stops.flush());
      if (tail) input.onToken(tail);
    }
    const ended = process.hrtime.bigint();
    const promptEnd = firstToken ?? ended;
    return {
      doneReason,
      promptEvalCount: prompt.length,
      promptEvalDurationNs: Number(promptEnd - started),
      evalCount,
      evalDurationNs: Number(ended - promptEnd),
    };
  }

  /** A grammar that forces the output to be JSON (`format: "json"`) or to match a JSON Schema. */
  private async grammarFor(format: unknown, model: LlamaModel): Promise<LlamaGrammarEvaluationState | undefined> {
    if (format === undefined || format === null || format === '') return undefined;
    const { llama, mod } = this.rt;
    const build = (): Promise<LlamaGrammar> => {
      if (format === 'json') return llama.getGrammarFor('json');
      if (typeof format === 'object' && !Array.isArray(format)) {
        // Untyped JSON from the request; node-llama-cpp throws on schema features it lacks.
        return llama.createGrammarForJsonSchema(format as Parameters<typeof llama.createGrammarForJsonSchema>[0]);
      }
      return Promise.reject(new Error('format must be "json" or a JSON Schema object'));
    };
    try {
      return new mod.LlamaGrammarEvaluationState({ model, grammar: await build() });
    } catch (err) {
      throw new OrionError('invalid_request', `unsupported format: ${(err as Error).message}`, { cause: err });
    }
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const failures: unknown[] = [];
      for (const name of this.entries.keys()) {
        await this.unload(name).catch((err: unknown) => failures.push(err));
      }
      this.removeLogSink();
      if (this.cfg.dir) await rm(this.cfg.dir, { recursive: true, force: true }).catch((err: unknown) => failures.push(err));
      for (const err of failures) this.cfg.log.warn({ err }, 'llama engine close step failed');
    })();
    return this.closing;
  }

  private entry(model: string): Entry {
    const entry = this.entries.get(normalizeModelName(model));
    if (!entry) throw new OrionError('model_not_found', `model '${model}' not found`);
    return entry;
  }
}

export { GgufError } from './gguf-validate.js';
export { llamaAvailability, type LlamaAvailability } from './runtime.js';
