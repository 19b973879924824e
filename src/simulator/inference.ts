/**
 * POST /api/generate and POST /api/chat, answered the way Ollama answers them: NDJSON chunks
 * (one token each) ending with a `done: true` object carrying the metrics, or one JSON object
 * when `stream` is false; an empty prompt (or no messages) only loads the model, and with
 * keep_alive 0 unloads it. Faults that shape the stream (slowStreamMs, cutStreamAfter) act here;
 * a request a scripted rule matches is answered by the rule instead (script.ts).
 */
import { delay, isAbortError } from './clock.js';
import type { EngineMessage, GenerateResult } from './engine.js';
import { isRecord, nowIso, sendError, sendJson, writeLine, type RequestContext } from './http-util.js';
import { SchedulerError, type Lease } from './scheduler.js';
import { answerScripted } from './script.js';
import { contextIds } from './text.js';
import { DurationError, OLLAMA_ERRORS, parseKeepAlive } from './wire.js';

type Kind = 'generate' | 'chat';

interface ParsedRequest {
  model: string;
  prompt: string;
  system: string | undefined;
  messages: EngineMessage[];
  keepAliveMs: number | undefined;
  options: Record<string, unknown>;
  format: unknown;
  stream: boolean;
}

const STRUCT: Record<Kind, string> = { generate: 'GenerateRequest', chat: 'ChatRequest' };

function typeError(kind: Kind, field: string, got: unknown, want: string): string {
  const jsonType = Array.isArray(got) ? 'array' : got === null ? 'null' : typeof got;
  return `json: cannot unmarshal ${jsonType} into Go struct field ${STRUCT[kind]}.${field} of type ${want}`;
}

/** Read the request body; a string is the error message for a 400. */
function parseRequest(kind: Kind, body: Record<string, unknown>): ParsedRequest | string {
  for (const [field, want] of [['model', 'string'], ['prompt', 'string'], ['system', 'string']] as const) {
    if (body[field] !== undefined && body[field] !== null && typeof body[field] !== want) return typeError(kind, field, body[field], want);
  }
  const messages: EngineMessage[] = [];
  if (kind === 'chat' && body['messages'] !== undefined && body['messages'] !== null) {
    if (!Array.isArray(body['messages'])) return typeError(kind, 'messages', body['messages'], '[]api.Message');
    for (const m of body['messages'] as unknown[]) {
      if (!isRecord(m) || (m['content'] !== undefined && typeof m['content'] !== 'string')) {
        return typeError(kind, 'messages', m, 'api.Message');
      }
      messages.push({ role: typeof m['role'] === 'string' ? m['role'] : 'user', content: (m['content'] as string | undefined) ?? '' });
    }
  }
  if (body['options'] !== undefined && body['options'] !== null && !isRecord(body['options'])) {
    return typeError(kind, 'options', body['options'], 'map[string]interface {}');
  }
  let keepAliveMs: number | undefined;
  try {
    keepAliveMs = parseKeepAlive(body['keep_alive']);
  } catch (err) {
    if (err instanceof DurationError) return err.message;
    throw err;
  }
  return {
    model: (body['model'] as string | undefined) ?? '',
    prompt: (body['prompt'] as string | undefined) ?? '',
    system: (body['system'] as string | undefined) || undefined,
    messages,
    keepAliveMs,
    options: (body['options'] as Record<string, unknown> | undefined) ?? {},
    format: body['format'],
    stream: body['stream'] !== false,
  };
}

function doneOnly(kind: Kind, model: string, reason: 'load' | 'unload'): Record<string, unknown> {
  return kind === 'generate'
    ? { model, created_at: nowIso(), response: '', done: true, done_reason: reason }
    : { model, created_at: nowIso(), message: { role: 'assistant', content: '' }, done_reason: reason, done: true };
}

export async function handleInference(kind: Kind, ctx: RequestContext): Promise<void> {
  const { node, res } = ctx;
  node.countRequest(kind);
  const parsed = parseRequest(kind, ctx.body);
  if (typeof parsed === 'string') return sendError(res, 400, parsed);
  if (parsed.model.trim() === '') {
    // Ollama's own asymmetry: generate says the empty name is not found, chat asks for one.
    return kind === 'chat' ? sendError(res, 400, OLLAMA_ERRORS.modelRequired) : sendError(res, 404, OLLAMA_ERRORS.notFound(parsed.model));
  }
  const info = node.installedModel(parsed.model);
  if (!info) return sendError(res, 404, OLLAMA_ERRORS.notFound(parsed.model));

  const empty = kind === 'generate' ? parsed.prompt === '' : parsed.messages.length === 0;
  if (empty && parsed.keepAliveMs === 0) {
    node.scheduler.expire(info.name);
    return sendJson(res, 200, doneOnly(kind, parsed.model, 'unload'));
  }

  const rule = empty ? undefined : node.scriptedAnswer(ctx.body);
  if (rule) return answerScripted(kind, ctx, parsed.model, rule);

  let lease: Lease;
  try {
    lease = await node.scheduler.acquire(info.name, info.memoryBytes, { keepAliveMs: parsed.keepAliveMs, signal: ctx.signal });
  } catch (err) {
    if (ctx.signal.aborted) return void node.countOutcome('aborted');
    node.countOutcome('errors');
    if (err instanceof SchedulerError) return sendError(res, err.status, err.message);
    return sendError(res, 500, err instanceof Error ? err.message : String(err));
  }
  if (!node.installedModel(info.name)) {
    // Deleted while this request waited for it.
    lease.release();
    return sendError(res, 404, OLLAMA_ERRORS.notFoundTryPulling(parsed.model));
  }
  if (empty) {
    lease.release();
    return sendJson(res, 200, doneOnly(kind, parsed.model, 'load'));
  }
  try {
    await generate(kind, ctx, parsed, info.name, lease);
  } finally {
    lease.release();
  }
}

