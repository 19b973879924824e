/**
 * Learning what answers cost: every final answer a worker publishes with Ollama's figures adds
 * an observation to `{p}:observations` in the same script (src/lib/bus.ts). Each bridge reads
 * the stream on from where it stopped after every registry refresh (one XRANGE, at most
 * `batch` entries), so every bridge learns from every answer, whichever bridge placed it; a
 * bridge that starts reads what the stream still holds (the last ~10,000 answers) first.
 */
import { appendFile } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import { parseObservation, type Observation } from '../lib/bus.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';

export interface ObservationReaderOptions {
  redis: Redis;
  n: Names;
  log: Logger;
  /** Called with each observation, in stream order. */
  onObservation: (o: Observation) => void;
  /** Entries read per call. @defaultValue 5000 */
  batch?: number;
}

export class ObservationReader {
  private last = '-';
  private count = 0;

  constructor(private readonly o: ObservationReaderOptions) {}

  /** Observations learned from since start. */
  get learned(): number {
    return this.count;
  }

  /** Read what was added since the last call; returns how many observations were new. */
  async poll(): Promise<number> {
    const { redis, n, onObservation } = this.o;
    const batch = this.o.batch ?? 5000;
    let total = 0;
    for (let round = 0; round < 4; round++) {
      const start = this.last === '-' ? '-' : `(${this.last}`;
      const entries = await redis.xrange(n.observations, start, '+', 'COUNT', batch);
      for (const [id, fields] of entries) {
        this.last = id;
        const i = fields.indexOf('data');
        const obs = i >= 0 && i % 2 === 0 ? parseObservation(fields[i + 1] ?? '') : undefined;
        if (obs === undefined) continue;
        try {
          onObservation(obs);
          total++;
        } catch (err) {
          this.o.log.warn({ err: (err as Error).message }, 'observation not learned');
        }
      }
      if (entries.length < batch) break;
    }
    this.count += total;
    return total;
  }
}

/**
 * `--record-arrivals FILE`: one JSON line per answered request, for the policy simulator's
 * replay (`src/policy-sim/workload.ts`): `{"at_ms", "model", "prompt_tokens", "eval_tokens"}`,
 * `at_ms` its arrival (answer time - Ollama's total - time in the queue), never content. Loads
 * without generation (keep-alive jobs, preloads) are not arrivals and are left out.
 */
export class ArrivalRecorder {
  private lines: string[] = [];

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {}

  add(o: Observation): void {
    if (!(typeof o.eval_count === 'number' && o.eval_count > 0)) return;
    const at = Math.round(o.at - (o.total_duration_ms ?? 0) - (o.queue_ms ?? 0));
    const line: Record<string, unknown> = { at_ms: at, model: o.model };
    if (o.prompt_eval_count !== undefined) line['prompt_tokens'] = o.prompt_eval_count;
    line['eval_tokens'] = o.eval_count;
    this.lines.push(JSON.stringify(line));
  }

  /** Append what was added since the last flush. */
  async flush(): Promise<void> {
    if (this.lines.length === 0) return;
    const text = `${this.lines.join('\n')}\n`;
    this.lines = [];
    try {
      await appendFile(this.file, text);
    } catch (err) {
      this.log.warn({ file: this.file, err: (err as Error).message }, 'arrivals not recorded');
    }
  }
}
