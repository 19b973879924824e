/**
 * `orion ask` (a question, streamed as it is generated) and `orion send` (a request exactly as
 * the Brain sends it): both put one request on `{p}:requests` with a private reply stream and
 * follow its answer; at the end they tell where it ran, how it was routed and how long it took.
 */
import type { InferenceRequest, InferenceResponse } from '../contracts/types.js';
import { DEFAULT_TIMEOUT_MS } from '../lib/bus.js';
import { parseDuration } from '../lib/time.js';
import { UsageError, str, type CliContext, type Command, type OptionsConfig, type Values } from './context.js';
import { duration } from './format.js';
import { sendAndWait } from './send.js';

const REQUEST_OPTIONS: OptionsConfig = {
  model: { type: 'string', short: 'm' },
  system: { type: 'string' },
  priority: { type: 'string' },
  timeout: { type: 'string' },
  'num-predict': { type: 'string' },
  seed: { type: 'string' },
  'keep-alive': { type: 'string' },
  id: { type: 'string' },
};

const REQUEST_HELP = `  --model, -m M       the model (env ORION_MODEL), e.g. gemma3:1b
  --system TEXT       a system prompt
  --priority 0-9      higher first where a queue forms (default 5)
  --timeout 60s       answer timeout this long after sending (default 10m)
  --num-predict N     at most N tokens
  --seed N            a fixed seed
  --keep-alive 30m    how long the node keeps the model loaded afterwards
  --id ID             the request id (default a fresh cli-... id)
  --json              print the final answer document, nothing else`;

function intIn(values: Values, key: string, min: number, max: number): number | undefined {
  const raw = str(values, key);
  if (raw === undefined) return undefined;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min || v > max) throw new UsageError(`--${key} must be a whole number from ${min} to ${max}`);
  return v;
}

/** The request's fields from the shared flags (not the prompt). */
function requestFields(ctx: CliContext, values: Values): Omit<InferenceRequest, 'request_id' | 'prompt' | 'messages'> & { request_id?: string } {
  const model = str(values, 'model') ?? ctx.env['ORION_MODEL'];
  if (!model) throw new UsageError('no model: pass --model M (or set ORION_MODEL)');
  const timeoutRaw = str(values, 'timeout');
  const timeout = timeoutRaw === undefined ? DEFAULT_TIMEOUT_MS : parseDuration(timeoutRaw);
  if (timeout === null || timeout < 1) throw new UsageError('--timeout must be a duration like 30s or 2m');
  const options: Record<string, unknown> = {};
  const numPredict = intIn(values, 'num-predict', -2, 1_000_000);
  const seed = intIn(values, 'seed', -2_147_483_648, 2_147_483_647);
  if (numPredict !== undefined) options['num_predict'] = numPredict;
  if (seed !== undefined) options['seed'] = seed;
  const priority = intIn(values, 'priority', 0, 9);
  const keepAlive = str(values, 'keep-alive');
  return {
    model,
    ...(str(values, 'system') !== undefined ? { system: str(values, 'system')! } : {}),
    ...(Object.keys(options).length ? { options } : {}),
    ...(priority !== undefined ? { priority } : {}),
    ...(keepAlive !== undefined ? { keep_alive: /^-?\d+$/.test(keepAlive) ? Number(keepAlive) : keepAlive } : {}),
    ...(str(values, 'id') !== undefined ? { request_id: str(values, 'id')! } : {}),
    timeout_ms: Math.round(timeout),
    source: 'orion-cli',
  };
}

/** One line on where and how the answer was made. */
export function summaryLine(final: InferenceResponse, elapsedMs: number): string {
  const parts = [`node ${final.node_id ?? '-'}`, `routing ${final.routing ?? '-'}${final.routing === 'fallback' ? ' (cold load)' : ''}`, `attempt ${final.attempt ?? 1}`];
  parts.push(`queue ${duration(final.queue_ms)}`, `load ${duration(final.load_duration_ms)}`, `prompt ${duration(final.prompt_eval_duration_ms)}`);
  const tps = final.eval_count && final.eval_duration_ms ? ` (${((final.eval_count * 1000) / final.eval_duration_ms).toFixed(1)} tokens/s)` : '';
  parts.push(`generation ${duration(final.eval_duration_ms)}${tps}`, `${final.eval_count ?? 0} tokens`, `total ${duration(elapsedMs)}`);
  return `[${parts.join(' · ')}]`;
}

