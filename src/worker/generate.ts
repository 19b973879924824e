/**
 * One Ollama call for one request, always streamed so it can be cut off: the request's
 * deadline, a cancelled job or a closing worker aborts the HTTP request itself (a custom
 * `fetch` carries the signal, so even the wait for the first byte, i.e. a model load, is
 * abortable), and Ollama sees the connection close and stops generating. So does an Ollama
 * that goes silent for longer than the worker's `--ollama-timeout`.
 */
import { Ollama, type ChatRequest, type EmbedRequest, type GenerateRequest, type Message, type Options, type Tool } from 'ollama';
import type { InferenceRequest, ToolCall } from '../contracts/types.js';
import { OrionError } from '../lib/errors.js';
import { setLongTimeout, type LongTimer } from '../lib/time.js';
import { httpFetch } from './http-fetch.js';

export type OllamaCall =
  | { endpoint: 'generate'; body: GenerateRequest & { stream: true } }
  | { endpoint: 'chat'; body: ChatRequest & { stream: true } }
  | { endpoint: 'embed'; body: EmbedRequest };

/**
 * The Ollama request for an ORION request: only the fields ORION defines, copied as they are
 * (options, format and keep_alive unchanged). Nothing else reaches ollama-js: in particular no
 * `images`, which it would read from disk when they look like paths.
 */
export function ollamaCallFor(req: InferenceRequest): OllamaCall {
  const shared: { options?: Partial<Options>; format?: string | object; keep_alive?: string | number } = {};
  if (req.options !== undefined) shared.options = req.options as Partial<Options>;
  if (req.format !== undefined) shared.format = req.format;
  if (req.keep_alive !== undefined) shared.keep_alive = req.keep_alive;
  if (req.input !== undefined) {
    const body: EmbedRequest = { model: req.model, input: req.input };
    if (shared.options !== undefined) body.options = shared.options;
    if (shared.keep_alive !== undefined) body.keep_alive = shared.keep_alive;
    return { endpoint: 'embed', body };
  }
  if (req.messages !== undefined) {
    const messages: Message[] = req.messages.map((m) => {
      const out: Message = { role: m.role, content: m.content };
      // Passed to Ollama unchanged, like `tools` (the contract leaves their shape open).
      if (m.tool_calls !== undefined) out.tool_calls = m.tool_calls as unknown as Message['tool_calls'];
      if (m.tool_name !== undefined) out.tool_name = m.tool_name;
      return out;
    });
    // Ollama's chat API has no `system` field: a system prompt is a leading system message.
    if (req.system !== undefined) messages.unshift({ role: 'system', content: req.system });
    const body: ChatRequest & { stream: true } = { model: req.model, messages, ...shared, stream: true };
    if (req.tools !== undefined) body.tools = req.tools as unknown as Tool[];
    return { endpoint: 'chat', body };
  }
  const body: GenerateRequest & { stream: true } = { model: req.model, prompt: req.prompt ?? '', ...shared, stream: true };
  if (req.system !== undefined) body.system = req.system;
  return { endpoint: 'generate', body };
}

export interface Generation {
  /** The whole text. */
  text: string;
  /** Tool calls the model made (chat). */
  toolCalls?: ToolCall[];
  /** Embedding requests: one vector per input. */
  embeddings?: number[][];
  doneReason?: string;
  totalNs?: number;
  loadNs?: number;
  promptEvalNs?: number;
  evalNs?: number;
  promptEvalCount?: number;
  evalCount?: number;
}

/** A `fetch` (the worker's, over node:http) that also gives up when `signal` aborts. */
function fetchWithSignal(signal: AbortSignal): typeof fetch {
  return (input, init) => httpFetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, signal]) : signal });
}

interface Chunk {
  done?: boolean;
  response?: string;
  message?: { content?: string; tool_calls?: ToolCall[] };
  done_reason?: string;
  total_duration?: number;
  load_duration?: number;
  prompt_eval_duration?: number;
  prompt_eval_count?: number;
  eval_duration?: number;
  eval_count?: number;
}

