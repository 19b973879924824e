/** node:http plumbing shared by the Ollama API and the admin endpoints. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Faults } from './faults.js';
import type { SimulatedNode } from './node.js';

export interface RequestContext {
  node: SimulatedNode;
  req: IncomingMessage;
  res: ServerResponse;
  /** The parsed JSON body (an empty object for GET/HEAD). */
  body: Record<string, unknown>;
  /** Fires when the client goes away before the answer is complete. */
  signal: AbortSignal;
  /** monoNow() when the request arrived. */
  startedAt: number;
  /** The fault knobs as they were when the request arrived. */
  faults: Faults;
}

/** Thrown by readJson: the status and Ollama-style message to answer with. */
export class BadRequest extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY = 32 * 1024 * 1024;

export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_BODY) throw new BadRequest(413, 'http: request body too large');
    chunks.push(buf);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new BadRequest(400, 'missing request body');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new BadRequest(400, `invalid character in request body: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new BadRequest(400, 'json: cannot unmarshal request body into a JSON object');
  }
  return parsed as Record<string, unknown>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, message: string): void {
  sendJson(res, status, { error: message });
}

export function sendText(res: ServerResponse, status: number, text: string, head = false): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(head ? undefined : text);
}

/** Start an NDJSON stream (once) and write one object as a line. */
export function writeLine(res: ServerResponse, obj: unknown): void {
  if (res.destroyed || res.writableEnded) return;
  if (!res.headersSent) res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
  res.write(JSON.stringify(obj) + '\n');
}

/** Go's time.Time JSON form in UTC. */
export const nowIso = (): string => new Date().toISOString();

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
