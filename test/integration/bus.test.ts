import { describe, expect, it } from 'vitest';
import {
  DEFAULT_TIMEOUT_MS,
  claimRequests,
  deadlinesKey,
  errorResponse,
  publishFinal,
  publishPartial,
  setOwners,
  startJob,
  type InferenceJobData,
} from '../../src/lib/bus.js';
import { Queue } from 'bullmq';
import { failRequest } from '../../src/lib/failures.js';
import { jobIdFor, names } from '../../src/lib/names.js';
import { testPrefix } from '../helpers/redis.js';
import { redisForFile } from '../helpers/redis-file.js';

const db = redisForFile();

async function claim(n: ReturnType<typeof names>, id: string, entry: string, replyTo: string) {
  const [result] = await claimRequests(db.client, n, [{ requestId: id, entryId: entry, replyTo, deadline: Date.now() + 60_000, timeoutMs: DEFAULT_TIMEOUT_MS }]);
  if (result === undefined) throw new Error(`no claim result for ${id}`);
  return result;
}

async function streamDocs(key: string): Promise<Record<string, unknown>[]> {
  const entries = await db.client.xrange(key, '-', '+');
  return entries.map(([, f]) => JSON.parse(f[1]!) as Record<string, unknown>);
}

describe('the request record', () => {
  it('knows a new id, a re-read of the same entry, and a duplicate from another entry', async () => {
    const n = names(testPrefix('bus'));
    expect(await claim(n, 'a', '1-0', n.responses)).toEqual({ kind: 'new' });
    expect(await claim(n, 'a', '1-0', n.responses)).toEqual({ kind: 'same' });
    expect(await claim(n, 'a', '2-0', `${n.responses}:other`)).toEqual({ kind: 'waiting' });
    expect(await db.client.zscore(deadlinesKey(n), n.requestKey('a'))).not.toBeNull();
    expect(await db.client.ttl(n.requestKey('a'))).toBeGreaterThan(23 * 3600);
  });

  it('answers the first reply stream and every waiter once, and a later duplicate gets the stored final', async () => {
    const n = names(testPrefix('bus'));
    await claim(n, 'b', '1-0', n.responses);
    await claim(n, 'b', '2-0', `${n.responses}:late`);
    const final = { request_id: 'b', done: true, response: 'hi', created_at: '2026-01-01T00:00:00Z' };
    expect(await publishFinal(db.client, n, n.responses, final)).toBe(true);
    expect(await publishFinal(db.client, n, n.responses, final)).toBe(false);
    expect(await streamDocs(n.responses)).toEqual([final]);
    expect(await streamDocs(`${n.responses}:late`)).toEqual([final]);
    expect(await db.client.zscore(deadlinesKey(n), n.requestKey('b'))).toBeNull();
    const again = await claim(n, 'b', '3-0', `${n.responses}:third`);
    expect(again.kind).toBe('done');
    expect(again.kind === 'done' && JSON.parse(again.final)).toEqual(final);
  });

  it('suppresses a final and partials from a node that no longer owns the job', async () => {
    const n = names(testPrefix('bus'));
    await claim(n, 'c', '1-0', n.responses);
    await setOwnerNow(n, 'c', 'pi-16g');
    const partial = { request_id: 'c', done: false, response: 'x', created_at: '2026-01-01T00:00:00Z' };
    expect(await publishPartial(db.client, n, n.responses, partial, 'pi-8g')).toBe(false);
    expect(await publishFinal(db.client, n, n.responses, errorResponse('c', 'timeout', 'late'), 'pi-8g')).toBe(false);
    expect(await publishPartial(db.client, n, n.responses, partial, 'pi-16g')).toBe(true);
    expect(await publishFinal(db.client, n, n.responses, errorResponse('c', 'timeout', 'late'), 'pi-16g')).toBe(true);
    expect(await publishPartial(db.client, n, n.responses, partial, 'pi-16g')).toBe(false);
    const docs = await streamDocs(n.responses);
    expect(docs.map((d) => d['done'])).toEqual([false, true]);
  });
});