/**
 * Run the call to its end. `onDelta` sees each piece of text as it comes. Throws what
 * ollama-js throws (ResponseError with status_code, fetch failures, an AbortError when
 * `signal` fires, "Did not receive done" when the stream ends early), and a `backend_error`
 * OrionError when Ollama sends nothing for `idleMs`: no first byte (a model load counts) or no
 * next chunk, i.e. a hung Ollama, whose call is then aborted so another node can serve it.
 */
export async function runGeneration(
  host: string,
  call: OllamaCall,
  signal: AbortSignal,
  onDelta?: (delta: string) => void,
  idleMs?: number,
): Promise<Generation> {
  signal.throwIfAborted();
  const stalled = new AbortController();
  let idle: LongTimer | undefined;
  const progress = (): void => {
    if (idleMs === undefined) return;
    idle?.clear();
    // --ollama-timeout may be set past what setTimeout honours (it would fire at once).
    idle = setLongTimeout(() => stalled.abort(), idleMs);
  };
  const aborted = AbortSignal.any([signal, stalled.signal]);
  try {
    progress();
    return await readStream(host, call, aborted, progress, onDelta);
  } catch (err) {
    if (stalled.signal.aborted && !signal.aborted) {
      throw new OrionError('backend_error', `no answer from ollama for ${idleMs} ms (--ollama-timeout); call aborted`, { cause: err });
    }
    throw err;
  } finally {
    idle?.clear();
  }
}

/** The call itself; `onChunk` hears of every chunk, text or not. */
async function readStream(host: string, call: OllamaCall, signal: AbortSignal, onChunk: () => void, onDelta?: (delta: string) => void): Promise<Generation> {
  const ollama = new Ollama({ host, fetch: fetchWithSignal(signal) });
  if (call.endpoint === 'embed') return embed(ollama, call.body);
  const stream = call.endpoint === 'chat' ? await ollama.chat(call.body) : await ollama.generate(call.body);
  const stop = (): void => stream.abort();
  signal.addEventListener('abort', stop, { once: true });
  try {
    let text = '';
    const toolCalls: ToolCall[] = [];
    for await (const part of stream as AsyncIterable<Chunk>) {
      onChunk();
      const delta = call.endpoint === 'chat' ? (part.message?.content ?? '') : (part.response ?? '');
      if (delta) {
        text += delta;
        onDelta?.(delta);
      }
      if (part.message?.tool_calls?.length) toolCalls.push(...part.message.tool_calls);
      if (part.done) {
        const out: Generation = { text };
        if (toolCalls.length > 0) out.toolCalls = toolCalls;
        if (part.done_reason !== undefined) out.doneReason = part.done_reason;
        if (part.total_duration !== undefined) out.totalNs = part.total_duration;
        if (part.load_duration !== undefined) out.loadNs = part.load_duration;
        if (part.prompt_eval_duration !== undefined) out.promptEvalNs = part.prompt_eval_duration;
        if (part.eval_duration !== undefined) out.evalNs = part.eval_duration;
        if (part.prompt_eval_count !== undefined) out.promptEvalCount = part.prompt_eval_count;
        if (part.eval_count !== undefined) out.evalCount = part.eval_count;
        return out;
      }
    }
    throw new Error('Did not receive done or success response in stream.');
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

/** An embedding call: one answer, no stream (the signal in the fetch still aborts it). */
async function embed(ollama: Ollama, body: EmbedRequest): Promise<Generation> {
  const r = await ollama.embed(body);
  const out: Generation = { text: '', embeddings: r.embeddings };
  if (typeof r.total_duration === 'number') out.totalNs = r.total_duration;
  if (typeof r.load_duration === 'number') out.loadNs = r.load_duration;
  if (typeof r.prompt_eval_count === 'number') out.promptEvalCount = r.prompt_eval_count;
  return out;
}
