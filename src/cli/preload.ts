/**
 * `orion preload MODEL [--node N]`: load a model on a node before anyone asks for it. The
 * request is an empty prompt (Ollama loads the model and answers at once) through the same
 * queues as every request: with --node the job goes onto that node's queue the way the bridge
 * places jobs (request record claimed, owner set, then the add); without, it goes to
 * `{p}:requests` and the bridge chooses. A progress bar follows it: sent, queued, loading,
 * loaded, and seen in the node's health report.
 */
import { randomBytes } from 'node:crypto';
import { Job, Queue } from 'bullmq';
import type { InferenceRequest, InferenceResponse } from '../contracts/types.js';
import { HeldConnection } from '../lib/bull.js';
import { claimRequests, defineBusCommands, replyStreamOf, type InferenceJobData } from '../lib/bus.js';
import { silentLogger } from '../lib/logger.js';
import { isValidNodeId, jobIdFor } from '../lib/names.js';
import { parseDuration, sleep } from '../lib/time.js';
import { Dispatcher } from '../router/dispatcher.js';
import { UsageError, str, type CliContext, type Command } from './context.js';
import { bar, duration } from './format.js';

const STAGES = ['sent', 'queued', 'loading', 'loaded', 'reported by the node'] as const;
type Stage = 0 | 1 | 2 | 3 | 4;

function newId(model: string): string {
  return `preload-${model.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60)}-${randomBytes(3).toString('hex')}`;
}

/** Put the request on the node's queue as the bridge would (the node must be alive, not drained). */
async function placeOn(ctx: CliContext, node: string, request: InferenceRequest): Promise<void> {
  const redis = ctx.redis();
  const [alive, drained] = await Promise.all([redis.exists(ctx.n.healthKey(node)), redis.sismember(ctx.n.drained, node)]);
  if (alive !== 1) throw new UsageError(`${node} is not alive (no health report in the last seconds): see orion nodes`);
  if (drained === 1) throw new UsageError(`${node} is drained: orion undrain ${node} first`);
  defineBusCommands(redis);
  const now = Date.now();
  const entryId = `${now}-0`;
  const timeoutMs = request.timeout_ms!;
  const [claim] = await claimRequests(redis, ctx.n, [{ requestId: request.request_id, entryId, replyTo: replyStreamOf(ctx.n, request), deadline: now + timeoutMs, timeoutMs }]);
  if (claim?.kind !== 'new') throw new Error(`request id ${request.request_id} is taken`);
  const dispatcher = new Dispatcher({ redis, n: ctx.n, log: silentLogger });
  try {
    const data: InferenceJobData = { request, entry_id: entryId, seen_at: now, deadline: now + timeoutMs, attempt: 0, max_attempts: 1, routing: 'fallback', tried: [] };
    const r = await dispatcher.placeNew([{ nodeId: node, data }]);
    if (r.retry.length || r.refused.length) throw new Error(`could not add the job to ${node}'s queue${r.refused[0] ? `: ${r.refused[0].reason}` : ''}`);
  } finally {
    await dispatcher.close();
  }
}

/** Where the preload is now: its stage, node and final answer (when there is one). */
async function look(ctx: CliContext, id: string, model: string): Promise<{ stage: Stage; node?: string; final?: InferenceResponse }> {
  const [node, final] = await ctx.redis().hmget(ctx.n.requestKey(id), 'node', 'final');
  if (final) {
    const doc = JSON.parse(final) as InferenceResponse;
    const at = doc.node_id ?? node ?? undefined;
    return { stage: doc.error ? 3 : (await reportsLoaded(ctx, at, model)) ? 4 : 3, node: at, final: doc };
  }
  if (!node) return { stage: 0 };
  const q = new Queue<InferenceJobData>(node, { prefix: ctx.n.nodeQueuePrefix, connection: ctx.redis() }, HeldConnection);
  try {
    const job = await Job.fromId<InferenceJobData>(q, jobIdFor(id));
    const state = job ? await job.getState() : 'unknown';
    return { stage: state === 'active' ? 2 : 1, node };
  } finally {
    await q.close();
  }
}

async function reportsLoaded(ctx: CliContext, node: string | undefined, model: string): Promise<boolean> {
  if (!node) return false;
  const raw = await ctx.redis().hget(ctx.n.health, node);
  const want = model.includes(':') ? model : `${model}:latest`;
  try {
    const models = (JSON.parse(raw ?? '{}') as { models?: unknown }).models;
    return Array.isArray(models) && models.some((m) => m === model || m === want);
  } catch {
    return false;
  }
}

function progressLine(stage: Stage, node: string | undefined, elapsedMs: number): string {
  return `${bar(stage / 4)} ${STAGES[stage]}${node ? ` on ${node}` : ''}  ${duration(elapsedMs)}`;
}

