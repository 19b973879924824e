/**
 * `orion tail`: follow the answers on a reply stream (`{p}:responses` by default, where the
 * Brain's answers go), one line each, as they are written.
 */
import type { InferenceResponse } from '../contracts/types.js';
import { UsageError, str, type Command } from './context.js';
import { duration } from './format.js';

export function answerLine(d: InferenceResponse): string {
  const time = (d.created_at ?? '').slice(11, 19) || '--:--:--';
  if (!d.done) return `${time} ${d.request_id} … ${JSON.stringify(d.response ?? d.message?.content ?? '')}`;
  if (d.error) return `${time} ${d.request_id} ${d.model ?? '-'} ERROR ${d.error.code}: ${d.error.message}${d.node_id ? ` (on ${d.node_id})` : ''}`;
  const text = (d.response ?? d.message?.content ?? '').replace(/\s+/g, ' ').trim();
  const cut = text.length > 60 ? `${text.slice(0, 59)}…` : text;
  return `${time} ${d.request_id} ${d.model ?? '-'} on ${d.node_id ?? '-'} (${d.routing ?? '-'}, ${d.eval_count ?? 0} tokens, ${duration(d.total_duration_ms)}) ${JSON.stringify(cut)}`;
}

export const tail: Command = {
  name: 'tail',
  summary: 'follow the answers on the reply stream as they come',
  usage: '[--stream NAME] [--partials] [--from-start] [--count N] [--json]',
  help: `Prints each answer written to the reply stream from now on, one line each: time, request
id, model, node, routing, tokens, duration and the start of the text (or the error). Ctrl-C stops.

  --stream NAME   another reply stream (default {prefix}:responses, the Brain's)
  --partials      also the partial answers of streamed requests
  --from-start    begin with what the stream holds already
  --count N       stop after N final answers
  --json          each answer document as it is, one per line

Example: orion tail --count 10`,
  options: { stream: { type: 'string' }, partials: { type: 'boolean' }, 'from-start': { type: 'boolean' }, count: { type: 'string' } },
  async run(ctx, values) {
    const stream = str(values, 'stream') ?? ctx.n.responses;
    if (!ctx.n.isReplyStream(stream)) throw new UsageError(`${stream} is not a reply stream (${ctx.n.responses} or ${ctx.n.responses}:...)`);
    const countRaw = str(values, 'count');
    const count = countRaw === undefined ? Infinity : Number(countRaw);
    if (!(count >= 1) || !Number.isInteger(count === Infinity ? 1 : count)) throw new UsageError('--count must be a whole number, at least 1');
    const redis = ctx.redisBlocking();
    let cursor = values['from-start'] ? '0' : ((await redis.xrevrange(stream, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0');
    let finals = 0;
    while (!ctx.signal.aborted && finals < count) {
      const res = (await redis.xread('COUNT', 100, 'BLOCK', 500, 'STREAMS', stream, cursor)) as [string, [string, string[]][]][] | null;
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          cursor = id;
          const raw = fields[fields.indexOf('data') + 1];
          if (raw === undefined || finals >= count) continue;
          let doc: InferenceResponse;
          try {
            doc = JSON.parse(raw) as InferenceResponse;
          } catch {
            ctx.err(`${id}: not JSON`);
            continue;
          }
          if (!doc.done && !values['partials']) continue;
          if (doc.done) finals++;
          ctx.out(values['json'] ? JSON.stringify(doc) : answerLine(doc));
        }
      }
    }
    return 0;
  },
};
