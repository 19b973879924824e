/**
 * What the Ollama simulator needs from whatever produces text. The profile engine computes
 * timings from published Raspberry Pi figures and writes deterministic text; the llama engine
 * runs real llama.cpp inference on a tiny generated model. The HTTP server, the scheduler
 * (loading, keep-alive, parallelism, queueing, eviction) and the fault knobs sit above this
 * interface and are the same for both.
 */

export interface EngineModelInfo {
  /** Ollama-style name with tag, e.g. `gemma3:1b`. */
  name: string;
  /** Bytes on disk (what `/api/tags` reports as size). */
  sizeBytes: number;
  /** Bytes of RAM the loaded model occupies (what `/api/ps` reports as size). */
  memoryBytes: number;
  /** Hex sha256 digest shown by `/api/tags` and `/api/ps`. */
  digest: string;
  family: string;
  parameterSize: string;
  quantizationLevel: string;
  contextLength: number;
}

export interface EngineMessage {
  role: string;
  content: string;
}

export interface GenerateInput {
  model: string;
  /** For `/api/generate`. */
  prompt?: string;
  system?: string;
  /** For `/api/chat`. */
  messages?: EngineMessage[];
  /** Ollama options: num_predict, seed, temperature, stop, num_ctx, ... */
  options: Record<string, unknown>;
  /** The request's `format` (`"json"` or a JSON Schema object) when it asked for structured output. */
  format?: unknown;
  /** Called with each piece of text as it is produced. */
  onToken(text: string): void;
  signal: AbortSignal;
}

export interface GenerateResult {
  doneReason: 'stop' | 'length';
  promptEvalCount: number;
  /** Wall-clock nanoseconds spent on the prompt. */
  promptEvalDurationNs: number;
  evalCount: number;
  /** Wall-clock nanoseconds spent generating. */
  evalDurationNs: number;
}

export interface GenerationEngine {
  readonly kind: 'profile' | 'llama';
  /** Models this engine has installed. */
  models(): EngineModelInfo[];
  /** Bring a model into memory; resolves when it can generate. */
  load(model: string, signal?: AbortSignal): Promise<void>;
  unload(model: string): Promise<void>;
  generate(input: GenerateInput): Promise<GenerateResult>;
  close(): Promise<void>;
}
