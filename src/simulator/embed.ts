/**
 * Ollama's `POST /api/embed`, answered deterministically: each input's vector is derived from
 * SHA-256 of the model name and the text (the same text gives the same vector, different texts
 * different ones), L2-normalised as Ollama's are. No model load and no queue: a test of the
 * embedding path through the bus needs stable numbers, not a simulated cost.
 */
import { createHash } from 'node:crypto';
import { isRecord, sendError, sendJson, type RequestContext } from './http-util.js';
import { OLLAMA_ERRORS } from './wire.js';

/** Length of every simulated embedding vector. */
export const EMBEDDING_DIMENSIONS = 384;

/** The simulator's vector for `text` under `model`: stable, unit length. */
function embeddingOf(model: string, text: string, dims = EMBEDDING_DIMENSIONS): number[] {
  const out: number[] = [];
  for (let block = 0; out.length < dims; block++) {
    const digest = createHash('sha256').update(`${model}\0${text}\0${block}`).digest();
    for (let i = 0; i + 1 < digest.length && out.length < dims; i += 2) out.push(digest.readUInt16BE(i) / 32767.5 - 1);
  }
  const norm = Math.sqrt(out.reduce((s, x) => s + x * x, 0)) || 1;
  return out.map((x) => x / norm);
}

/** Rough token count of a text, as the simulator counts prompt tokens elsewhere. */
const tokensOf = (text: string): number => Math.max(1, Math.ceil(text.length / 4));

export function handleEmbed(ctx: RequestContext): void {
  const { node, body, res } = ctx;
  const started = process.hrtime.bigint();
  const model = typeof body['model'] === 'string' ? body['model'].trim() : '';
  if (!model) return sendError(res, 400, OLLAMA_ERRORS.modelRequired);
  const raw = body['input'];
  const inputs = typeof raw === 'string' ? [raw] : Array.isArray(raw) && raw.every((x) => typeof x === 'string') ? (raw as string[]) : undefined;
  if (inputs === undefined && raw !== undefined) return sendError(res, 400, 'invalid input type');
  const info = node.installedModel(model);
  if (!info) return sendError(res, 404, OLLAMA_ERRORS.notFound(model));
  node.countEmbed();
  const dims = isRecord(body) && typeof body['dimensions'] === 'number' && body['dimensions'] > 0 ? Math.floor(body['dimensions']) : EMBEDDING_DIMENSIONS;
  const embeddings = (inputs ?? []).map((t) => embeddingOf(info.name, t, dims));
  node.countOutcome('completed');
  sendJson(res, 200, {
    model,
    embeddings,
    total_duration: Number(process.hrtime.bigint() - started),
    load_duration: 0,
    prompt_eval_count: (inputs ?? []).reduce((s, t) => s + tokensOf(t), 0),
  });
}
