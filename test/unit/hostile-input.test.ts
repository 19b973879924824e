import { describe, expect, it } from 'vitest';
import { MAX_REQUEST_DEPTH, jsonTextDepth, parseRequestEntry, requestLimitProblem, valueDepth } from '../../src/contracts/index.js';
import { misdelivery, recordTtlSeconds, responseJson } from '../../src/lib/bus.js';
import { createLogger } from '../../src/lib/logger.js';
import { names } from '../../src/lib/names.js';
import { arrivalMs, setLongTimeout } from '../../src/lib/time.js';
import { isJobFault } from '../../src/router/dispatcher.js';
import { INSTANCE_WINDOW_MS, InstanceTracker, JUNK_WARN_EVERY_MS, JunkWarnings } from '../../src/router/registry-watch.js';
import { DUPLICATE_WINDOW_MS, DuplicateWatch, instanceIdOf } from '../../src/worker/duplicates.js';
import { checkJobData } from '../../src/worker/job-data.js';

const n = names('orion:inference');
const nested = (depth: number): string => '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);
const deepRequest = (depth: number): string => `{"request_id":"deep","model":"m","prompt":"p","metadata":${nested(depth - 1)}}`;

describe('nesting is counted without recursion', () => {
  it('counts the levels of a JSON text, brackets in strings not counting', () => {
    expect(jsonTextDepth('{}')).toBe(1);
    expect(jsonTextDepth('{"a":[1,{"b":2}]}')).toBe(3);
    expect(jsonTextDepth('{"a":"[[[{{{\\"[[["}')).toBe(1);
    expect(jsonTextDepth('"x"')).toBe(0);
    expect(jsonTextDepth(nested(10_000))).toBe(10_000);
  });

  it('stops counting once past the limit', () => {
    expect(jsonTextDepth(nested(10_000), 64)).toBe(65);
  });

  it('counts the levels of a parsed value the same way, 10,000 deep included', () => {
    for (const text of ['{}', '{"a":[1,{"b":2}]}', '[[],[[[]]]]', nested(200)]) expect(valueDepth(JSON.parse(text)), text).toBe(jsonTextDepth(text));
    expect(valueDepth(JSON.parse(nested(10_000)), 64)).toBe(65);
    expect(valueDepth('text')).toBe(0);
  });

  it('refuses a request deeper than 64 levels and keeps its text, cut, for the dead letter', () => {
    const ok = parseRequestEntry(['data', deepRequest(MAX_REQUEST_DEPTH)], n);
    expect(ok.ok).toBe(true);
    const p = parseRequestEntry(['data', deepRequest(10_000)], n);
    expect(p).toMatchObject({ ok: false, code: 'invalid_request', requestId: 'deep' });
    if (p.ok) return;
    expect(p.reason).toMatch(/more than 64 levels/);
    expect(typeof p.original).toBe('string');
    // Its dead letter is written: test/integration/dead-letter.test.ts.
  });
});

describe('the 1 MiB limit has one definition: the data text', () => {
  // 400 KB of 1e9: ten characters each once serialised again.
  const numbers = `{"request_id":"nums","model":"m","prompt":"p","options":{"x":[${Array.from({ length: 100_000 }, () => '1e9').join(',')}]}}`;

  it('the bridge accepts it and measures the text', () => {
    const p = parseRequestEntry(['data', numbers], n);
    expect(p.ok).toBe(true);
    expect(p.ok && p.bytes).toBe(Buffer.byteLength(numbers));
    expect(JSON.stringify(JSON.parse(numbers)).length).toBeGreaterThan(1024 * 1024);
  });

  it('the worker judges the job by the bridge\'s measure, not by re-serialising', () => {
    const request = JSON.parse(numbers) as Record<string, unknown>;
    const checked = checkJobData({ request, entry_id: '1-0', request_bytes: Buffer.byteLength(numbers) }, 'req_nums', n);
    expect(checked.ok, checked.ok ? '' : checked.reason).toBe(true);
    // Without the bridge's figure, only then the re-serialised text is measured.
    expect(checkJobData({ request, entry_id: '1-0' }, 'req_nums', n).ok).toBe(false);
  });

  it('the worker refuses a job nested too deep without overflowing the stack', () => {
    const request = JSON.parse(deepRequest(10_000)) as Record<string, unknown>;
    const checked = checkJobData({ request, entry_id: '1-0' }, 'req_deep', n);
    expect(checked).toMatchObject({ ok: false, requestId: 'deep' });
    expect(checked.ok === false && checked.reason).toMatch(/more than 64 levels/);
  });

  it('one function words both limits', () => {
    expect(requestLimitProblem(1024 * 1024, 64)).toBeUndefined();
    expect(requestLimitProblem(1024 * 1024 + 1, 1)).toMatch(/over the limit of 1048576/);
    expect(requestLimitProblem(10, 65)).toMatch(/more than 64/);
  });
});

describe('arrival time is never later than the moment the entry is read', () => {
  it('believes an entry id from the past and not one from the future', () => {
    expect(arrivalMs('1000-0', 5000)).toBe(1000);
    const month = 30 * 24 * 3600_000;
    expect(arrivalMs(`${5000 + month}-0`, 5000)).toBe(5000);
  });
});

