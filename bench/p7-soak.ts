/**
 * P7: a soak at a steady request rate through simulated nodes. Three simulated Pis (the Ollama
 * simulator, in the bench process, fast enough that each answer takes a few milliseconds), each
 * with one of three models loaded and a built worker process (4 jobs at once) reading the
 * simulator's RAM and temperature files, and one built bridge process. Requests take turns
 * over the three models, so each node serves a third of them (sticky routing sends every
 * request for a model to the node that has it loaded). The bench sends `rate` requests per second for `seconds`, reads every answer
 * from a private reply stream, and samples the resident memory of the bridge and the workers
 * every few seconds (child processes: the figures are theirs alone).
 *
 * At the end: every request answered exactly once (finals counted per request id), and each
 * process's memory at the end (median of the last quarter of the samples) within 20% of its
 * memory just after warm-up (median of the first quarter after it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { names } from '../src/lib/names.js';
import { startSimulatorCluster } from '../src/simulator/index.js';
import { fmtNum, median, nowMs, type RowResult } from './lib.js';
import { startBridgeProcess, startWorkerProcess, type Child } from './proc.js';

export interface SoakOptions {
  port: number;
  seconds: number;
  /** Requests per second. */
  rate: number;
  log(line: string): void;
}

const MODELS = ['llama3.2:3b', 'gemma3:1b', 'qwen2.5:0.5b'] as const;
const SAMPLE_MS = 2000;
const DRAIN_IDLE_MS = 30_000;

interface Sample {
  at: number;
  rss: Record<string, number>;
}

