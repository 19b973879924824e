/**
 * Ollama-compatible endpoints: `POST /api/chat`, `/api/generate`, `/api/embed` (and the older
 * `/api/embeddings`), `GET /api/tags` (every model on the nodes), `/api/ps` (every loaded model,
 * with its node), `POST /api/show`, `GET /api/version`, and `HEAD /` / `GET /`. Streams are
 * NDJSON, on by default as in Ollama; errors are `{"error": "..."}` with Ollama's status codes.
 */
import type { ChatMessage, InferenceResponse } from '../contracts/types.js';
import { VERSION } from '../lib/version.js';
import { rfc3339 } from '../lib/time.js';
import type { RequestBody } from './bus-client.js';
import type { Exchange } from './exchange.js';
import { ApiInputError, guarded as guardedBy, isObj } from './api-input.js';
import { relay, type RelayDeps, type Writer } from './relay.js';

export function ollamaError(x: Exchange, status: number, message: string, headers: Record<string, string> = {}): void {
  x.sendJson(status, { error: message }, headers);
}

const msToNs = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : Math.round(ms * 1e6));

/** The final answer's counters in Ollama's form (durations in ns). */
function finalFields(doc: InferenceResponse): Record<string, unknown> {
  const f: Record<string, unknown> = {
    done_reason: doc.done_reason ?? 'stop',
    total_duration: msToNs(doc.total_duration_ms),
    load_duration: msToNs(doc.load_duration_ms),
    prompt_eval_count: doc.prompt_eval_count,
    prompt_eval_duration: msToNs(doc.prompt_eval_duration_ms),
    eval_count: doc.eval_count,
    eval_duration: msToNs(doc.eval_duration_ms),
  };
  for (const k of Object.keys(f)) if (f[k] === undefined) delete f[k];
  return f;
}

/** Run `fn`; an ApiInputError becomes a 400 in Ollama's shape. */
function guarded(x: Exchange, fn: () => Promise<void>): Promise<void> {
  return guardedBy(x, (err) => ollamaError(x, 400, err.message), fn);
}

/** The fields chat and generate share: model, options, format, keep_alive. */
function common(body: Record<string, unknown>): RequestBody {
  const model = typeof body['model'] === 'string' ? body['model'].trim() : '';
  if (!model) throw new ApiInputError('model is required');
  const req: RequestBody = { model };
  if (isObj(body['options'])) req.options = body['options'];
  const f = body['format'];
  if (f === 'json' || isObj(f)) req.format = f;
  else if (f !== undefined && f !== '' && f !== null) throw new ApiInputError(`invalid format: ${JSON.stringify(f)}`);
  const ka = body['keep_alive'];
  if (typeof ka === 'string' || typeof ka === 'number') req.keep_alive = ka;
  return req;
}

function ndjsonWriter(x: Exchange, stream: boolean, shape: (doc: InferenceResponse, final: boolean) => Record<string, unknown>): Writer {
  return {
    fail: (status, _code, message, headers) => ollamaError(x, status, message, headers),
    start: () => x.startStream('ndjson'),
    partial: (doc) => x.line(shape(doc, false)),
    final: (doc) => {
      if (!stream) return x.sendJson(200, shape(doc, true));
      x.line(shape(doc, true));
      x.end();
    },
    streamError: (_code, message) => {
      x.line({ error: message });
      x.end();
    },
  };
}

export function chat(x: Exchange, deps: RelayDeps): Promise<void> {
  return guarded(x, async () => {
    const body = await x.json();
    const req = common(body);
    const raw = body['messages'] ?? [];
    if (!Array.isArray(raw)) throw new ApiInputError('messages must be an array');
    req.messages = raw.map((m, i): ChatMessage => {
      if (!isObj(m) || !['system', 'user', 'assistant', 'tool'].includes(String(m['role']))) throw new ApiInputError(`messages[${i}]: role must be system, user, assistant or tool`);
      if (Array.isArray(m['images']) && m['images'].length > 0) throw new ApiInputError('images are not supported through the gateway');
      const out: ChatMessage = { role: m['role'] as ChatMessage['role'], content: typeof m['content'] === 'string' ? m['content'] : '' };
      if (Array.isArray(m['tool_calls'])) out.tool_calls = m['tool_calls'] as ChatMessage['tool_calls'];
      if (typeof m['tool_name'] === 'string') out.tool_name = m['tool_name'];
      return out;
    });
    if (Array.isArray(body['tools']) && body['tools'].length > 0) req.tools = body['tools'].filter(isObj);
    const stream = body['stream'] !== false;
    const model = req.model;
    await relay(x, deps, 'ollama', req, stream, ndjsonWriter(x, stream, (doc, final) => {
      const message: Record<string, unknown> = { role: 'assistant', content: final && stream ? '' : (doc.message?.content ?? '') };
      if (final && doc.message?.tool_calls) message['tool_calls'] = doc.message.tool_calls;
      return { model, created_at: doc.created_at ?? rfc3339(), message, done: final, ...(final ? finalFields(doc) : {}) };
    }));
  });
}