describe('long timeouts', () => {
  it('a request record outlives its deadline by 24 h', () => {
    expect(recordTtlSeconds(86_400_000)).toBe(2 * 24 * 3600);
    expect(recordTtlSeconds(undefined)).toBe(24 * 3600 + 600);
    expect(recordTtlSeconds(1)).toBe(24 * 3600 + 1);
  });

  it('a timer over 2^31-1 ms does not fire at once', async () => {
    let fired = 0;
    const t = setLongTimeout(() => fired++, 2 ** 31 - 1 + 10_000);
    await new Promise((r) => setTimeout(r, 50));
    t.clear();
    expect(fired).toBe(0);
    const short = setLongTimeout(() => fired++, 5);
    await new Promise((r) => setTimeout(r, 50));
    short.clear();
    expect(fired).toBe(1);
  });
});

describe('serialising never fails for one bad document', () => {
  it('an answer whose metadata cannot be serialised loses the metadata only', () => {
    const metadata = JSON.parse(nested(10_000)) as Record<string, unknown>;
    const doc = JSON.parse(responseJson({ request_id: 'x', done: true, response: 'hi', metadata, created_at: 'now' })) as Record<string, unknown>;
    expect(doc).toMatchObject({ request_id: 'x', response: 'hi' });
    expect(doc).not.toHaveProperty('metadata');
  });

  it('says why an answer missed its reply stream', () => {
    expect(misdelivery(n, 'orion:inference:responses:x', 'reply_to')).toBeUndefined();
    expect(misdelivery(n, 'orion:inference:responses:x', 'default')).toMatch(/not a stream.*orion:inference:responses instead/);
    expect(misdelivery(n, 'orion:inference:responses:x', 'nowhere')).toMatch(/request record only/);
  });
});

describe('a failed add is the job\'s fault only when it is about the job', () => {
  it('tells serialisation errors and error replies from Redis being away', () => {
    expect(isJobFault(new RangeError('Maximum call stack size exceeded'))).toBe(true);
    expect(isJobFault(new TypeError('Do not know how to serialize a BigInt'))).toBe(true);
    const reply = (m: string): Error => Object.assign(new Error(m), { name: 'ReplyError' });
    expect(isJobFault(reply('ERR Error running script'))).toBe(true);
    expect(isJobFault(reply('OOM command not allowed when used memory > maxmemory'))).toBe(false);
    expect(isJobFault(reply('LOADING Redis is loading the dataset in memory'))).toBe(false);
    expect(isJobFault(new Error('Connection is closed.'))).toBe(false);
    expect(isJobFault(Object.assign(new Error('adding took longer than 5000 ms'), { name: 'TimeoutError' }))).toBe(false);
  });
});

describe('junk in the registry is warned about now and then, not at every refresh', () => {
  it('warns when first seen, then only after the interval, and again when it comes back', () => {
    const lines: unknown[] = [];
    const log = createLogger({ level: 'warn', sink: (l) => lines.push(l) });
    const j = new JunkWarnings();
    expect(j.see(['evil:node', ''], 0, log, n)).toEqual(['evil:node', '']);
    for (let t = 1000; t < JUNK_WARN_EVERY_MS; t += 1000) expect(j.see(['evil:node', ''], t, log, n)).toEqual([]);
    expect(j.see(['evil:node', '', 'x:y'], JUNK_WARN_EVERY_MS - 1, log, n)).toEqual(['x:y']);
    expect(j.see(['evil:node', ''], JUNK_WARN_EVERY_MS, log, n)).toEqual(['evil:node', '']);
    expect(j.see([], JUNK_WARN_EVERY_MS + 1, log, n)).toEqual([]);
    expect(j.see(['x:y'], JUNK_WARN_EVERY_MS + 2, log, n)).toEqual(['x:y']);
    expect(lines).toHaveLength(4);
  });
});

describe('two workers under one node id are noticed', () => {
  const silent = createLogger({ level: 'silent' });
  const doc = (instance: string, extra: Record<string, unknown> = {}): string => JSON.stringify({ node_id: 'pi-a', instance_id: instance, ...extra });

  it('the worker notices a document of another instance it replaces, warning once a minute', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', sink: (l) => lines.push(l) });
    const w = new DuplicateWatch('me');
    expect(w.replaced(null, 0, 'pi-a', log)).toBeUndefined();
    expect(w.replaced(doc('me'), 1000, 'pi-a', log)).toBeUndefined();
    expect(w.replaced(doc('other'), 2000, 'pi-a', log)).toEqual(['other']);
    expect(w.replaced(doc('other'), 3000, 'pi-a', log)).toBeUndefined();
    expect(w.current(3000)).toEqual(['other']);
    expect(w.current(3000 + DUPLICATE_WINDOW_MS + 1)).toEqual([]);
    expect(lines).toHaveLength(1);
    expect(instanceIdOf('not json')).toBeUndefined();
  });

  it('the bridge tells a restart (A, B) from two processes (A, B, A)', () => {
    const t = new InstanceTracker();
    const see = (instance: string, now: number, extra: Record<string, unknown> = {}) => t.see(new Map([['pi-a', JSON.parse(doc(instance, extra)) as Record<string, unknown>]]), now, silent);
    expect(see('a', 0).size).toBe(0);
    expect(see('a', 1000).size).toBe(0);
    expect(see('b', 2000).size).toBe(0); // a restart
    expect(see('b', 3000).size).toBe(0);
    expect(see('a', 4000).get('pi-a')).toEqual(['a', 'b']); // back to a: two processes
    expect(see('b', 5000).get('pi-a')).toEqual(['a', 'b']);
    expect(see('b', 5000 + 2 * INSTANCE_WINDOW_MS).size).toBe(0);
    // What a worker reports counts at once.
    expect(see('c', 6000 + 2 * INSTANCE_WINDOW_MS, { duplicate_instances: ['d'] }).get('pi-a')).toEqual(['c', 'd']);
  });
});