export const preload: Command = {
  name: 'preload',
  summary: 'load a model on a node ahead of its first request, with a progress bar',
  usage: 'MODEL [--node N] [--keep-alive 30m] [--timeout 10m] [--json]',
  help: `Loads MODEL into Ollama's memory on a node (an empty prompt, through the node's job
queue like any request), so that the first real request does not wait for the load. A progress
bar shows the steps: sent, queued, loading, loaded, reported by the node (its next health
report lists the model as loaded, so the bridge routes to it as a sticky hit).

  --node N           the node (alive and not drained); without it the bridge chooses, as for a request
  --keep-alive 30m   how long the node keeps it loaded afterwards (-1: until told otherwise)
  --timeout 10m      give up after this long
  --json             one document at the end: {request_id, model, node, routing, load_ms, total_ms, reported}

Example: orion preload llama3.2:3b --node pi-16g --keep-alive -1`,
  options: { node: { type: 'string' }, 'keep-alive': { type: 'string' }, timeout: { type: 'string' } },
  async run(ctx, values, args) {
    const model = args[0];
    if (!model || args.length > 1) throw new UsageError('preload needs exactly one model name');
    const node = str(values, 'node');
    if (node !== undefined && !isValidNodeId(node)) throw new UsageError(`'${node}' is not a node id`);
    const timeoutMs = parseDuration(str(values, 'timeout') ?? '10m');
    if (timeoutMs === null || timeoutMs < 1000) throw new UsageError('--timeout must be a duration like 10m, at least 1s');
    const keepAlive = str(values, 'keep-alive');
    const id = newId(model);
    const request: InferenceRequest = {
      request_id: id,
      model,
      prompt: '',
      stream: false,
      timeout_ms: Math.round(timeoutMs),
      reply_to: `${ctx.n.responses}:${id}`,
      source: 'orion-cli preload',
      ...(keepAlive !== undefined ? { keep_alive: /^-?\d+$/.test(keepAlive) ? Number(keepAlive) : keepAlive } : {}),
    };
    const started = Date.now();
    if (node !== undefined) await placeOn(ctx, node, request);
    else await ctx.redis().xadd(ctx.n.requests, '*', 'data', JSON.stringify(request));
    try {
      return await follow(ctx, request, values['json'] === true, started, timeoutMs);
    } finally {
      await ctx.redis().del(request.reply_to!);
    }
  },
};

/** Show the progress until the model is reported loaded (or the answer is an error, or time is up). */
async function follow(ctx: CliContext, request: InferenceRequest, asJson: boolean, started: number, timeoutMs: number): Promise<number> {
  const show = (line: string): void => {
    if (asJson) return;
    if (ctx.tty) ctx.write(`\r\x1b[K${line}`);
    else ctx.out(line);
  };
  let shown = -1;
  let finalAt = 0;
  for (;;) {
    const s = await look(ctx, request.request_id, request.model);
    const elapsed = Date.now() - started;
    if (ctx.tty || s.stage !== shown) show(progressLine(s.stage, s.node, elapsed));
    shown = s.stage;
    if (s.final?.error) {
      if (ctx.tty && !asJson) ctx.write('\n');
      ctx.err(`preload failed: ${s.final.error.code}: ${s.final.error.message}`);
      return 1;
    }
    if (s.final) finalAt ||= Date.now();
    // The node's next health report names the model (within its heartbeat, 5 s by default).
    const done = s.stage === 4 || (s.final !== undefined && Date.now() - finalAt > 15_000);
    if (done || ctx.signal.aborted || elapsed > timeoutMs + 5000) {
      if (ctx.tty && !asJson) ctx.write('\n');
      return report(ctx, request, s, asJson, elapsed);
    }
    await sleep(ctx.tty ? 100 : 200, ctx.signal);
  }
}

function report(ctx: CliContext, request: InferenceRequest, s: { stage: Stage; node?: string; final?: InferenceResponse }, asJson: boolean, elapsed: number): number {
  const f = s.final;
  if (asJson) {
    ctx.out(JSON.stringify({ request_id: request.request_id, model: request.model, node: s.node ?? null, routing: f?.routing ?? null, load_ms: f?.load_duration_ms ?? null, total_ms: elapsed, reported: s.stage === 4 }));
  } else if (!f) {
    ctx.err(`no answer yet after ${duration(elapsed)} (${STAGES[s.stage]}); follow it with: orion status ${request.request_id}`);
  } else {
    ctx.out(`${request.model} loaded on ${s.node} in ${duration(elapsed)} (load ${duration(f.load_duration_ms)})${s.stage === 4 ? '' : '; not in its health report yet'}`);
  }
  return f && s.stage >= 3 ? 0 : 1;
}
