/**
 * Types of the bus messages. The request, response and health documents are generated from
 * their schemas in bus/contracts (types.generated.ts, `npm run gen:types`); written here are only
 * what no schema describes: Ollama's shape of a tool call and the dead-letter entry.
 */
import type { ErrorCode } from '../lib/errors.js';
import type { InferenceResponse } from './types.generated.js';

export type { ChatMessage, InferenceRequest, InferenceResponse, NodeHealth } from './types.generated.js';

export type Routing = NonNullable<InferenceResponse['routing']>;

/** A tool call as Ollama writes it: arguments as an object, not a JSON string. */
export interface ToolCall {
  function: { name: string; arguments: Record<string, unknown>; index?: number };
  [key: string]: unknown;
}

export interface DeadLetter {
  reason: string;
  error_code?: ErrorCode;
  request_id?: string;
  entry_id?: string;
  node_id?: string;
  attempt?: number;
  /** The original document, or the raw text cut at 64 KiB when it is not JSON. */
  request?: unknown;
  created_at: string;
}
