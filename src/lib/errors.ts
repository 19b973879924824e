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