/** Send, stream the partials (unless --json), then report; the exit code is 1 on an error answer. */
async function sendAndReport(ctx: CliContext, request: Omit<InferenceRequest, 'request_id' | 'reply_to'> & { request_id?: string }, asJson: boolean): Promise<number> {
  const waitMs = (request.timeout_ms ?? DEFAULT_TIMEOUT_MS) + 5000;
  let streamed = false;
  const result = await sendAndWait(ctx.redis(), ctx.n, {
    request,
    waitMs,
    signal: ctx.signal,
    onPartial: (p) => {
      if (asJson) return;
      streamed = true;
      ctx.write(p.response ?? p.message?.content ?? '');
    },
  });
  const final = result.final;
  if (!final) {
    ctx.err(ctx.signal.aborted ? 'stopped before the answer came' : `no answer within ${Math.round(waitMs / 1000)} s (is the bridge running? try: orion nodes)`);
    return 1;
  }
  if (asJson) {
    ctx.out(JSON.stringify(final, null, 2));
    return final.error ? 1 : 0;
  }
  if (final.error) {
    if (streamed) ctx.write('\n');
    ctx.err(`error ${final.error.code}: ${final.error.message}`);
    return 1;
  }
  if (streamed) ctx.write('\n');
  else ctx.out(final.response ?? final.message?.content ?? '');
  ctx.err(summaryLine(final, result.elapsedMs));
  return 0;
}

export const ask: Command = {
  name: 'ask',
  summary: 'ask a model a question; the answer streams as it is generated',
  usage: '--model M [flags] QUESTION...',
  help: `Sends QUESTION (the words after the flags) as a chat message, prints the answer as it is
generated, then one line on stderr: the node that answered, the routing (sticky, or fallback = a cold load there), the attempt, and the times
(queue, load, prompt, generation with tokens/s, total).

${REQUEST_HELP}

Example: orion ask -m gemma3:1b Why is the sky blue?`,
  options: REQUEST_OPTIONS,
  async run(ctx, values, args) {
    const question = args.join(' ').trim();
    if (!question) throw new UsageError('ask needs a question');
    const request = { ...requestFields(ctx, values), messages: [{ role: 'user' as const, content: question }], stream: values['json'] !== true };
    return sendAndReport(ctx, request, values['json'] === true);
  },
};

export const send: Command = {
  name: 'send',
  summary: 'send a request as the Brain does and print the answer',
  usage: '--model M (--prompt TEXT | --chat TEXT) [--stream] [flags]',
  help: `Puts one request on {prefix}:requests, exactly as the Brain does, with a private reply
stream, and prints the answer: a generate request (--prompt) or a chat message (--chat).

  --prompt TEXT       a completion prompt (Ollama generate)
  --chat TEXT         a chat message from the user (Ollama chat)
  --stream            print the answer as it is generated
${REQUEST_HELP}

Example: orion send --model gemma3:1b --prompt "Why is the sky blue?" --stream`,
  options: { ...REQUEST_OPTIONS, prompt: { type: 'string' }, chat: { type: 'string' }, stream: { type: 'boolean' } },
  async run(ctx, values) {
    const prompt = str(values, 'prompt');
    const chat = str(values, 'chat');
    if ((prompt === undefined) === (chat === undefined)) throw new UsageError('send needs exactly one of --prompt or --chat');
    const body = prompt !== undefined ? { prompt } : { messages: [{ role: 'user' as const, content: chat! }] };
    const request = { ...requestFields(ctx, values), ...body, stream: values['stream'] === true };
    return sendAndReport(ctx, request, values['json'] === true);
  },
};
