/** The data of a node-queue job, checked: a worker never trusts what it is handed. */
import { DEFAULT_TIMEOUT_MS, type InferenceJobData } from '../lib/bus.js';
import { MAX_REQUEST_DEPTH, requestBytes, requestLimitProblem, validateRequest, valueDepth } from '../contracts/index.js';
import { isValidRequestId, requestIdOfJob, type Names } from '../lib/names.js';
import { arrivalMs } from '../lib/time.js';

export type CheckedJob =
  | { ok: true; data: InferenceJobData }
  | { ok: false; reason: string; requestId?: string; replyTo?: string; original: unknown };

/**
 * The job's data as the bridge writes it, or why not. Fields the bridge always sets but that
 * can be rebuilt (deadline, seen_at, ...) are filled in rather than refused.
 */
export function checkJobData(raw: unknown, jobId: string | undefined, n: Names): CheckedJob {
  const data = typeof raw === 'object' && raw !== null ? (raw as Partial<InferenceJobData>) : {};
  const req = data.request as unknown;
  const reqObj = typeof req === 'object' && req !== null ? (req as Record<string, unknown>) : undefined;
  const fromJob = jobId !== undefined ? requestIdOfJob(jobId) : undefined;
  const requestId = isValidRequestId(reqObj?.['request_id']) ? reqObj['request_id'] : isValidRequestId(fromJob) ? fromJob : undefined;
  const rawReply = reqObj?.['reply_to'];
  const refuse = (reason: string): CheckedJob => {
    const out: CheckedJob = { ok: false, reason, original: req ?? raw };
    if (requestId !== undefined) out.requestId = requestId;
    if (typeof rawReply === 'string' && n.isReplyStream(rawReply)) out.replyTo = rawReply;
    return out;
  };
  if (!reqObj) return refuse('job data has no request object');
  const num = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
  // The limits of SPEC.md section 3, one definition: the size is that of the entry's `data`
  // text as the bridge measured it; only a job that did not come from a bridge is measured
  // here, on its request re-serialised (the only text there is). Depth first: serialising
  // recurses.
  const depth = valueDepth(reqObj, MAX_REQUEST_DEPTH);
  const bytes = num(data.request_bytes) ? data.request_bytes : depth > MAX_REQUEST_DEPTH ? 0 : requestBytes(JSON.stringify(reqObj));
  const limits = requestLimitProblem(bytes, depth);
  if (limits !== undefined) return refuse(limits);
  const v = validateRequest(reqObj);
  if (!v.ok) return refuse(v.message);
  if (typeof rawReply === 'string' && !n.isReplyStream(rawReply)) return refuse(`reply_to must be ${n.responses} or start with ${n.responses}:`);
  const request = v.value;
  const entryId = typeof data.entry_id === 'string' && data.entry_id !== '' ? data.entry_id : undefined;
  const now = Date.now();
  const sent = entryId !== undefined ? arrivalMs(entryId, now) : now;
  const out: InferenceJobData = {
    request,
    entry_id: entryId ?? '',
    seen_at: num(data.seen_at) ? data.seen_at : sent,
    deadline: num(data.deadline) ? data.deadline : sent + (request.timeout_ms ?? DEFAULT_TIMEOUT_MS),
    attempt: num(data.attempt) && data.attempt >= 0 ? Math.floor(data.attempt) : 0,
    max_attempts: num(data.max_attempts) && data.max_attempts >= 1 ? Math.floor(data.max_attempts) : 1,
    routing: data.routing === 'sticky' || data.routing === 'fallback' ? data.routing : 'fallback',
    tried: Array.isArray(data.tried) ? data.tried.filter((t): t is string => typeof t === 'string') : [],
  };
  if (num(data.request_bytes)) out.request_bytes = data.request_bytes;
  return { ok: true, data: out };
}
