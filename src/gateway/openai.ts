/**
 * OpenAI-compatible endpoints: `POST /v1/chat/completions`, `POST /v1/completions`,
 * `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{id}`. Streams are server-sent
 * events ending `data: [DONE]`; errors are OpenAI's error object with its status codes.
 */
import type { InferenceResponse, ToolCall } from '../contracts/types.js';
import type { ErrorCode } from '../lib/errors.js';
import type { Exchange } from './exchange.js';
import { ApiInputError, guarded as guardedBy, isObj } from './api-input.js';
import {
  embeddingBase64,
  finishReason,
  formatFromOpenAI,
  messagesFromOpenAI,
  optionsFromOpenAI,
  toolCallsToOpenAI,
  toolsFromOpenAI,
} from './openai-map.js';
import { headersFor, httpStatusOf, relay, type RelayDeps, type Writer } from './relay.js';
import type { RequestBody } from './bus-client.js';

const TYPE_OF: Partial<Record<ErrorCode | 'auth', string>> = {
  invalid_request: 'invalid_request_error',
  model_not_found: 'invalid_request_error',
  auth: 'invalid_request_error',
};

/** OpenAI's error object: `{error: {message, type, param, code}}`. */
export function openaiError(x: Exchange, status: number, code: ErrorCode | 'invalid_api_key' | 'not_found', message: string, param: string | null = null, headers: Record<string, string> = {}): void {
  const type = code === 'invalid_api_key' ? 'invalid_request_error' : (TYPE_OF[code as ErrorCode] ?? (status >= 500 ? 'server_error' : 'invalid_request_error'));
  x.sendJson(status, { error: { message, type, param, code } }, headers);
}

const created = (): number => Math.floor(Date.now() / 1000);

function modelOf(body: Record<string, unknown>): string {
  const m = body['model'];
  if (typeof m !== 'string' || m.trim() === '') throw new ApiInputError('you must provide a model parameter', 'model');
  return m.trim();
}