async function generate(kind: Kind, ctx: RequestContext, req: ParsedRequest, model: string, lease: Lease): Promise<void> {
  const { node } = ctx;
  const sink = new TokenSink(ctx, req.stream, (token) =>
    kind === 'generate'
      ? { model: req.model, created_at: nowIso(), response: token, done: false }
      : { model: req.model, created_at: nowIso(), message: { role: 'assistant', content: token }, done: false },
  );
  const endGeneration = node.beginGeneration();
  let result: GenerateResult;
  try {
    result = await node.engine.generate({
      model,
      prompt: kind === 'generate' ? req.prompt : undefined,
      system: req.system,
      messages: kind === 'chat' ? req.messages : undefined,
      options: req.options,
      format: req.format,
      onToken: (token) => sink.token(token),
      signal: ctx.signal,
    });
    await sink.drained();
  } catch (err) {
    if (ctx.signal.aborted || isAbortError(err)) return void node.countOutcome('aborted');
    node.countOutcome('errors');
    node.log.warn({ model, err }, 'generation failed');
    await sink.drained(); // the tokens produced before the failure go out first
    // An engine refusing the request itself (e.g. an unusable format) is the client's fault.
    const status = (err as { code?: unknown }).code === 'invalid_request' ? 400 : 500;
    return sink.fail(status, err instanceof Error ? err.message : String(err));
  } finally {
    endGeneration();
  }
  if (ctx.signal.aborted) return void node.countOutcome('aborted');

  const metrics = {
    total_duration: node.reportNs(performance.now() - ctx.startedAt),
    load_duration: node.reportNs(lease.loadMs),
    prompt_eval_count: result.promptEvalCount,
    prompt_eval_duration: node.reportNs(result.promptEvalDurationNs / 1e6),
    eval_count: result.evalCount,
    eval_duration: node.reportNs(result.evalDurationNs / 1e6),
  };
  const text = req.stream ? '' : sink.text;
  const final =
    kind === 'generate'
      ? {
          model: req.model,
          created_at: nowIso(),
          response: text,
          done: true,
          done_reason: result.doneReason,
          context: contextIds(req.prompt + sink.text, result.promptEvalCount + result.evalCount),
          ...metrics,
        }
      : { model: req.model, created_at: nowIso(), message: { role: 'assistant', content: text }, done_reason: result.doneReason, done: true, ...metrics };
  if (await sink.finish(final)) {
    node.countOutcome('completed');
    node.log.debug({ kind, model, cold: lease.cold, evalCount: result.evalCount, totalMs: Math.round(performance.now() - ctx.startedAt) }, 'request done');
  }
}

/**
 * Takes tokens as the engine produces them and writes them out in order, applying the
 * slowStreamMs and cutStreamAfter faults. Without streaming it only collects the text (the
 * faults still count tokens as chunks).
 */
class TokenSink {
  text = '';
  private written = 0;
  private cut = false;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: RequestContext,
    private readonly stream: boolean,
    private readonly chunk: (token: string) => object,
  ) {}

  token(token: string): void {
    this.text += token;
    const obj = this.chunk(token);
    this.chain = this.chain.then(async () => {
      await this.step(obj);
    });
  }

  drained(): Promise<void> {
    return this.chain;
  }

  /** Send the final object; false when the connection was cut or is gone. */
  async finish(final: object): Promise<boolean> {
    await this.drained();
    const { res, signal } = this.ctx;
    if (signal.aborted || res.destroyed) return false;
    if (!this.stream) {
      if (this.cutNow()) return false;
      sendJson(res, 200, final);
      return true;
    }
    if (!(await this.step(final))) return false;
    res.end();
    return true;
  }

  /** Report an error: a final error line once streaming began, else a JSON error with `status`. */
  fail(status: number, message: string): void {
    const { res } = this.ctx;
    if (res.headersSent) {
      writeLine(res, { error: message });
      res.end();
    } else {
      sendError(res, status, message);
    }
  }

  /** Write one chunk after the slow-stream delay; false when cut or aborted. */
  private async step(obj: object): Promise<boolean> {
    const { res, signal, faults } = this.ctx;
    if (signal.aborted) return false;
    if (faults.slowStreamMs > 0) {
      try {
        await delay(faults.slowStreamMs, signal);
      } catch {
        return false;
      }
    }
    if (this.cutNow()) return false;
    if (this.stream) writeLine(res, obj);
    this.written++;
    return true;
  }

  private cutNow(): boolean {
    const { cutStreamAfter } = this.ctx.faults;
    if (cutStreamAfter === null || this.written < cutStreamAfter) return false;
    const { res, node } = this.ctx;
    if (!this.cut) {
      this.cut = true;
      node.countOutcome('faultsInjected');
      node.log.info({ after: this.written }, 'cutting stream (fault)');
      // End the socket rather than destroy it, so the chunks already written reach the client.
      const socket = res.socket;
      if (socket) {
        socket.end();
        setTimeout(() => socket.destroy(), 1_000).unref();
      } else res.destroy();
    }
    return true;
  }
}
