/**
 * What both APIs do with a request body before it goes on the bus: read it as JSON objects,
 * and turn a problem with it into a 400 in the API's own error shape.
 */
import type { Exchange } from './exchange.js';

/** A request body the API refuses (400), with the parameter it concerns (OpenAI names it). */
export class ApiInputError extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Run a handler; an ApiInputError it throws is answered by `refuse` (the API's 400), or ends the
 * response when output has started already. Any other error goes on to the server's handler.
 */
export async function guarded(x: Exchange, refuse: (err: ApiInputError) => void, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    if (!(err instanceof ApiInputError)) throw err;
    if (x.headersSent) return x.end();
    refuse(err);
  }
}