function usageOf(doc: InferenceResponse): Record<string, number> {
  const prompt = doc.prompt_eval_count ?? 0;
  const completion = doc.eval_count ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** Run `fn`; an ApiInputError becomes a 400 in OpenAI's shape. */
function guarded(x: Exchange, fn: () => Promise<void>): Promise<void> {
  return guardedBy(x, (err) => openaiError(x, 400, 'invalid_request', err.message, err.param), fn);
}

export function chatCompletions(x: Exchange, deps: RelayDeps): Promise<void> {
  return guarded(x, async () => {
    const body = await x.json();
    if (typeof body['n'] === 'number' && body['n'] !== 1) throw new ApiInputError('only n=1 is supported', 'n');
    const model = modelOf(body);
    const req: RequestBody = { model, messages: messagesFromOpenAI(body['messages']) };
    const options = optionsFromOpenAI(body);
    if (options) req.options = options;
    const format = formatFromOpenAI(body['response_format']);
    if (format !== undefined) req.format = format;
    const tools = toolsFromOpenAI(body['tools']);
    if (tools) req.tools = tools;
    const stream = body['stream'] === true;
    const usage = isObj(body['stream_options']) && body['stream_options']['include_usage'] === true;
    await relay(x, deps, 'openai', req, stream, chatWriter(x, model, stream, usage));
  });
}

function chatWriter(x: Exchange, model: string, stream: boolean, includeUsage: boolean): Writer {
  let id = 'chatcmpl-gateway';
  const chunk = (delta: Record<string, unknown>, finish: string | null): Record<string, unknown> => ({
    id,
    object: 'chat.completion.chunk',
    created: created(),
    model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  return {
    fail: (status, code, message, headers) => openaiError(x, status, code, message, code === 'model_not_found' ? 'model' : null, headers),
    start: () => {
      x.startStream('sse');
      x.event(chunk({ role: 'assistant', content: '' }, null));
    },
    partial: (doc) => {
      id = `chatcmpl-${doc.request_id}`;
      if (doc.message?.content) x.event(chunk({ content: doc.message.content }, null));
    },
    final: (doc) => {
      id = `chatcmpl-${doc.request_id}`;
      // The worker writes Ollama's tool calls as Ollama gave them (the contract leaves their shape open).
      const calls = toolCallsToOpenAI(doc.message?.tool_calls as ToolCall[] | undefined, doc.request_id);
      const finish = finishReason(doc.done_reason, calls !== undefined);
      if (!stream) {
        const message: Record<string, unknown> = { role: 'assistant', content: calls && !doc.message?.content ? null : (doc.message?.content ?? '') };
        if (calls) message['tool_calls'] = calls;
        return x.sendJson(200, { id, object: 'chat.completion', created: created(), model, choices: [{ index: 0, message, logprobs: null, finish_reason: finish }], usage: usageOf(doc) });
      }
      if (calls) x.event(chunk({ tool_calls: calls.map((c, index) => ({ index, ...c })) }, null));
      x.event(chunk({}, finish));
      if (includeUsage) x.event({ id, object: 'chat.completion.chunk', created: created(), model, choices: [], usage: usageOf(doc) });
      x.event('[DONE]');
      x.end();
    },
    streamError: (code, message) => {
      x.event({ error: { message, type: httpStatusOf(code) >= 500 ? 'server_error' : 'invalid_request_error', param: null, code } });
      x.event('[DONE]');
      x.end();
    },
  };
}

export function completions(x: Exchange, deps: RelayDeps): Promise<void> {
  return guarded(x, async () => {
    const body = await x.json();
    const model = modelOf(body);
    const raw = body['prompt'];
    const prompt = typeof raw === 'string' ? raw : Array.isArray(raw) && raw.length === 1 && typeof raw[0] === 'string' ? raw[0] : undefined;
    if (prompt === undefined) throw new ApiInputError('prompt must be a string (or an array of one string)', 'prompt');
    const req: RequestBody = { model, prompt };
    const options = optionsFromOpenAI(body);
    if (options) req.options = options;
    const stream = body['stream'] === true;
    let id = 'cmpl-gateway';
    const choice = (text: string, finish: string | null): Record<string, unknown> => ({ text, index: 0, logprobs: null, finish_reason: finish });
    const out = (choices: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({ id, object: 'text_completion', created: created(), model, choices, ...extra });
    await relay(x, deps, 'openai', req, stream, {
      fail: (status, code, message, headers) => openaiError(x, status, code, message, code === 'model_not_found' ? 'model' : null, headers),
      start: () => x.startStream('sse'),
      partial: (doc) => {
        id = `cmpl-${doc.request_id}`;
        if (doc.response) x.event(out([choice(doc.response, null)]));
      },
      final: (doc) => {
        id = `cmpl-${doc.request_id}`;
        const finish = finishReason(doc.done_reason, false);
        if (!stream) return x.sendJson(200, out([choice(doc.response ?? '', finish)], { usage: usageOf(doc) }));
        x.event(out([choice('', finish)]));
        x.event('[DONE]');
        x.end();
      },
      streamError: (code, message) => {
        x.event({ error: { message, type: 'server_error', param: null, code } });
        x.event('[DONE]');
        x.end();
      },
    });
  });
}

export function embeddings(x: Exchange, deps: RelayDeps): Promise<void> {
  return guarded(x, async () => {
    const body = await x.json();
    const model = modelOf(body);
    const raw = body['input'];
    const list = typeof raw === 'string' ? [raw] : Array.isArray(raw) && raw.length > 0 && raw.every((s) => typeof s === 'string') ? (raw as string[]) : undefined;
    if (list === undefined) throw new ApiInputError('input must be a string or a non-empty array of strings (token arrays are not supported)', 'input');
    const encoding = body['encoding_format'] ?? 'float';
    if (encoding !== 'float' && encoding !== 'base64') throw new ApiInputError("encoding_format must be 'float' or 'base64'", 'encoding_format');
    const req: RequestBody = { model, input: typeof raw === 'string' ? raw : list };
    await relay(x, deps, 'openai', req, false, {
      fail: (status, code, message, headers) => openaiError(x, status, code, message, code === 'model_not_found' ? 'model' : null, headers),
      start: () => undefined,
      partial: () => undefined,
      final: (doc) => {
        const data = (doc.embeddings ?? []).map((v, index) => ({ object: 'embedding', index, embedding: encoding === 'base64' ? embeddingBase64(v) : v }));
        const tokens = doc.prompt_eval_count ?? 0;
        x.sendJson(200, { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } });
      },
      streamError: () => x.end(),
    });
  });
}

function modelObject(name: string, seenMs: number): Record<string, unknown> {
  return { id: name, object: 'model', created: Math.floor(seenMs / 1000), owned_by: 'orion' };
}

export async function listModels(x: Exchange, deps: RelayDeps): Promise<void> {
  const models = await deps.catalog.models(true);
  x.sendJson(200, { object: 'list', data: models.map((m) => modelObject(m.name, m.seenMs)) });
}

export async function getModel(x: Exchange, deps: RelayDeps, id: string): Promise<void> {
  const m = await deps.catalog.model(id, true);
  if (!m) return openaiError(x, 404, 'model_not_found', `The model '${id}' does not exist`, 'model');
  x.sendJson(200, modelObject(m.name, m.seenMs));
}

export { headersFor };
