/** TypeScript shapes of the bus messages; bus/contracts/*.schema.json is the source of truth. */
import type { ErrorCode } from '../lib/errors.js';

/** A tool call as Ollama writes it: arguments as an object, not a JSON string. */
export interface ToolCall {
  function: { name: string; arguments: Record<string, unknown>; index?: number };
  [key: string]: unknown;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  tool_calls?: ToolCall[];
  tool_name?: string;
}

export interface InferenceRequest {
  request_id: string;
  model: string;
  prompt?: string;
  messages?: ChatMessage[];
  /** Embedding request: the text(s) to embed (SPEC.md section 9). */
  input?: string | string[];
  /** Tools offered to the model (chat), in Ollama's shape. */
  tools?: Record<string, unknown>[];
  system?: string;
  options?: Record<string, unknown>;
  format?: 'json' | Record<string, unknown>;
  stream?: boolean;
  keep_alive?: string | number;
  reply_to?: string;
  timeout_ms?: number;
  priority?: number;
  created_at?: string;
  source?: string;
  metadata?: Record<string, unknown>;
}

export type Routing = 'sticky' | 'fallback';

export interface InferenceResponse {
  request_id: string;
  model?: string;
  node_id?: string;
  done: boolean;
  response?: string;
  message?: { role: string; content: string; tool_calls?: ToolCall[] };
  /** Embedding requests: one vector per input. */
  embeddings?: number[][];
  done_reason?: string;
  total_duration_ms?: number;
  load_duration_ms?: number;
  prompt_eval_duration_ms?: number;
  eval_duration_ms?: number;
  prompt_eval_count?: number;
  eval_count?: number;
  queue_ms?: number;
  routing?: Routing;
  attempt?: number;
  metadata?: Record<string, unknown>;
  error?: { code: ErrorCode; message: string };
  created_at: string;
}

export interface NodeHealth {
  node_id: string;
  cpu_percent: number;
  ram_percent: number;
  temp_celsius: number | null;
  models: string[];
  available: boolean;
  last_seen: string;
  installed_models?: string[];
  ram_total_mb?: number;
  ram_available_mb?: number;
  concurrency?: number;
  active?: number;
  waiting?: number;
  worker_version?: string;
  ollama_version?: string | null;
  reason?: string;
  /** Random id of the worker process that wrote the document (new at every start). */
  instance_id?: string;
  /** Other worker processes seen publishing under this node id in the last minute. */
  duplicate_instances?: string[];
  /** Redis's clock minus the node's own (ms); `last_seen` is on Redis's clock. */
  clock_offset_ms?: number;
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
