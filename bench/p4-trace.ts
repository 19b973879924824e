/**
 * P4's per-step breakdown (`npm run bench -- --rows P4 --trace`): the bridge and the worker,
 * started with ORION_TRACE=1, print a line per step of each request (src/lib/trace.ts); the
 * bench adds the Brain's two. For each step the report gives the median and p99 time since the
 * step before, over every measured request (warm-up left out).
 */
import { fmtNum, percentile } from './lib.js';

/** The steps of one request through ORION, in order. */
export const STEPS = [
  'brain sent',
  'bridge read',
  'job queued',
  'worker took job',
  'start recorded',
  'ollama call',
  'ollama done',
  'final published',
  'brain read answer',
] as const;

const WHAT: Record<string, string> = {
  'bridge read': 'XADD -> the bridge has read and parsed the entry',
  'job queued': 'claim script, routing, BullMQ add (addBulk) done',
  'worker took job': 'BullMQ hands the job to the worker (marker, moveToActive)',
  'start recorded': 'start script (owner check, attempt recorded)',
  'ollama call': 'call prepared (cancel watch, timers)',
  'ollama done': 'HTTP call to the backend (the direct call costs about the same)',
  'final published': 'final answer script (XADD reply, record, deadline)',
  'brain read answer': 'XREAD BLOCK wakes the Brain',
};

/** Monotonic milliseconds, the clock src/lib/trace.ts writes (the same in every process of the machine). */
export const epochMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export class TraceCollector {
  private readonly byRequest = new Map<string, Map<string, number>>();

  step(requestId: string, step: string, t: number): void {
    let steps = this.byRequest.get(requestId);
    if (!steps) this.byRequest.set(requestId, (steps = new Map()));
    if (!steps.has(step)) steps.set(step, t);
  }

  /** A stdout line of a traced process: kept when it is a trace line. */
  line(l: string): void {
    if (!l.startsWith('{"msg":"trace"')) return;
    try {
      const d = JSON.parse(l) as { request_id: string; step: string; t: number };
      this.step(d.request_id, d.step, d.t);
    } catch {
      // not a whole trace line: ignored
    }
  }

  /** Lines of the breakdown; requests `p4-<run>-<i>` with i < warmup are left out. */
  report(warmup: number): string[] {
    const gaps = new Map<string, number[]>(STEPS.slice(1).map((s) => [s, []]));
    const totals: number[] = [];
    for (const [id, steps] of this.byRequest) {
      if (Number(id.split('-').pop()) < warmup) continue;
      if (!STEPS.every((s) => steps.has(s))) continue;
      for (let i = 1; i < STEPS.length; i++) gaps.get(STEPS[i]!)!.push(steps.get(STEPS[i]!)! - steps.get(STEPS[i - 1]!)!);
      totals.push(steps.get('brain read answer')! - steps.get('brain sent')!);
    }
    const ms = (x: number): string => fmtNum(x, 3).padStart(7);
    return [
      `  P4 trace: ${totals.length} requests, time since the step before (ms), p50 and p99:`,
      ...[...gaps].map(([step, xs]) => `    ${step.padEnd(18)} ${ms(percentile(xs, 50))} ${ms(percentile(xs, 99))}   ${WHAT[step] ?? ''}`),
      `    ${'whole path'.padEnd(18)} ${ms(percentile(totals, 50))} ${ms(percentile(totals, 99))}`,
    ];
  }
}
