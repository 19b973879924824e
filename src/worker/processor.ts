/**
 * What a worker does with one job of its node queue (SPEC.md sections 4 and 7).
 *
 *   manual retry (attemptsMade > 0: we never give BullMQ more than one attempt, so only a retry
 *     from Bull Board brings a job back): a fresh start, with a new deadline, the attempt count
 *     reset, the stored final answer cleared and this node the owner again;
 *   otherwise the request record decides: a final answer already there is returned as the job's
 *     result without running again; an owner other than this node means the job moved on, and
 *     this copy ends quietly (a zombie must not answer);
 *   past the deadline: `timeout`, never a late start;
 *   cancelled by its sender (`{p}:cancel:{id}`, before the start or during the call): answered
 *     `cancelled`, the Ollama call aborted, not retried, not dead-lettered;
 *   then the Ollama call, answered on the reply stream (partials in order when streamed), or
 *   mapped to an error code: retryable ones with attempts left go back to the bridge through a
 *   reroute notice, the rest are answered with an error and dead-lettered.
 */
import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { InferenceRequest, InferenceResponse } from '../contracts/types.js';
import {
  DEFAULT_STREAM_MAXLEN,
  DEFAULT_TIMEOUT_MS,
  deadlinesKey,
  errorResponse,
  publishFinal,
  publishPartial,
  recordTtlSeconds,
  replyStreamOf,
  startJob,
  type InferenceJobData,
  type RerouteNotice,
} from '../lib/bus.js';
import type { ErrorCode } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import { rfc3339, setLongTimeout } from '../lib/time.js';
import { whilePassing } from '../lib/transient.js';
import { mapOllamaError } from './errors.js';
import { ollamaCallFor, runGeneration, type Generation } from './generate.js';
import { CancelWatch } from './cancel-watch.js';
import { checkJobData, type CheckedJob } from './job-data.js';
import { PartialPublisher } from './partials.js';
import { COLD_LOAD_NS, type JobOutcome, type WorkerMetrics } from './metrics.js';
import { traceStep } from '../lib/trace.js';
import { failRequest, jobLetter } from '../lib/failures.js';

/** Reasons a worker gives when it aborts a job's processor signal. */
export const CANCEL_SHUTDOWN = 'worker shutting down';
export const CANCEL_LOCK_LOST = 'job lock lost';
/** Abort reason when the request's sender cancelled it. */
export const CANCEL_BY_SENDER = 'cancelled';

export interface ProcessorDeps {
  /** Command connection (not a blocking one). */
  redis: Redis;
  n: Names;
  nodeId: string;
  ollamaHost: string;
  /** The key of a job's hash in this node's BullMQ queue (`Worker.toKey(jobId)`). */
  jobKey: (jobId: string) => string;
  /** An Ollama call that sends nothing this long is given up (backend_error, retried elsewhere). */
  ollamaTimeoutMs?: number;
  log: Logger;
  metrics?: WorkerMetrics;
  /** Ollama could not be reached at all: stop taking jobs and say so in the health registry. */
  onOllamaUnreachable?: (reason: string) => void;
  now?: () => number;
}

export type JobLike = Pick<Job<InferenceJobData>, 'id' | 'data' | 'attemptsMade'>;

/** The job's return value when this copy gave way to another (or to an answer already given). */
export interface Superseded {
  superseded: true;
}

export type JobResult = InferenceResponse | Superseded;

/**
 * How long a write of a job's outcome (start record, final answer, dead letter, hand-back) is
 * tried again while Redis refuses it for a passing reason (out of memory, failover).
 */
export const PASSING_FAULT_MS = 5 * 60_000;

const nsToMs = (ns: number | undefined): number | undefined => (ns === undefined ? undefined : Math.round(ns / 1000) / 1000);

class JobRun {
  readonly start: number;
  log: Logger;
  data!: InferenceJobData;
  attempt = 0;

  constructor(
    readonly deps: ProcessorDeps,
    readonly job: JobLike,
  ) {
    this.start = this.now();
    this.log = deps.log;
  }

