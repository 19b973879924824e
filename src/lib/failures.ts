/**
 * A request that ends in an error (SPEC.md section 4): a final error answer on its reply
 * stream, then a dead-letter entry. Every part that gives a request up does it through
 * `failRequest`: the bridge's intake (unusable entries, requests it cannot place or that wait
 * past their deadline), its deadline sweep, hand-backs and dead nodes, and the worker.
 */
import type { Redis } from 'ioredis';
import type { DeadLetter, InferenceResponse } from '../contracts/types.js';
import { deadLetter, defineBusCommands, deliver, errorResponse, publishFinal, responseJson, type InferenceJobData } from './bus.js';
import type { ErrorCode } from './errors.js';
import type { Names } from './names.js';

export interface Failure {
  /** The id the answer is for; none: the entry cannot be answered and is only dead-lettered. */
  requestId: string | undefined;
  /** Where the answer goes (the scripts send it to `{p}:responses` when this is not a stream). */
  replyTo: string;
  code: ErrorCode;
  /** The answer's error message and the dead letter's reason. */
  message: string;
  /** Fields of the answer besides request_id, done, error and created_at. */
  answer?: Partial<InferenceResponse>;
  /** Fields of the dead letter besides reason, error_code and request_id (undefined ones left out). */
  letter?: Pick<DeadLetter, 'entry_id' | 'node_id' | 'attempt' | 'request'>;
}

export interface FailOptions {
  /**
   * 'final' (the default): the request's one final answer, through the final script: written
   * once per request id and, with `nodeId`, only while that node owns the job; dead-lettered
   * only when this call published it (of several parts giving the same request up, one
   * dead-letters it).
   * 'refusal': an entry refused before it claimed its id (invalid_request): the answer is
   * delivered without touching any request record, and the entry is dead-lettered either way.
   */
  as?: 'final' | 'refusal';
  /** With 'final': publish only while this node owns the job. */
  nodeId?: string;
  /** How each write is made, e.g. tried again while Redis refuses writes for a passing reason. */
  write?: <T>(what: string, fn: () => Promise<T>) => Promise<T>;
}

const direct = <T>(_what: string, fn: () => Promise<T>): Promise<T> => fn();

/**
 * Answer a request with an error, then dead-letter it. A `cancelled` answer is never
 * dead-lettered (its sender asked for it). Returns whether the answer was published.
 */
export async function failRequest(redis: Redis, n: Names, f: Failure, o: FailOptions = {}): Promise<boolean> {
  const write = o.write ?? direct;
  const letter = (): Promise<void> =>
    f.code === 'cancelled' ? Promise.resolve() : write('dead letter', () => deadLetter(redis, n, { reason: f.message, error_code: f.code, request_id: f.requestId, ...f.letter }));
  if (f.requestId === undefined) {
    await letter();
    return false;
  }
  const doc = errorResponse(f.requestId, f.code, f.message, f.answer);
  if (o.as === 'refusal') {
    // The answer goes where reply_to points (or to the default stream when that is no stream);
    // the dead letter is written either way, so neither waits for the other.
    defineBusCommands(redis);
    await Promise.all([write('error answer', () => deliver(redis, n, f.replyTo, responseJson(doc))), letter()]);
    return true;
  }
  const published = await write('error answer', () => publishFinal(redis, n, f.replyTo, doc, o.nodeId));
  if (published) await letter();
  return published;
}

/** The dead-letter fields of a placed job given up on `nodeId` during `attempt`. */
export function jobLetter(data: InferenceJobData, nodeId: string, attempt = data.attempt): NonNullable<Failure['letter']> {
  return { entry_id: data.entry_id || undefined, node_id: nodeId, attempt: attempt >= 1 ? attempt : undefined, request: data.request };
}
