/**
 * Learning what answers cost: every final answer a worker publishes with Ollama's figures adds
 * an observation to `{p}:observations` in the same script (src/lib/bus.ts). Each bridge reads
 * the stream on from where it stopped after every registry refresh (one XRANGE, at most
 * `batch` entries), so every bridge learns from every answer, whichever bridge placed it; a
 * bridge that starts reads what the stream still holds (the last ~10,000 answers) first.
 */
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