  now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  /** A write that is tried again while Redis is out of memory or failing over. */
  write<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return whilePassing(fn, { what, log: this.log, giveUpAt: Date.now() + PASSING_FAULT_MS });
  }

  get request(): InferenceRequest {
    return this.data.request;
  }

  get replyTo(): string {
    return replyStreamOf(this.deps.n, this.request);
  }

  finish<T>(outcome: JobOutcome, code: ErrorCode | '', value: T): T {
    const seconds = (this.now() - this.start) / 1000;
    this.deps.metrics?.jobs.inc({ outcome, code });
    this.deps.metrics?.jobDuration.observe({ outcome }, seconds);
    return value;
  }

  /** Fields every final answer of this run carries. */
  finalExtra(): Partial<InferenceResponse> {
    const extra: Partial<InferenceResponse> = { model: this.request.model, node_id: this.deps.nodeId };
    if (this.attempt >= 1) extra.attempt = this.attempt;
    extra.routing = this.data.routing;
    if (this.request.metadata !== undefined) extra.metadata = this.request.metadata;
    return extra;
  }

  /**
   * Answer with an error and dead-letter it, then fail the job for good (it stays in the failed
   * set, where Bull Board can retry it). Nothing is written when another node owns the job now
   * or the request is answered already.
   */
  async giveUp(code: ErrorCode, message: string): Promise<never> {
    const { redis, n, nodeId } = this.deps;
    const failure = { requestId: this.request.request_id, replyTo: this.replyTo, code, message, answer: this.finalExtra(), letter: jobLetter(this.data, nodeId, this.attempt) };
    const published = await failRequest(redis, n, failure, { nodeId, write: (what, fn) => this.write(what, fn) });
    if (published) {
      this.log.warn({ request_id: this.request.request_id, code, attempt: this.attempt, err: message }, 'request failed');
    } else {
      this.log.debug({ request_id: this.request.request_id, code }, 'error not published: answered already or moved to another node');
    }
    // Counted as an error only when this node gave the answer; else another node or an earlier
    // answer owns the outcome and counts it.
    if (published) this.finish('error', code, undefined);
    else this.finish('superseded', '', undefined);
    throw new UnrecoverableError(`${code}: ${message}`);
  }

  /**
   * Answer `cancelled` (no dead letter: the sender asked for it) and return the answer as the
   * job's result, so the job is done, never retried.
   */
  async cancelled(started: boolean): Promise<JobResult> {
    const { redis, n, nodeId } = this.deps;
    const message = started ? 'cancelled by its sender; generation aborted' : 'cancelled by its sender before it started';
    const doc = errorResponse(this.request.request_id, 'cancelled', message, this.finalExtra());
    const published = await publishFinal(redis, n, this.replyTo, doc, nodeId);
    this.log.info({ request_id: this.request.request_id, started, published }, 'request cancelled');
    return this.finish('cancelled', 'cancelled', published ? doc : { superseded: true });
  }

  /** Hand the job back to the bridge to place on another node, and fail this copy. */
  async reroute(code: ErrorCode, message: string, counts: boolean): Promise<never> {
    const { redis, n, nodeId } = this.deps;
    const owner = await redis.hget(n.requestKey(this.request.request_id), 'node');
    if (owner !== null && owner !== nodeId) {
      this.finish('superseded', '', undefined);
      throw new Error(`moved to ${owner} meanwhile`);
    }
    const notice: RerouteNotice = { request_id: this.request.request_id, node_id: nodeId, code, message, counts };
    await this.write('hand-back notice', () => redis.xadd(n.reroute, 'MAXLEN', '~', DEFAULT_STREAM_MAXLEN, '*', 'data', JSON.stringify(notice)));
    this.log.warn({ request_id: this.request.request_id, code, attempt: this.attempt, counts, err: message }, 'handed back for another node');
    this.finish('rerouted', code, undefined);
    throw new Error(`${code}: ${message}`);
  }

  /** Clear the way for a retry from Bull Board: a fresh start with a new deadline. */
  async freshStart(): Promise<void> {
    const { redis, n, nodeId } = this.deps;
    const now = this.now();
    const deadline = now + (this.request.timeout_ms ?? DEFAULT_TIMEOUT_MS);
    this.data = { ...this.data, attempt: 0, deadline, tried: [] };
    const key = n.requestKey(this.request.request_id);
    const multi = redis
      .multi()
      .hdel(key, 'final')
      .hset(key, 'node', nodeId)
      .hsetnx(key, 'reply_to', this.replyTo);
    if (this.data.entry_id) multi.hsetnx(key, 'entry', this.data.entry_id);
    await multi.expire(key, recordTtlSeconds(this.request.timeout_ms)).zadd(deadlinesKey(n), deadline, key).exec();
    this.log.info({ request_id: this.request.request_id, deadline: rfc3339(deadline) }, 'manual retry: fresh start');
  }
}

