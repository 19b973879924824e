/**
 * The demo's scripted Brain: a realistic mix of requests, sent with XADD exactly as ORION's
 * Brain sends them, and the answers read back from its own reply stream.
 */
import type { Redis } from 'ioredis';
import type { InferenceRequest, InferenceResponse } from '../contracts/types.js';
import type { Names } from '../lib/names.js';

export interface ScriptStep {
  weight: number;
  make(i: number): Omit<InferenceRequest, 'request_id' | 'reply_to'>;
}

/** What a robot's Brain asks: quick status lines, longer analyses, chats, now and then a rare model. */
export const SCRIPT: readonly ScriptStep[] = [
  {
    weight: 5,
    make: (i) => ({ model: 'gemma3:1b', prompt: `Status line for joint ${i % 12}: is the reading normal?`, options: { num_predict: 24, seed: i } }),
  },
  {
    weight: 2,
    make: (i) => ({
      model: 'llama3.2:3b',
      messages: [
        { role: 'system', content: 'You are the analysis module of the ORION robot.' },
        { role: 'user', content: `Analyse gait log ${i} and name the likeliest cause of drift.` },
      ],
      stream: true,
      options: { num_predict: 32, seed: i },
      priority: 7,
    }),
  },
  {
    weight: 1,
    make: (i) => ({ model: 'gemma3:1b', prompt: `Summarise event ${i} in JSON.`, format: 'json', options: { num_predict: 16, seed: i }, priority: 8 }),
  },
  {
    weight: 0.4,
    make: (i) => ({ model: 'qwen2.5:0.5b', prompt: `Classify utterance ${i}: command or chatter?`, options: { num_predict: 8, seed: i } }),
  },
  {
    weight: 0.1,
    make: () => ({ model: 'mistral:7b', prompt: 'A model no Pi has installed.' }),
  },
];

export interface Outcome {
  requestId: string;
  model: string;
  sentAt: number;
  final?: InferenceResponse;
  doneAt?: number;
}

function pickStep(r: number): ScriptStep {
  const total = SCRIPT.reduce((s, x) => s + x.weight, 0);
  let x = r * total;
  for (const step of SCRIPT) {
    x -= step.weight;
    if (x <= 0) return step;
  }
  return SCRIPT[0]!;
}

export class Brain {
  readonly outcomes = new Map<string, Outcome>();
  private readonly replyTo: string;
  private seq = 0;
  private cursor = '0';
  private stopped = false;
  private seed = 42;

  constructor(
    private readonly send: Redis,
    private readonly listen: Redis,
    private readonly n: Names,
    private readonly onFinal: (o: Outcome) => void,
  ) {
    this.replyTo = `${n.responses}:demo-brain`;
  }

  private random(): number {
    this.seed = (this.seed * 1664525 + 1013904223) >>> 0;
    return this.seed / 2 ** 32;
  }

  async sendOne(): Promise<void> {
    const i = ++this.seq;
    const step = pickStep(this.random());
    const requestId = `demo-${Date.now().toString(36)}-${i}`;
    const doc: InferenceRequest = { ...step.make(i), request_id: requestId, reply_to: this.replyTo, source: 'demo-brain', timeout_ms: 120_000 };
    this.outcomes.set(requestId, { requestId, model: doc.model, sentAt: Date.now() });
    await this.send.xadd(this.n.requests, '*', 'data', JSON.stringify(doc));
  }

  /** Read answers until stop(); partials are counted but only finals are reported. */
  async listenLoop(): Promise<void> {
    await this.listen.del(this.replyTo);
    while (!this.stopped) {
      const res = (await this.listen.xread('COUNT', 200, 'BLOCK', 500, 'STREAMS', this.replyTo, this.cursor).catch(() => null)) as
        | [string, [string, string[]][]][]
        | null;
      for (const [, entries] of res ?? []) {
        for (const [id, fields] of entries) {
          this.cursor = id;
          const doc = JSON.parse(fields[1] ?? '{}') as InferenceResponse;
          if (!doc.done) continue;
          const o = this.outcomes.get(doc.request_id);
          if (!o || o.final) continue;
          o.final = doc;
          o.doneAt = Date.now();
          this.onFinal(o);
        }
      }
    }
  }

  pending(): number {
    let n = 0;
    for (const o of this.outcomes.values()) if (!o.final) n++;
    return n;
  }

  stop(): void {
    this.stopped = true;
  }
}
