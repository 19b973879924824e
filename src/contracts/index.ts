/**
 * Validators for the contracts in bus/contracts (the same files `npx ajv validate` reads),
 * compiled ahead of time into `validators.generated.ts` (see `generate.ts`), and the parsing of
 * a request stream entry into a request or a reasoned refusal.
 */
import type { ErrorObject, ValidateFunction } from 'ajv';
import { isValidRequestId, type Names } from '../lib/names.js';
import type { ErrorCode } from '../lib/errors.js';
import type { InferenceRequest, InferenceResponse, NodeHealth } from './types.js';
import * as generated from './validators.generated.js';

export type * from './types.js';

/** A request whose `data` text is over this many bytes (UTF-8) is refused (SPEC.md section 3). */
export const MAX_REQUEST_BYTES = 1024 * 1024;
/** A request nested deeper than this many levels (the top object is level 1) is refused. */
export const MAX_REQUEST_DEPTH = 64;
/** How much of a non-JSON entry a dead-letter entry keeps. */
export const DEADLETTER_RAW_LIMIT = 64 * 1024;

const validators = generated as unknown as {
  request: ValidateFunction<InferenceRequest>;
  response: ValidateFunction<InferenceResponse>;
  health: ValidateFunction<NodeHealth>;
};

/** What the request schema's top-level `oneOf` (one of prompt, messages, input) means, said once. */
export const PROMPT_OR_MESSAGES = 'give exactly one of prompt, messages or input';

/**
 * One line per schema problem, e.g. `/priority must be <= 9`. The top-level `oneOf` of the
 * request schema (prompt xor messages) is said in words once, instead of Ajv's lines for each
 * branch ("must NOT be valid" twice, or "must have required property" for both).
 */
function describeErrors(errors: ErrorObject[] | null | undefined): string {
  if (!errors?.length) return 'invalid';
  const lines: string[] = [];
  for (const e of errors) {
    if (e.keyword === 'if') continue;
    const where = e.instancePath || '(root)';
    if (e.schemaPath.startsWith('#/oneOf/') && e.instancePath === '') continue;
    if (e.schemaPath === '#/oneOf' && e.instancePath === '') lines.push(`${where}: ${PROMPT_OR_MESSAGES}`);
    else if (e.keyword === 'additionalProperties') lines.push(`${where}: unknown field '${String(e.params['additionalProperty'])}'`);
    else lines.push(`${where} ${e.message ?? 'is invalid'}`);
  }
  return lines.join('; ');
}

export type Check<T> = { ok: true; value: T } | { ok: false; message: string };

function check<T>(fn: ValidateFunction<T>, doc: unknown): Check<T> {
  return fn(doc) ? { ok: true, value: doc } : { ok: false, message: describeErrors(fn.errors) };
}

export const validateRequest = (doc: unknown): Check<InferenceRequest> => check(validators.request, doc);
export const validateResponse = (doc: unknown): Check<InferenceResponse> => check(validators.response, doc);
export const validateHealth = (doc: unknown): Check<NodeHealth> => check(validators.health, doc);

/** The size of a request as SPEC.md defines it: the UTF-8 bytes of its `data` text. */
export function requestBytes(raw: string): number {
  return Buffer.byteLength(raw, 'utf8');
}

/**
 * How deep a JSON text nests (the top object or array is level 1), counted without parsing and
 * without recursion; the count stops as soon as it passes `limit`. Brackets inside strings do
 * not count. Meant for text that parses as JSON (for other text the figure means little).
 */
export function jsonTextDepth(raw: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) max = depth;
      if (max > limit) return max;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/**
 * How deep a parsed value nests (an object or array is one level more than its deepest
 * member; other values are 0), with an explicit stack instead of recursion; stops as soon as
 * the depth passes `limit`.
 */
export function valueDepth(value: unknown, limit = Infinity): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, d + 1]);
    }
  }
  return max;
}

/**
 * The one check of a request's size and nesting, for the bridge (on the entry's text) and the
 * worker (on what the bridge measured, or on the job's request when it did not): the reason
 * to refuse, or undefined.
 */
export function requestLimitProblem(bytes: number, depth: number): string | undefined {
  if (bytes > MAX_REQUEST_BYTES) return `request is ${bytes} bytes, over the limit of ${MAX_REQUEST_BYTES}`;
  if (depth > MAX_REQUEST_DEPTH) return `request nests more than ${MAX_REQUEST_DEPTH} levels deep`;
  return undefined;
}

export type ParsedEntry =
  | { ok: true; request: InferenceRequest; raw: string; bytes: number }
  | {
      ok: false;
      code: ErrorCode;
      reason: string;
      /** The request id, when the entry has a usable one (then it can be answered). */
      requestId?: string;
      /** The document when it parsed as JSON, else the raw text cut at 64 KiB. */
      original: unknown;
      /** Where to answer, when known and allowed. */
      replyTo?: string;
    };

/**
 * Turn a stream entry's fields into a request, or say why not. Never throws.
 * `fields` is the flat [k, v, k, v] array XREADGROUP returns.
 */
export function parseRequestEntry(fields: readonly string[], n: Names): ParsedEntry {
  let raw: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'data') {
      raw = fields[i + 1];
      break;
    }
  }
  if (raw === undefined) {
    const shown: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) shown[fields[i]!] = (fields[i + 1] ?? '').slice(0, DEADLETTER_RAW_LIMIT);
    return { ok: false, code: 'invalid_request', reason: "entry has no 'data' field", original: shown };
  }
  const size = requestBytes(raw);
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (err) {
    return {
      ok: false,
      code: 'invalid_request',
      reason: `data is not valid JSON: ${(err as Error).message}`,
      original: raw.slice(0, DEADLETTER_RAW_LIMIT),
    };
  }
  const obj = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>) : undefined;
  const requestId = obj && isValidRequestId(obj['request_id']) ? obj['request_id'] : undefined;
  const rawReply = obj?.['reply_to'];
  const replyTo = typeof rawReply === 'string' && n.isReplyStream(rawReply) ? rawReply : undefined;
  // Counted on the text, before anything walks the parsed document (JSON.stringify recurses).
  const limits = requestLimitProblem(size, jsonTextDepth(raw, MAX_REQUEST_DEPTH));
  const refuse = (reason: string): ParsedEntry => {
    // Too big or too deep to keep as a document: the dead letter keeps the text, cut.
    const out: ParsedEntry = { ok: false, code: 'invalid_request', reason, original: limits !== undefined ? raw.slice(0, DEADLETTER_RAW_LIMIT) : doc };
    if (requestId !== undefined) out.requestId = requestId;
    if (replyTo !== undefined) out.replyTo = replyTo;
    return out;
  };
  if (limits !== undefined) return refuse(limits);
  if (!obj) return refuse('data must be a JSON object');
  if (requestId === undefined) return refuse('request_id is missing or is not 1-128 of [A-Za-z0-9._-]');
  const v = validateRequest(doc);
  if (!v.ok) return refuse(v.message);
  if (typeof rawReply === 'string' && replyTo === undefined) {
    return refuse(`reply_to must be ${n.responses} or start with ${n.responses}:`);
  }
  return { ok: true, request: v.value, raw, bytes: size };
}

/** Ollama's rule: a name without a tag means `:latest`. */
export function normalizeModel(model: string): string {
  const slash = model.lastIndexOf('/');
  return model.indexOf(':', slash + 1) === -1 ? `${model}:latest` : model;
}