/**
 * Process one job. Resolves with the final answer (also published), or `{superseded: true}`;
 * throws a plain Error when the job was handed back for another node, an UnrecoverableError
 * when it was answered with an error.
 */
export async function processJob(deps: ProcessorDeps, job: JobLike, signal?: AbortSignal): Promise<JobResult> {
  const run = new JobRun(deps, job);
  const checked = checkJobData(job.data, job.id, deps.n);
  if (!checked.ok) return refuseJob(run, checked);
  run.data = checked.data;
  traceStep(run.request.request_id, 'worker took job');
  run.log = deps.log.child({ request_id: run.request.request_id });

  if (run.job.attemptsMade > 0) await run.freshStart();
  const late = run.now() >= run.data.deadline;
  if (late || run.data.attempt >= run.data.max_attempts) {
    const early = await admit(run);
    if (early) return early;
    run.attempt = run.data.attempt;
    if (late) return run.giveUp('timeout', `not started before its deadline (timeout_ms ${run.request.timeout_ms ?? DEFAULT_TIMEOUT_MS})`);
    // Started that many times already, and back each time without an outcome: the worker
    // running it died (BullMQ's stalled check returned it). No more starts.
    return run.giveUp('backend_error', `node ${deps.nodeId} stopped during attempt ${run.data.attempt} of ${run.data.max_attempts}`);
  }

  // One script checks that this copy may run and records its attempt (before the Ollama call,
  // so a worker that dies during the call has used the attempt). A copy that may not run never
  // reaches Ollama: it could start a cold load for nothing.
  run.attempt = run.data.attempt + 1;
  run.data = { ...run.data, attempt: run.attempt };
  const refused = await started(run);
  if (refused) return refused;
  traceStep(run.request.request_id, 'start recorded');
  const queueMs = Math.max(0, run.now() - run.data.seen_at);
  deps.metrics?.queueWait.observe(queueMs / 1000);
  run.log.debug({ attempt: run.attempt, queue_ms: queueMs, model: run.request.model }, 'started');

  const outcome = await generate(run, signal);
  if (!('text' in outcome)) return outcome;
  return answer(run, outcome, queueMs);
}

/**
 * The start script's verdict: undefined when this copy runs (its attempt recorded), else what
 * the job returns instead (the stored answer, or superseded). Rejects when Redis fails or the
 * job is gone, as `Job.updateData` would.
 */
async function started(run: JobRun): Promise<JobResult | undefined> {
  const { redis, n, nodeId, jobKey } = run.deps;
  const id = run.request.request_id;
  const jobId = run.job.id ?? '';
  const r = await run.write('job start', () => startJob(redis, n, id, jobKey(jobId), nodeId, run.data));
  switch (r.kind) {
    case 'run':
      run.job.data = run.data;
      return undefined;
    case 'done':
      return giveWay(run, r.final, null);
    case 'moved':
      return giveWay(run, null, r.owner);
    case 'gone':
      throw new Error(`Missing key for job ${jobId}. updateData`);
    case 'cancelled':
      return run.cancelled(false);
  }
}

/**
 * What a copy returns instead of running, from the request record: the stored answer when there
 * is one, superseded when another node owns the job now; undefined when neither holds.
 */
