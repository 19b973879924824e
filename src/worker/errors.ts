/**
 * What a failed Ollama call means for the request (SPEC.md section 4):
 *   404                          model_not_found  not retried
 *   429, 503                     overloaded       retried on another node
 *   400, 413, 422                invalid_request  not retried
 *   other HTTP statuses          backend_error    retried on another node
 *   no connection at all         backend_error    retried, and the attempt is given back
 *   reset, cut-off stream, ...   backend_error    retried on another node
 *   silent for --ollama-timeout  backend_error    retried on another node (raised by runGeneration)
 */
import { OrionError, type ErrorCode } from '../lib/errors.js';

export interface OllamaFailure {
  code: ErrorCode;
  message: string;
  /** Another node might serve the request. */
  retryable: boolean;
  /** Ollama could not be reached at all: the node's fault, not the request's. */
  unreachable: boolean;
  /** The HTTP status Ollama answered, when it answered. */
  status?: number;
}

/** Socket error codes meaning nothing listens at the Ollama address (or it cannot be reached). */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** ollama-js throws `ResponseError` (not exported by the package) for non-2xx answers. */
function statusOf(err: unknown): number | undefined {
  if (err instanceof Error && err.name === 'ResponseError') {
    const s = (err as { status_code?: unknown }).status_code;
    if (typeof s === 'number') return s;
  }
  return undefined;
}

/** Every `code` found along the cause chain (and inside AggregateErrors, as happy eyeballs throws). */
function errorCodesOf(err: unknown, depth = 0): string[] {
  if (depth > 5 || typeof err !== 'object' || err === null) return [];
  const out: string[] = [];
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') out.push(code);
  const inner = (err as { errors?: unknown }).errors;
  if (Array.isArray(inner)) for (const e of inner) out.push(...errorCodesOf(e, depth + 1));
  out.push(...errorCodesOf((err as { cause?: unknown }).cause, depth + 1));
  return out;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause : undefined;
  if (cause && cause.message && !err.message.includes(cause.message)) return `${err.message}: ${cause.message}`;
  if (cause) {
    const codes = errorCodesOf(cause);
    if (codes.length) return `${err.message}: ${codes[0]}`;
  }
  return err.message;
}

function failure(code: ErrorCode, message: string, unreachable = false, status?: number): OllamaFailure {
  const out: OllamaFailure = { code, message, retryable: code === 'backend_error' || code === 'overloaded', unreachable };
  if (status !== undefined) out.status = status;
  return out;
}

/** Map an HTTP status from Ollama to an error code. */
export function codeForStatus(status: number): ErrorCode {
  if (status === 404) return 'model_not_found';
  if (status === 429 || status === 503) return 'overloaded';
  if (status === 400 || status === 413 || status === 422) return 'invalid_request';
  return 'backend_error';
}

/** Classify anything an Ollama call threw (aborts are told apart by the caller, who knows why it aborted). */
export function mapOllamaError(err: unknown): OllamaFailure {
  if (err instanceof OrionError) return failure(err.code, err.message);
  const status = statusOf(err);
  if (status !== undefined) {
    const text = (err as Error).message || `HTTP ${status}`;
    return failure(codeForStatus(status), `ollama answered ${status}: ${text}`, false, status);
  }
  const codes = errorCodesOf(err);
  if (codes.some((c) => UNREACHABLE_CODES.has(c))) {
    return failure('backend_error', `ollama unreachable: ${describe(err)}`, true);
  }
  return failure('backend_error', `ollama failed: ${describe(err)}`);
}