export function generate(x: Exchange, deps: RelayDeps): Promise<void> {
  return guarded(x, async () => {
    const body = await x.json();
    const req = common(body);
    req.prompt = typeof body['prompt'] === 'string' ? body['prompt'] : '';
    if (typeof body['system'] === 'string') req.system = body['system'];
    if (Array.isArray(body['images']) && body['images'].length > 0) throw new ApiInputError('images are not supported through the gateway');
    const stream = body['stream'] !== false;
    const model = req.model;
    await relay(x, deps, 'ollama', req, stream, ndjsonWriter(x, stream, (doc, final) => ({
      model,
      created_at: doc.created_at ?? rfc3339(),
      response: final && stream ? '' : (doc.response ?? ''),
      done: final,
      ...(final ? finalFields(doc) : {}),
    })));
  });
}

/** `/api/embed` (input: string or strings -> embeddings) and the older `/api/embeddings` (prompt -> embedding). */
export function embed(x: Exchange, deps: RelayDeps, legacy = false): Promise<void> {
  return guarded(x, async () => {
    const body = await x.json();
    const req = common(body);
    const raw = legacy ? body['prompt'] : body['input'];
    if (typeof raw === 'string') req.input = raw;
    else if (Array.isArray(raw) && raw.length > 0 && raw.every((s) => typeof s === 'string')) req.input = raw as string[];
    else throw new ApiInputError(legacy ? 'prompt must be a string' : 'invalid input type');
    const model = req.model;
    await relay(x, deps, 'ollama', req, false, ndjsonWriter(x, false, (doc) => {
      const vectors = doc.embeddings ?? [];
      if (legacy) return { embedding: vectors[0] ?? [] };
      const out: Record<string, unknown> = { model, embeddings: vectors };
      if (doc.total_duration_ms !== undefined) out['total_duration'] = msToNs(doc.total_duration_ms);
      if (doc.load_duration_ms !== undefined) out['load_duration'] = msToNs(doc.load_duration_ms);
      if (doc.prompt_eval_count !== undefined) out['prompt_eval_count'] = doc.prompt_eval_count;
      return out;
    }));
  });
}

/** What the gateway can say of a model without asking Ollama: the registry knows names only. */
function details(): Record<string, unknown> {
  return { parent_model: '', format: 'gguf', family: '', families: null, parameter_size: '', quantization_level: '' };
}

export async function tags(x: Exchange, deps: RelayDeps): Promise<void> {
  const models = await deps.catalog.models(false);
  x.sendJson(200, { models: models.map((m) => ({ name: m.name, model: m.name, modified_at: rfc3339(m.seenMs), size: 0, digest: '', details: details(), nodes: m.nodes })) });
}

export async function ps(x: Exchange, deps: RelayDeps): Promise<void> {
  const loaded = await deps.catalog.loaded();
  x.sendJson(200, {
    models: loaded.map((m) => ({ name: m.name, model: m.name, size: 0, digest: '', details: details(), expires_at: rfc3339(m.seenMs + 5 * 60_000), size_vram: 0, node: m.node })),
  });
}

export function show(x: Exchange, deps: RelayDeps): Promise<void> {
  return guarded(x, async () => {
    const body = await x.json();
    const name = typeof body['model'] === 'string' ? body['model'] : typeof body['name'] === 'string' ? body['name'] : '';
    if (!name.trim()) throw new ApiInputError('model is required');
    const m = await deps.catalog.model(name.trim(), false);
    if (!m) return ollamaError(x, 404, `model '${name}' not found`);
    x.sendJson(200, {
      license: '',
      modelfile: `# served by ORION from ${m.nodes.join(', ')}\nFROM ${m.name}\n`,
      parameters: '',
      template: '',
      details: details(),
      model_info: {},
      capabilities: ['completion'],
      modified_at: rfc3339(m.seenMs),
      nodes: m.nodes,
      loaded_on: m.loadedOn,
    });
  });
}

export async function version(x: Exchange, deps: RelayDeps): Promise<void> {
  x.sendJson(200, { version: (await deps.catalog.ollamaVersion()) ?? VERSION });
}
