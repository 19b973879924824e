/**
 * `orion send`: put one request on `{p}:requests` exactly as the Brain does, with a private
 * reply stream, and follow its answer (partials as they arrive, then the final document).
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { InferenceRequest, InferenceResponse } from '../contracts/types.js';
import type { Names } from '../lib/names.js';

export interface SendOptions {
  request: Omit<InferenceRequest, 'request_id' | 'reply_to'> & { request_id?: string };
  /** Give up waiting this long after the final answer is due. */
  waitMs: number;
  onPartial?: (doc: InferenceResponse) => void;
  /** Stop waiting (the answer is left to come on a stream nobody reads, then removed). */
  signal?: AbortSignal;
}

export interface SendResult {
  entryId: string;
  replyTo: string;
  final: InferenceResponse | undefined;
  partials: number;
  elapsedMs: number;
}

export function newRequestId(): string {
  return `cli-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** Send and wait. `redis` must be a connection this call may block on. */
export async function sendAndWait(redis: Redis, n: Names, opts: SendOptions): Promise<SendResult> {
  const requestId = opts.request.request_id ?? newRequestId();
  const replyTo = `${n.responses}:${requestId}`;
  const doc: InferenceRequest = { ...opts.request, request_id: requestId, reply_to: replyTo };
  const started = Date.now();
  const entryId = (await redis.xadd(n.requests, '*', 'data', JSON.stringify(doc))) ?? '';
  let cursor = '0';
  let partials = 0;
  const giveUp = started + opts.waitMs;
  try {
    while (Date.now() < giveUp && !opts.signal?.aborted) {
      const block = Math.max(1, Math.min(1000, giveUp - Date.now()));
      const res = (await redis.xread('COUNT', 100, 'BLOCK', block, 'STREAMS', replyTo, cursor)) as
        | [string, [string, string[]][]][]
        | null;
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          cursor = id;
          const data = fields[fields.indexOf('data') + 1];
          if (data === undefined) continue;
          const out = JSON.parse(data) as InferenceResponse;
          if (out.done) return { entryId, replyTo, final: out, partials, elapsedMs: Date.now() - started };
          partials++;
          opts.onPartial?.(out);
        }
      }
    }
    return { entryId, replyTo, final: undefined, partials, elapsedMs: Date.now() - started };
  } finally {
    await redis.del(replyTo);
  }
}