describe('starting a job', () => {
  const data = (id: string, attempt: number): InferenceJobData => ({
    request: { request_id: id, model: 'm', prompt: 'p' },
    entry_id: '1-0',
    seen_at: 1,
    deadline: Date.now() + 60_000,
    attempt,
    max_attempts: 3,
    routing: 'sticky',
    tried: [],
  });

  it('records the attempt in the BullMQ job only for a copy that may run, as Job.updateData would', async () => {
    const n = names(testPrefix('bus'));
    const queue = new Queue<InferenceJobData>('pi-8g', { prefix: n.nodeQueuePrefix, connection: db.client });
    try {
      const add = async (id: string) => {
        const job = await queue.add('inference', data(id, 0), { jobId: jobIdFor(id) });
        return { job, key: queue.toKey(job.id!) };
      };
      const attemptOf = async (id: string) => (await queue.getJob(jobIdFor(id)))!.data.attempt;

      const free = await add('s1');
      await setOwnerNow(n, 's1', 'pi-8g');
      expect(await startJob(db.client, n, 's1', free.key, 'pi-8g', data('s1', 1))).toEqual({ kind: 'run' });
      expect(await attemptOf('s1')).toBe(1);

      const moved = await add('s2');
      await setOwnerNow(n, 's2', 'pi-16g');
      expect(await startJob(db.client, n, 's2', moved.key, 'pi-8g', data('s2', 1))).toEqual({ kind: 'moved', owner: 'pi-16g' });
      expect(await attemptOf('s2')).toBe(0);

      const answered = await add('s3');
      await db.client.hset(n.requestKey('s3'), 'node', 'pi-8g', 'final', '{"done":true}');
      expect(await startJob(db.client, n, 's3', answered.key, 'pi-8g', data('s3', 1))).toEqual({ kind: 'done', final: '{"done":true}' });
      expect(await attemptOf('s3')).toBe(0);

      // No owner recorded (placed before owners existed) runs; a job hash that is gone is said.
      const unowned = await add('s4');
      expect(await startJob(db.client, n, 's4', unowned.key, 'pi-8g', data('s4', 1))).toEqual({ kind: 'run' });
      expect(await startJob(db.client, n, 's5', queue.toKey(jobIdFor('s5')), 'pi-8g', data('s5', 1))).toEqual({ kind: 'gone' });
      expect(await db.client.exists(queue.toKey(jobIdFor('s5')))).toBe(0);
    } finally {
      await queue.close();
    }
  });
});

async function setOwnerNow(n: ReturnType<typeof names>, id: string, node: string): Promise<void> {
  await setOwners(db.client, n, [{ requestId: id, nodeId: node }]);
}

describe('giving a request up', () => {
  it('answers once and dead-letters once, however many parts give the same request up', async () => {
    const n = names(testPrefix('fail'));
    await claim(n, 'a', '1-0', n.responses);
    const f = { requestId: 'a', replyTo: n.responses, code: 'timeout' as const, message: 'late', answer: { model: 'm' }, letter: { entry_id: '1-0', node_id: 'pi' } };
    const results = await Promise.all([failRequest(db.client, n, f), failRequest(db.client, n, f)]);
    expect(results.sort()).toEqual([false, true]);
    const answers = await streamDocs(n.responses);
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ request_id: 'a', model: 'm', done: true, error: { code: 'timeout', message: 'late' } });
    const letters = await streamDocs(n.deadletter);
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ reason: 'late', error_code: 'timeout', request_id: 'a', entry_id: '1-0', node_id: 'pi' });
    expect(letters[0]).not.toHaveProperty('attempt');
  });

  it('writes nothing for a node that no longer owns the job', async () => {
    const n = names(testPrefix('fail'));
    await claim(n, 'b', '1-0', n.responses);
    await setOwnerNow(n, 'b', 'pi-16g');
    const f = { requestId: 'b', replyTo: n.responses, code: 'backend_error' as const, message: 'down' };
    expect(await failRequest(db.client, n, f, { nodeId: 'pi-8g' })).toBe(false);
    expect(await streamDocs(n.responses)).toEqual([]);
    expect(await streamDocs(n.deadletter)).toEqual([]);
  });

  it('answers cancelled without a dead letter', async () => {
    const n = names(testPrefix('fail'));
    await claim(n, 'c', '1-0', n.responses);
    expect(await failRequest(db.client, n, { requestId: 'c', replyTo: n.responses, code: 'cancelled', message: 'asked' })).toBe(true);
    expect((await streamDocs(n.responses)).map((d) => d['error'])).toEqual([{ code: 'cancelled', message: 'asked' }]);
    expect(await streamDocs(n.deadletter)).toEqual([]);
  });

  it('dead-letters an entry with no request id without answering it', async () => {
    const n = names(testPrefix('fail'));
    expect(await failRequest(db.client, n, { requestId: undefined, replyTo: n.responses, code: 'invalid_request', message: 'not JSON', letter: { entry_id: '9-0', request: 'x' } })).toBe(false);
    expect(await streamDocs(n.responses)).toEqual([]);
    expect(await streamDocs(n.deadletter)).toMatchObject([{ reason: 'not JSON', error_code: 'invalid_request', entry_id: '9-0', request: 'x' }]);
  });

  it('refuses an entry without touching a record, to the default stream when reply_to is not a stream', async () => {
    const n = names(testPrefix('fail'));
    const replyTo = `${n.responses}:taken`;
    await db.client.set(replyTo, 'not a stream');
    const f = { requestId: 'd', replyTo, code: 'invalid_request' as const, message: 'bad', letter: { entry_id: '2-0' } };
    expect(await failRequest(db.client, n, f, { as: 'refusal' })).toBe(true);
    expect(await failRequest(db.client, n, f, { as: 'refusal' })).toBe(true);
    expect(await db.client.exists(n.requestKey('d'))).toBe(0);
    expect((await streamDocs(n.responses)).map((d) => d['request_id'])).toEqual(['d', 'd']);
    expect((await streamDocs(n.deadletter)).map((d) => d['entry_id'])).toEqual(['2-0', '2-0']);
  });
});