function giveWay(run: JobRun, final: string | null, owner: string | null): JobResult | undefined {
  if (final !== null) {
    run.log.debug({}, 'answered already: returning the stored answer');
    return run.finish('superseded', '', parseFinal(final, run.request.request_id));
  }
  if (owner !== null && owner !== run.deps.nodeId) {
    run.log.debug({ owner }, 'job moved to another node: this copy ends without answering');
    return run.finish('superseded', '', { superseded: true });
  }
  return undefined;
}

/**
 * Whether a copy that will not run (too late, or out of attempts) should still answer: not
 * when the request is answered already (its answer is the result) or owned by another node now.
 */
async function admit(run: JobRun): Promise<JobResult | undefined> {
  const { redis, n } = run.deps;
  const [final, owner] = await redis.hmget(n.requestKey(run.request.request_id), 'final', 'node');
  return giveWay(run, final ?? null, owner ?? null);
}

/**
 * The Ollama call, with partial answers when asked for. One controller carries every reason to
 * stop: the deadline, the job's own signal (worker closing, lock lost), the job moving away.
 */
async function generate(run: JobRun, signal: AbortSignal | undefined): Promise<Generation | JobResult> {
  const { redis, n, nodeId } = run.deps;
  const abort = new AbortController();
  const timer = setLongTimeout(() => abort.abort('deadline'), run.data.deadline - run.now());
  const onJobSignal = (): void => abort.abort(signal?.reason ?? CANCEL_SHUTDOWN);
  if (signal?.aborted) onJobSignal();
  signal?.addEventListener('abort', onJobSignal, { once: true });
  const watch = new CancelWatch(redis, n.cancelKey(run.request.request_id), () => abort.abort(CANCEL_BY_SENDER));

  const call = ollamaCallFor(run.request);
  // Partials carry their attempt: one with a higher attempt than before starts the text anew.
  const base = { request_id: run.request.request_id, model: run.request.model, node_id: nodeId, done: false, attempt: run.attempt };
  const partials = run.request.stream && call.endpoint !== 'embed'
    ? new PartialPublisher(
        (delta) => {
          const doc: InferenceResponse =
            call.endpoint === 'chat'
              ? { ...base, message: { role: 'assistant', content: delta }, created_at: rfc3339() }
              : { ...base, response: delta, created_at: rfc3339() };
          return publishPartial(redis, n, run.replyTo, doc, nodeId);
        },
        () => abort.abort('superseded'),
        (err) => run.log.warn({ err }, 'partial answer not published'),
      )
    : undefined;

  try {
    traceStep(run.request.request_id, 'ollama call');
    const gen = await runGeneration(run.deps.ollamaHost, call, abort.signal, partials ? (d) => partials.push(d) : undefined, run.deps.ollamaTimeoutMs);
    traceStep(run.request.request_id, 'ollama done');
    await partials?.flush();
    if (partials?.superseded) {
      run.log.debug({}, 'answered or moved elsewhere during generation');
      return run.finish('superseded', '', { superseded: true });
    }
    return gen;
  } catch (err) {
    await partials?.flush().catch(() => undefined);
    return await failed(run, err, abort.signal);
  } finally {
    watch.stop();
    timer.clear();
    signal?.removeEventListener('abort', onJobSignal);
  }
}

/** Publish the final answer (unless someone else answered or the job moved meanwhile). */
async function answer(run: JobRun, gen: Generation, queueMs: number): Promise<JobResult> {
  const { redis, n, nodeId, metrics } = run.deps;
  const id = run.request.request_id;
  const doc = finalAnswer(run, gen, queueMs);
  if (gen.loadNs !== undefined) metrics?.loadDuration.observe(gen.loadNs / 1e9);
  if (gen.loadNs !== undefined && gen.loadNs >= COLD_LOAD_NS) metrics?.coldLoads.inc({ model: run.request.model });
  if (gen.evalCount !== undefined) metrics?.tokens.inc({ model: run.request.model }, gen.evalCount);
  const published = await run.write('final answer', () => publishFinal(redis, n, run.replyTo, doc, nodeId));
  traceStep(id, 'final published');
  if (!published) {
    const stored = await redis.hget(n.requestKey(id), 'final');
    run.log.debug({}, 'answer not published: answered already or moved to another node');
    return run.finish('superseded', '', stored !== null ? parseFinal(stored, id) : { superseded: true });
  }
  run.log.info(
    { attempt: run.attempt, model: run.request.model, eval_count: gen.evalCount, ms: run.now() - run.start, stream: !!run.request.stream },
    'answered',
  );
  return run.finish('ok', '', doc);
}

