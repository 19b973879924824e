/** One error base for the project, its `code` one of SPEC.md's error codes. */

export const ERROR_CODES = [
  'invalid_request',
  'model_not_found',
  'no_healthy_node',
  'timeout',
  'backend_error',
  'overloaded',
  'internal',
  /** The sender cancelled the request (SPEC.md section 9): not retried, not dead-lettered. */
  'cancelled',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class OrionError extends Error {
  override readonly name = 'OrionError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  /** Whether another node might serve the request where this one failed. */
  get retryable(): boolean {
    return this.code === 'backend_error' || this.code === 'overloaded';
  }
}

export function isOrionError(err: unknown): err is OrionError {
  return err instanceof OrionError;
}

/** Any thrown value as an OrionError (unknown ones become `internal`). */
export function toOrionError(err: unknown): OrionError {
  if (err instanceof OrionError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new OrionError('internal', message, { cause: err });
}

/** Thrown by config loaders: every problem at once. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: string[];

  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
  }
}
