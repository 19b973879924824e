/**
 * OpenAI's request shapes to ORION requests, pure: messages (content as text or text parts,
 * assistant tool calls with JSON-string arguments, tool answers by tool_call_id), sampling
 * options to Ollama's, response_format to Ollama's `format`. A problem is thrown as an
 * ApiInputError with the parameter it concerns.
 */
import type { ChatMessage, ToolCall } from '../contracts/types.js';
import { ApiInputError, isObj } from './api-input.js';

/** A message's content as text: a string, null (a tool-calling assistant) or text parts. */
function textOf(content: unknown, at: string): string {
  if (content === null || content === undefined) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part, i) => {
        if (isObj(part) && (part['type'] === 'text' || part['type'] === 'input_text') && typeof part['text'] === 'string') return part['text'];
        if (isObj(part) && part['type'] === 'refusal' && typeof part['refusal'] === 'string') return part['refusal'];
        throw new ApiInputError(`${at}.content[${i}]: only text content parts are supported`, `${at}.content`);
      })
      .join('');
  }
  throw new ApiInputError(`${at}.content must be a string or an array of content parts`, `${at}.content`);
}

function toolCallsOf(raw: unknown, at: string, names: Map<string, string>): ToolCall[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) throw new ApiInputError(`${at}.tool_calls must be an array`, `${at}.tool_calls`);
  return raw.map((c, i) => {
    const fn = isObj(c) && isObj(c['function']) ? c['function'] : undefined;
    if (!fn || typeof fn['name'] !== 'string') throw new ApiInputError(`${at}.tool_calls[${i}].function.name is required`, `${at}.tool_calls`);
    let args: unknown = fn['arguments'] ?? {};
    if (typeof args === 'string') {
      try {
        args = args.trim() === '' ? {} : JSON.parse(args);
      } catch {
        throw new ApiInputError(`${at}.tool_calls[${i}].function.arguments is not valid JSON`, `${at}.tool_calls`);
      }
    }
    if (isObj(c) && typeof c['id'] === 'string') names.set(c['id'], fn['name']);
    return { function: { name: fn['name'], arguments: isObj(args) ? args : { value: args } } };
  });
}

/** OpenAI chat messages as ORION's (Ollama's) messages. */
export function messagesFromOpenAI(raw: unknown): ChatMessage[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new ApiInputError('messages must be a non-empty array', 'messages');
  const toolNames = new Map<string, string>();
  return raw.map((m, i) => {
    const at = `messages[${i}]`;
    if (!isObj(m)) throw new ApiInputError(`${at} must be an object`, 'messages');
    const role = m['role'] === 'developer' ? 'system' : m['role'] === 'function' ? 'tool' : m['role'];
    if (role !== 'system' && role !== 'user' && role !== 'assistant' && role !== 'tool') {
      throw new ApiInputError(`${at}.role must be system, developer, user, assistant or tool`, `${at}.role`);
    }
    const out: ChatMessage = { role, content: textOf(m['content'], at) };
    const calls = role === 'assistant' ? toolCallsOf(m['tool_calls'], at, toolNames) : undefined;
    if (calls?.length) out.tool_calls = calls;
    if (role === 'tool') {
      const byId = typeof m['tool_call_id'] === 'string' ? toolNames.get(m['tool_call_id']) : undefined;
      const name = byId ?? (typeof m['name'] === 'string' ? m['name'] : undefined);
      if (name !== undefined) out.tool_name = name;
    }
    return out;
  });
}

/** OpenAI sampling parameters as Ollama options. */
export function optionsFromOpenAI(body: Record<string, unknown>): Record<string, unknown> | undefined {
  const o: Record<string, unknown> = {};
  const num = (k: string, to: string = k): void => {
    const v = body[k];
    if (v === undefined || v === null) return;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ApiInputError(`${k} must be a number`, k);
    o[to] = v;
  };
  num('temperature');
  num('top_p');
  num('seed');
  num('frequency_penalty');
  num('presence_penalty');
  num('max_tokens', 'num_predict');
  num('max_completion_tokens', 'num_predict');
  const stop = body['stop'];
  if (typeof stop === 'string') o['stop'] = [stop];
  else if (Array.isArray(stop) && stop.every((s) => typeof s === 'string')) o['stop'] = stop;
  else if (stop !== undefined && stop !== null) throw new ApiInputError('stop must be a string or an array of strings', 'stop');
  return Object.keys(o).length > 0 ? o : undefined;
}

/** response_format as Ollama's `format`: json_object -> "json", json_schema -> its schema. */
export function formatFromOpenAI(raw: unknown): 'json' | Record<string, unknown> | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObj(raw)) throw new ApiInputError('response_format must be an object', 'response_format');
  switch (raw['type']) {
    case 'text':
      return undefined;
    case 'json_object':
      return 'json';
    case 'json_schema': {
      const js = raw['json_schema'];
      const schema = isObj(js) ? js['schema'] : undefined;
      if (!isObj(schema)) throw new ApiInputError('response_format.json_schema.schema must be a JSON Schema object', 'response_format');
      return schema;
    }
    default:
      throw new ApiInputError("response_format.type must be 'text', 'json_object' or 'json_schema'", 'response_format');
  }
}

/** `tools` passed through (OpenAI's function tools are Ollama's shape already). */
export function toolsFromOpenAI(raw: unknown): Record<string, unknown>[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw) || !raw.every(isObj)) throw new ApiInputError('tools must be an array of objects', 'tools');
  return raw.length > 0 ? raw : undefined;
}

/** Ollama's done_reason (and tool calls) as OpenAI's finish_reason. */
export function finishReason(doneReason: string | undefined, toolCalls: boolean): string {
  if (toolCalls) return 'tool_calls';
  return doneReason === 'length' ? 'length' : 'stop';
}

/** Ollama tool calls in OpenAI's shape (arguments as a JSON string, with ids). */
export function toolCallsToOpenAI(calls: ToolCall[] | undefined, idBase: string): Record<string, unknown>[] | undefined {
  if (!calls?.length) return undefined;
  return calls.map((c, i) => ({ id: `call_${idBase}_${i}`, type: 'function', function: { name: c.function.name, arguments: JSON.stringify(c.function.arguments ?? {}) } }));
}

/** An embedding as OpenAI's base64 form: little-endian float32s. */
export function embeddingBase64(v: readonly number[]): string {
  const buf = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => buf.writeFloatLE(x, i * 4));
  return buf.toString('base64');
}