/** The final answer, fields in the order SPEC.md lists them; absent values left out. */
function finalAnswer(run: JobRun, gen: Generation, queueMs: number): InferenceResponse {
  const chat = run.request.messages !== undefined;
  const embed = run.request.input !== undefined;
  const message: InferenceResponse['message'] = { role: 'assistant', content: gen.text };
  if (gen.toolCalls !== undefined) message.tool_calls = gen.toolCalls;
  const fields: Record<string, unknown> = {
    request_id: run.request.request_id,
    model: run.request.model,
    node_id: run.deps.nodeId,
    done: true,
    response: chat || embed ? undefined : gen.text,
    message: chat ? message : undefined,
    embeddings: embed ? (gen.embeddings ?? []) : undefined,
    done_reason: gen.doneReason,
    total_duration_ms: nsToMs(gen.totalNs),
    load_duration_ms: nsToMs(gen.loadNs),
    prompt_eval_duration_ms: nsToMs(gen.promptEvalNs),
    eval_duration_ms: nsToMs(gen.evalNs),
    prompt_eval_count: gen.promptEvalCount,
    eval_count: gen.evalCount,
    queue_ms: queueMs,
    routing: run.data.routing,
    attempt: run.attempt,
    metadata: run.request.metadata,
    created_at: rfc3339(),
  };
  for (const k of Object.keys(fields)) if (fields[k] === undefined) delete fields[k];
  return fields as unknown as InferenceResponse;
}

/** The Ollama call failed or was aborted: decide between timeout, hand-back and error answer. */
async function failed(run: JobRun, err: unknown, signal: AbortSignal): Promise<JobResult> {
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    if (reason === 'deadline') {
      return run.giveUp('timeout', `not finished within timeout_ms (${run.request.timeout_ms ?? DEFAULT_TIMEOUT_MS} ms); generation aborted`);
    }
    if (reason === 'superseded') return run.finish('superseded', '', { superseded: true });
    if (reason === CANCEL_BY_SENDER) return run.cancelled(true);
    if (reason === CANCEL_LOCK_LOST) {
      // The lock lapsed: the bridge recovers the job elsewhere; this copy just stops.
      run.finish('cancelled', '', undefined);
      throw new Error('job lock lost; generation aborted');
    }
    // The worker is closing without waiting: the node's fault, so the attempt is given back.
    return run.reroute('backend_error', `worker on ${run.deps.nodeId} stopped: ${String(reason)}`, false);
  }
  const f = mapOllamaError(err);
  if (f.unreachable) run.deps.onOllamaUnreachable?.(f.message);
  const counts = !f.unreachable;
  const used = counts ? run.attempt : run.attempt - 1;
  if (f.retryable && used < run.data.max_attempts) return run.reroute(f.code, f.message, counts);
  return run.giveUp(f.code, f.message);
}

async function refuseJob(run: JobRun, bad: Extract<CheckedJob, { ok: false }>): Promise<never> {
  const { redis, n, nodeId, log } = run.deps;
  const reason = `invalid job: ${bad.reason}`;
  const failure = { requestId: bad.requestId, replyTo: bad.replyTo ?? n.responses, code: 'invalid_request' as const, message: reason, answer: { node_id: nodeId }, letter: { node_id: nodeId, request: bad.original } };
  await failRequest(redis, n, failure, { nodeId });
  log.warn({ job_id: run.job.id, request_id: bad.requestId, err: bad.reason }, 'invalid job refused');
  run.finish('error', 'invalid_request', undefined);
  throw new UnrecoverableError(reason);
}

function parseFinal(json: string, requestId: string): JobResult {
  try {
    return JSON.parse(json) as InferenceResponse;
  } catch {
    return errorResponse(requestId, 'internal', 'stored final answer is not valid JSON');
  }
}
