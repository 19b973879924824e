import { describe, expect, it } from 'vitest';
import { names } from '../../src/lib/names.js';
import { OrionError } from '../../src/lib/errors.js';
import { codeForStatus, mapOllamaError } from '../../src/worker/errors.js';
import { ollamaCallFor } from '../../src/worker/generate.js';
import { checkJobData } from '../../src/worker/job-data.js';

/** What ollama-js throws for a non-2xx answer (its ResponseError class is not exported). */
function responseError(status: number, message: string): Error {
  const e = new Error(message);
  e.name = 'ResponseError';
  Object.assign(e, { error: message, status_code: status });
  return e;
}

/** What Node's fetch throws when nothing listens. */
function refused(): Error {
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:11434'), { code: 'ECONNREFUSED' });
  return new TypeError('fetch failed', { cause });
}

describe('Ollama failures as ORION error codes', () => {
  it.each([
    [404, 'model_not_found', false],
    [429, 'overloaded', true],
    [503, 'overloaded', true],
    [500, 'backend_error', true],
    [502, 'backend_error', true],
    [504, 'backend_error', true],
    [400, 'invalid_request', false],
  ] as const)('HTTP %i is %s (retried elsewhere: %s)', (status, code, retryable) => {
    expect(codeForStatus(status)).toBe(code);
    const f = mapOllamaError(responseError(status, "model 'nope' not found"));
    expect(f).toMatchObject({ code, retryable, unreachable: false, status });
    expect(f.message).toContain(String(status));
    expect(f.message).toContain("model 'nope' not found");
  });

  it('connection refused is backend_error, retried, and marks Ollama unreachable', () => {
    expect(mapOllamaError(refused())).toMatchObject({ code: 'backend_error', retryable: true, unreachable: true });
    expect(mapOllamaError(refused()).message).toMatch(/ECONNREFUSED/);
  });

  it('finds the refusal inside an AggregateError (both localhost addresses refused)', () => {
    const agg = Object.assign(new AggregateError([
      Object.assign(new Error('connect ECONNREFUSED ::1:11434'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:11434'), { code: 'ECONNREFUSED' }),
    ]), { code: 'ECONNREFUSED' });
    expect(mapOllamaError(new TypeError('fetch failed', { cause: agg }))).toMatchObject({ unreachable: true, code: 'backend_error' });
  });

  it('a reset or a stream cut short is backend_error but Ollama was reachable', () => {
    const reset = new TypeError('terminated', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) });
    expect(mapOllamaError(reset)).toMatchObject({ code: 'backend_error', retryable: true, unreachable: false });
    const econnreset = new TypeError('fetch failed', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) });
    expect(mapOllamaError(econnreset)).toMatchObject({ code: 'backend_error', unreachable: false });
    expect(mapOllamaError(new Error('Did not receive done or success response in stream.'))).toMatchObject({ code: 'backend_error', retryable: true });
  });

  it('keeps the code of an OrionError', () => {
    expect(mapOllamaError(new OrionError('overloaded', 'busy'))).toMatchObject({ code: 'overloaded', retryable: true });
  });
});

describe('the Ollama request built from an ORION request', () => {
  it('a prompt becomes /api/generate, streamed, with options, format and keep_alive unchanged', () => {
    const call = ollamaCallFor({
      request_id: 'r',
      model: 'gemma3:1b',
      prompt: 'Why is the sky blue?',
      system: 'Be brief.',
      options: { temperature: 0, num_predict: 5, stop: ['\n'] },
      format: { type: 'object' },
      keep_alive: '24h',
      stream: false,
    });
    expect(call).toEqual({
      endpoint: 'generate',
      body: {
        model: 'gemma3:1b',
        prompt: 'Why is the sky blue?',
        options: { temperature: 0, num_predict: 5, stop: ['\n'] },
        format: { type: 'object' },
        keep_alive: '24h',
        stream: true,
        system: 'Be brief.',
      },
    });
  });

  it('messages become /api/chat with only role and content: nothing path-like (images) reaches ollama-js', () => {
    const messages = [{ role: 'user', content: 'hi', images: ['/etc/passwd'] }] as unknown as { role: 'user'; content: string }[];
    const call = ollamaCallFor({ request_id: 'r', model: 'm', messages, keep_alive: 0 });
    expect(call).toEqual({ endpoint: 'chat', body: { model: 'm', messages: [{ role: 'user', content: 'hi' }], keep_alive: 0, stream: true } });
    expect(JSON.stringify(call)).not.toContain('images');
  });
});

describe('job data from the bridge', () => {
  const n = names('orion:inference');
  const good = { request: { request_id: 'r-1', model: 'm', prompt: 'p' }, entry_id: '1700000000000-0', seen_at: 1, deadline: 2, attempt: 0, max_attempts: 3, routing: 'sticky', tried: [] };

  it('passes a well-formed job through', () => {
    expect(checkJobData(good, 'req_r-1', n)).toEqual({ ok: true, data: good });
  });

  it('refuses an invalid request, keeping its id and reply stream so it can be answered', () => {
    const bad = checkJobData({ ...good, request: { request_id: 'r-1', model: 'm', reply_to: 'orion:inference:responses:me' } }, 'req_r-1', n);
    expect(bad).toMatchObject({ ok: false, requestId: 'r-1', replyTo: 'orion:inference:responses:me' });
  });

  it('refuses a request over 1 MiB', () => {
    const bad = checkJobData({ ...good, request: { request_id: 'r-1', model: 'm', prompt: 'x'.repeat(1024 * 1024) } }, 'req_r-1', n);
    expect(bad).toMatchObject({ ok: false, reason: expect.stringMatching(/over the limit/) });
  });

  it('takes the request id from the job id when the data has none usable', () => {
    expect(checkJobData('garbage', 'req_r-9', n)).toMatchObject({ ok: false, requestId: 'r-9' });
    expect(checkJobData(null, undefined, n)).toMatchObject({ ok: false });
  });

  it('rebuilds fields the bridge always sets from the entry id', () => {
    const c = checkJobData({ request: { request_id: 'r', model: 'm', prompt: 'p', timeout_ms: 1000 }, entry_id: '1700000000000-0' }, 'req_r', n);
    expect(c).toMatchObject({ ok: true, data: { seen_at: 1_700_000_000_000, deadline: 1_700_000_001_000, attempt: 0, max_attempts: 1 } });
  });
});
