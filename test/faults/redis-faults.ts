/**
 * Helpers of the rows about Redis itself (30-33): a Brain that counts which of its sends Redis
 * accepted (a Redis out of memory refuses some), a check that every accepted request got
 * exactly one final answer and nothing was left behind, and a worker on a skewed clock.
 */
import { execFileSync, spawn } from 'node:child_process';
import { expect } from 'vitest';
import type { InferenceResponse } from '../../src/contracts/types.js';
import { BIN, FAST, Proc, sleep, tally, waitFor, type World } from './harness.js';

/** The Brain sending steadily, keeping only the ids Redis accepted (see `startAcceptedFlow`). */
export interface AcceptedFlow {
  /** Ids whose XADD succeeded. */
  readonly accepted: string[];
  /** Sends Redis refused (e.g. OOM). */
  readonly refused: number;
  stop(): Promise<void>;
}

/** `perBatch` requests every `everyMs`, each XADD on its own, until `stop()`. */
export function startAcceptedFlow(w: World, label: string, o: { everyMs: number; perBatch?: number; request?: Record<string, unknown> }): AcceptedFlow {
  const accepted: string[] = [];
  let refused = 0;
  let sending = true;
  const sends: Promise<void>[] = [];
  const sendOne = async (id: string): Promise<void> => {
    const doc = { request_id: id, model: 'gemma3:1b', prompt: `question ${id}`, ...o.request };
    try {
      await w.admin.xadd(w.n.requests, '*', 'data', JSON.stringify(doc));
      accepted.push(id);
    } catch {
      refused++;
    }
  };
  const loop = (async () => {
    for (let i = 0; sending && w.admin.status !== 'end'; i++) {
      for (let k = 0; k < (o.perBatch ?? 2); k++) sends.push(sendOne(`${label}-${i}-${k}`));
      await sleep(o.everyMs);
    }
  })();
  return {
    accepted,
    get refused() {
      return refused;
    },
    async stop() {
      sending = false;
      await loop;
      await Promise.all(sends);
    },
  };
}

/** The outcome of a run: every accepted id answered once, without an error. */
export interface Outcome {
  answers: Map<string, InferenceResponse[]>;
  errors: string[];
  twice: string[];
}

export async function settle(w: World, ids: string[], timeoutMs = 60_000): Promise<Outcome> {
  const answers = await w.allAnswered(ids, timeoutMs);
  const t = tally(answers, ids);
  return { answers, errors: t.errors, twice: t.twice };
}

/** Nothing left unacknowledged in `{p}:requests`, nothing left in the node queues. */
export async function drained(w: World, nodes: string[]): Promise<void> {
  await waitFor('request stream fully acked', async () => ((await w.admin.xpending(w.n.requests, 'orion-inference-router')) as [number])[0] === 0, 20_000);
  for (const id of nodes) {
    await waitFor(`${id} queue empty`, async () => {
      const c = await w.queueCounts(id);
      return c.wait + c.active + c.prioritized + c.delayed === 0;
    }, 20_000);
  }
}

/** Fails with the error answers listed. */
export function expectNoErrors(o: Outcome): void {
  expect(o.errors).toEqual([]);
}

/**
 * A worker whose machine clock is `offset` off (`faketime -f +60s`: every clock call of the
 * process is shifted; libfaketime, Debian's `faketime`), with the fault suite's intervals.
 */
export function startSkewedWorker(w: World, id: string, offset: string, extra: string[] = []): Proc {
  const args = [
    ...w.common(),
    '--node-id', id,
    '--ollama-host', w.simUrl(id),
    '--concurrency', '2',
    '--heartbeat-interval', FAST.heartbeat,
    '--health-ttl', FAST.healthTtl,
    '--lock-duration', FAST.lockDuration,
    ...extra,
  ];
  const child = spawn('faketime', ['-f', offset, process.execPath, BIN.worker, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env } });
  const p = new Proc(`worker ${id} (clock ${offset})`, child);
  w.procs.add(p);
  return p;
}

/** Fails the row at once when Debian's `faketime` is missing (.ci/run installs it). */
export function requireFaketime(): void {
  try {
    execFileSync('faketime', ['-f', '+0s', 'true'], { stdio: 'ignore' });
  } catch {
    throw new Error('faketime is not installed: apt-get install faketime (.ci/run does)');
  }
}