export async function runSoakRows(o: SoakOptions): Promise<RowResult[]> {
  const prefix = 'bench:p7';
  const n = names(prefix);
  const dirs: string[] = [];
  const sims = await startSims(dirs);
  const children: Record<string, Child> = {};
  const redis = new Redis(o.port, '127.0.0.1', { maxRetriesPerRequest: null });
  const reader = new Redis(o.port, '127.0.0.1', { maxRetriesPerRequest: null });
  try {
    await startPrograms(sims.nodes, dirs, `127.0.0.1:${o.port}`, prefix, children);
    const replyTo = `${n.responses}:soak`;
    const answers = readAnswers(reader, replyTo);
    const t0 = nowMs();
    const memory = sampleMemory(children);
    const total = Math.round(o.rate * o.seconds);
    await sendAtRate(o, redis, { stream: n.requests, replyTo, t0, total, answers, memory });
    const sendSeconds = (nowMs() - t0) / 1000;
    await waitForLastAnswers(answers.finals, total);
    const backlogSeconds = (nowMs() - t0) / 1000 - sendSeconds;
    memory.stop();
    await answers.stop();
    return soakReport(o, {
      t0,
      total,
      sendSeconds,
      backlogSeconds,
      processes: Object.keys(children),
      samples: memory.samples,
      finals: answers.finals,
      errors: answers.errors(),
    });
  } finally {
    await Promise.all(Object.values(children).map((c) => c.stop('SIGTERM')));
    await sims.close();
    await redis.flushall().catch(() => undefined);
    redis.disconnect();
    reader.disconnect();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

type Sims = Awaited<ReturnType<typeof startSimulatorCluster>>;

/**
 * The three simulated Pis, each with its own /proc and /sys folders (created here and listed in
 * `dirs`, two per node in node order, for the caller to remove).
 */
async function startSims(dirs: string[]): Promise<Sims> {
  const tmp = (label: string): string => {
    const d = mkdtempSync(join(tmpdir(), `orion-bench-${label}-`));
    dirs.push(d);
    return d;
  };
  // Well cooled Pis: the soak is about memory and delivery, not heat.
  const thermal = { maxC: 60 };
  const fast = { speed: 1000, numParallel: 4, responseTokens: [4, 16] as [number, number], thermal };
  return startSimulatorCluster([
    { id: 'pi-16g', profile: 'pi5-16g', loaded: [MODELS[0]], procRoot: tmp('16g'), sysRoot: tmp('16g-sys'), ...fast },
    { id: 'pi-8g-a', profile: 'pi5-8g', loaded: [MODELS[1]], procRoot: tmp('8g-a'), sysRoot: tmp('8g-a-sys'), ...fast },
    { id: 'pi-8g-b', profile: 'pi5-8g', installed: ['gemma3:1b', 'qwen2.5:0.5b'], loaded: [MODELS[2]], procRoot: tmp('8g-b'), sysRoot: tmp('8g-b-sys'), ...fast },
  ]);
}

/** A built worker process for each simulated node, then the built bridge; each added to `children`. */
async function startPrograms(nodes: Sims['nodes'], dirs: string[], addr: string, prefix: string, children: Record<string, Child>): Promise<void> {
  for (const [i, sim] of nodes.entries()) {
    const root = dirs[i * 2]!;
    const sys = dirs[i * 2 + 1]!;
    const w = await startWorkerProcess({ 'node-id': sim.id, 'redis-addr': addr, 'stream-prefix': prefix, 'ollama-host': sim.url, 'proc-root': root, 'sys-root': sys, concurrency: '4' });
    children[`worker ${sim.id}`] = w.child;
  }
  const bridge = await startBridgeProcess({ 'redis-addr': addr, 'stream-prefix': prefix, 'consumer-name': 'bench' });
  children['bridge'] = bridge.child;
}

interface Answers {
  /** Final answers seen, per request id. */
  finals: Map<string, number>;
  /** Final answers that carried an error. */
  errors(): number;
  /** Stop reading (after the read in progress). */
  stop(): Promise<void>;
}

/** Reads every answer from the reply stream until stopped. */
function readAnswers(reader: Redis, replyTo: string): Answers {
  const finals = new Map<string, number>();
  let errors = 0;
  let reading = true;
  let cursor = '0-0';
  const readLoop = (async () => {
    while (reading) {
      const res = (await reader.xread('COUNT', 1000, 'BLOCK', 500, 'STREAMS', replyTo, cursor)) as [string, [string, string[]][]][] | null;
      for (const [id, fields] of res?.[0]?.[1] ?? []) {
        cursor = id;
        const d = JSON.parse(fields[1]!) as { request_id: string; done?: boolean; error?: unknown };
        if (!d.done) continue;
        finals.set(d.request_id, (finals.get(d.request_id) ?? 0) + 1);
        if (d.error) errors++;
      }
    }
  })();
  return {
    finals,
    errors: () => errors,
    async stop() {
      reading = false;
      await readLoop;
    },
  };
}

interface MemorySampler {
  samples: Sample[];
  /** Stop sampling, after one last sample. */
  stop(): void;
}

/** Samples every child's resident memory now and every SAMPLE_MS. */
function sampleMemory(children: Record<string, Child>): MemorySampler {
  const samples: Sample[] = [];
  const sample = (): void => {
    const rss: Record<string, number> = {};
    for (const [name, c] of Object.entries(children)) rss[name] = c.rss();
    samples.push({ at: nowMs(), rss });
  };
  sample();
  const sampler = setInterval(sample, SAMPLE_MS);
  return {
    samples,
    stop() {
      clearInterval(sampler);
      sample();
    },
  };
}

interface SendPlan {
  stream: string;
  replyTo: string;
  /** When sending started (the soak's clock). */
  t0: number;
  total: number;
  answers: Answers;
  memory: MemorySampler;
}

/** Sends `total` requests at `o.rate` per second, taking turns over the models; logs progress every 30 s. */
async function sendAtRate(o: SoakOptions, redis: Redis, p: SendPlan): Promise<void> {
  let sent = 0;
  let lastLog = p.t0;
  while (sent < p.total) {
    const due = Math.min(p.total, Math.floor(((nowMs() - p.t0) / 1000) * o.rate));
    if (due > sent) {
      const pipe = redis.pipeline();
      for (; sent < due; sent++) {
        pipe.xadd(p.stream, '*', 'data', JSON.stringify({ request_id: `soak-${sent}`, model: MODELS[sent % MODELS.length], prompt: `Report ${sent}: are the joints within limits?`, reply_to: p.replyTo, options: { num_predict: 16 } }));
      }
      await pipe.exec();
    }
    if (nowMs() - lastLog > 30_000) {
      lastLog = nowMs();
      const last = p.memory.samples[p.memory.samples.length - 1]!;
      o.log(`  ${fmtNum((lastLog - p.t0) / 1000)} s: sent ${fmtNum(sent)}, answered ${fmtNum(p.answers.finals.size)}; RSS ${Object.entries(last.rss).map(([k, v]) => `${k} ${fmtNum(v / 1e6, 1)} MB`).join(', ')}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Lets the last answers arrive: a request counts as lost only once answers have stopped
 * coming for DRAIN_IDLE_MS (a backlog left by a slow machine is not a loss).
 */
async function waitForLastAnswers(finals: Map<string, number>, total: number): Promise<void> {
  let answered = finals.size;
  let progressAt = nowMs();
  while (finals.size < total && nowMs() - progressAt < DRAIN_IDLE_MS) {
    await new Promise((r) => setTimeout(r, 200));
    if (finals.size > answered) {
      answered = finals.size;
      progressAt = nowMs();
    }
  }
}

interface SoakFigures {
  t0: number;
  total: number;
  sendSeconds: number;
  /** From the last request sent to the last answer. */
  backlogSeconds: number;
  /** The sampled processes' names. */
  processes: string[];
  samples: Sample[];
  finals: Map<string, number>;
  errors: number;
}

/** The two P7 rows: memory growth after warm-up, and requests lost or answered twice. */
function soakReport(o: SoakOptions, f: SoakFigures): RowResult[] {
  let once = 0;
  let dup = 0;
  for (const c of f.finals.values()) {
    if (c === 1) once++;
    else dup++;
  }
  const lost = f.total - f.finals.size;
  const growth = memoryGrowth(o, f);
  const worst = Object.entries(growth).reduce((a, b) => (Math.abs(b[1].ratio - 1) > Math.abs(a[1].ratio - 1) ? b : a));
  const mb = (x: number): string => fmtNum(x / 1e6, 1);
  return [
    {
      row: 'P7',
      measure: `soak ${fmtNum(o.seconds)} s at ${o.rate} req/s: memory end / after warm-up`,
      detail: Object.entries(growth)
        .map(([name, g]) => `${name} ${mb(g.start)} -> ${mb(g.end)} MB`)
        .join(', '),
      value: worst[1].ratio,
      goal: 'within 20%',
      met: Math.abs(worst[1].ratio - 1) <= 0.2,
      runs: { growth, samples: f.samples.map((s) => ({ t: Math.round((s.at - f.t0) / 1000), ...s.rss })) },
    },
    {
      row: 'P7',
      measure: 'soak: requests lost or answered twice',
      detail: `sent ${fmtNum(f.total)} in ${fmtNum(f.sendSeconds, 1)} s (${fmtNum(f.total / f.sendSeconds)} req/s), answered once ${fmtNum(once)}, twice or more ${dup}, lost ${lost}, error answers ${f.errors}; last answer ${fmtNum(f.backlogSeconds, 1)} s after the last request`,
      value: lost + dup,
      goal: '0',
      met: lost === 0 && dup === 0,
    },
  ];
}

/** Each process's memory just after warm-up and at the end, and their ratio. */
function memoryGrowth(o: SoakOptions, f: SoakFigures): Record<string, { start: number; end: number; ratio: number }> {
  // Warm-up: the first quarter of the soak, at most 60 s.
  const warm = f.t0 + Math.min(60_000, (o.seconds * 1000) / 4);
  const afterWarm = f.samples.filter((s) => s.at >= warm);
  // A quarter of the samples at each end, so that a GC sawtooth does not decide the figure.
  const k = Math.max(1, Math.floor(afterWarm.length / 4));
  const growth: Record<string, { start: number; end: number; ratio: number }> = {};
  for (const name of f.processes) {
    const start = median(afterWarm.slice(0, k).map((s) => s.rss[name]!));
    const end = median(afterWarm.slice(-k).map((s) => s.rss[name]!));
    growth[name] = { start, end, ratio: end / start };
  }
  return growth;
}
