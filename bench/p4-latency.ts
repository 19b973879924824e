/**
 * P4: the latency ORION adds, one request at a time. The built worker and bridge run as
 * processes of their own (as in production: each has its own event loop, so none of them waits
 * on the bench's client); the backend is the Ollama simulator with its `instant` profile (no
 * load or generation time), also a process of its own. The bench plays the Brain: XADD a
 * request naming a private reply stream, then XREAD BLOCK on that stream until the final answer.
 *
 *   full path   XADD -> bridge -> node queue -> worker -> backend over HTTP -> reply stream read
 *   direct      the same Ollama request the worker sends, as a raw HTTP call (node:http with a
 *               keep-alive agent, the whole NDJSON answer read) straight to the backend, right
 *               after each full-path request
 *   added       full path minus direct, request by request; p50 and p99 of those differences
 *   hop         a bare stream hop (XADD -> XREADGROUP -> XADD reply -> XREAD), the least any
 *               Redis round trip through a consumer can cost
 *   bullmq      BullMQ alone: Queue.add -> a bare Worker process -> XADD reply -> XREAD, the
 *               least any design that puts requests on BullMQ queues can take; measured in the
 *               same run, it is what the added latency is judged against
 *
 * With --trace the worker and bridge run with ORION_TRACE=1 and the row's log gives, for each
 * step of the full path, the median time from the step before (see p4-trace.ts).
 */
import http from 'node:http';
import { Redis } from 'ioredis';
import { names } from '../src/lib/names.js';
import { ollamaCallFor } from '../src/worker/generate.js';
import { bareBullmqRound, bareStreamHop, summary } from './baselines.js';
import { fmtNum, median, nowMs, type RowResult } from './lib.js';
import { TraceCollector, epochMs } from './p4-trace.js';
import { PI_8G_ROOT, benchScript, startBackend, startBridgeProcess, startNode, startWorkerProcess, type Child } from './proc.js';

export interface LatencyOptions {
  port: number;
  runs: number;
  /** Requests per measurement (the first tenth, at most 50, are warm-up and not counted). */
  requests: number;
  /** Per-step breakdown (ORION_TRACE=1 in the worker and bridge). */
  trace?: boolean;
  log(line: string): void;
}

interface P {
  p50: number;
  p99: number;
}

interface LatencyRun {
  full: P;
  direct: P;
  /** Of the per-request differences full - direct. */
  added: P;
  hop: P;
  bullmq: P;
}

const MODEL = 'gemma3:1b';
const warmup = (count: number): number => Math.min(50, Math.floor(count / 10));
const agent = new http.Agent({ keepAlive: true });

/** The worker's Ollama request for the bench's prompt, sent as raw HTTP: its latency in ms. */
function directCall(url: string): Promise<number> {
  const call = ollamaCallFor({ request_id: 'direct', model: MODEL, prompt: 'Say ok.' });
  const body = JSON.stringify(call.body);
  const t0 = nowMs();
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/api/${call.endpoint}`, { method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => (res.statusCode === 200 ? resolve(nowMs() - t0) : reject(new Error(`direct call: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Requests through the whole system, one at a time (latency until the final answer is read),
 * each followed by a direct call to the backend, so both are measured under the same
 * conditions (the backend woken as often, the machine as busy).
 */
async function fullPath(port: number, prefix: string, count: number, run: number, backendUrl: string, trace?: TraceCollector): Promise<{ full: number[]; direct: number[] }> {
  const n = names(prefix);
  const sender = new Redis(port, '127.0.0.1');
  const reader = new Redis(port, '127.0.0.1');
  const replyTo = `${n.responses}:bench-p4`;
  const lat: number[] = [];
  const direct: number[] = [];
  let cursor = '0-0';
  try {
    for (let i = 0; i < count; i++) {
      const id = `p4-${run}-${i}`;
      const doc = JSON.stringify({ request_id: id, model: MODEL, prompt: 'Say ok.', reply_to: replyTo });
      trace?.step(id, 'brain sent', epochMs());
      const t0 = nowMs();
      await sender.xadd(n.requests, '*', 'data', doc);
      for (;;) {
        const res = (await reader.xread('BLOCK', 10_000, 'STREAMS', replyTo, cursor)) as [string, [string, string[]][]][] | null;
        const entries = res?.[0]?.[1];
        if (!entries || entries.length === 0) throw new Error(`no answer to ${id} within 10 s`);
        cursor = entries[entries.length - 1]![0];
        const final = entries.some(([, f]) => {
          const d = JSON.parse(f[1]!) as { request_id?: string; done?: boolean; error?: unknown };
          if (d.request_id === id && d.error) throw new Error(`request ${id} failed: ${JSON.stringify(d.error)}`);
          return d.request_id === id && d.done === true;
        });
        if (final) break;
      }
      lat.push(nowMs() - t0);
      trace?.step(id, 'brain read answer', epochMs());
      direct.push(await directCall(backendUrl));
    }
  } finally {
    sender.disconnect();
    reader.disconnect();
  }
  return { full: lat.slice(warmup(count)), direct: direct.slice(warmup(count)) };
}

async function eligible(httpPort: number, node: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const res = await fetch(`http://127.0.0.1:${httpPort}/nodes`).catch(() => undefined);
    const nodes = res?.ok ? ((await res.json()) as { node_id: string; eligible: boolean }[]) : [];
    if (nodes.some((x) => x.node_id === node && x.eligible)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`node ${node} not eligible at the bridge within ${timeoutMs} ms`);
}

async function latencyOnce(o: LatencyOptions, backendUrl: string, r: number, trace?: TraceCollector): Promise<LatencyRun> {
  const prefix = `bench:p4:${r}`;
  const addr = `127.0.0.1:${o.port}`;
  const children: Child[] = [];
  const redis = new Redis(o.port, '127.0.0.1');
  try {
    const hop = summary(await bareStreamHop(o.port, o.requests));
    const bare = startNode(benchScript('bare-worker'), [String(o.port), `${prefix}:bare`, 'q', `${prefix}:bare-reply`]);
    children.push(bare);
    await bare.waitForLine((l) => l.includes('"ready"'), 20_000, 'ready line');
    const bullmq = summary(await bareBullmqRound(o.port, o.requests, `${prefix}:bare`, 'q', `${prefix}:bare-reply`));
    await bare.stop('SIGTERM');
    const traced = trace ? { env: { ORION_TRACE: '1' }, onLine: (l: string) => trace.line(l) } : {};
    const worker = await startWorkerProcess({ 'node-id': 'bench-p4', 'redis-addr': addr, 'stream-prefix': prefix, 'ollama-host': backendUrl, 'proc-root': PI_8G_ROOT, 'sys-root': PI_8G_ROOT }, [], traced);
    children.push(worker.child);
    const bridge = await startBridgeProcess({ 'redis-addr': addr, 'stream-prefix': prefix, 'consumer-name': 'bench' }, [], traced);
    children.push(bridge.child);
    await eligible(bridge.httpPort, 'bench-p4');
    const both = await fullPath(o.port, prefix, o.requests, r, backendUrl, trace);
    const added = both.full.map((f, i) => f - both.direct[i]!);
    return { full: summary(both.full), direct: summary(both.direct), added: summary(added), hop, bullmq };
  } finally {
    await Promise.all(children.map((c) => c.stop('SIGTERM')));
    await redis.flushall().catch(() => undefined);
    redis.disconnect();
  }
}

const ms = (x: number): string => `${fmtNum(x, 3)} ms`;
const each = (runs: LatencyRun[], f: (x: LatencyRun) => number, digits = 3): string => runs.map((x) => fmtNum(f(x), digits)).join(', ');

export async function runLatencyRows(o: LatencyOptions): Promise<RowResult[]> {
  const backend = await startBackend();
  const runs: LatencyRun[] = [];
  const trace = o.trace ? new TraceCollector() : undefined;
  try {
    for (let r = 0; r < o.runs; r++) {
      const x = await latencyOnce(o, backend.url, r, trace);
      o.log(
        `  run ${r + 1}: added p50 ${ms(x.added.p50)} p99 ${ms(x.added.p99)}; full p50 ${ms(x.full.p50)} p99 ${ms(x.full.p99)}; direct (raw HTTP) p50 ${ms(x.direct.p50)}; ` +
          `hop p50 ${ms(x.hop.p50)}; BullMQ alone p50 ${ms(x.bullmq.p50)} p99 ${ms(x.bullmq.p99)}`,
      );
      runs.push(x);
    }
  } finally {
    await backend.child.stop();
  }
  if (trace) for (const line of trace.report(warmup(o.requests))) o.log(line);
  return latencyRows(runs);
}

function latencyRows(runs: LatencyRun[]): RowResult[] {
  const added50 = median(runs.map((x) => x.added.p50));
  const added99 = median(runs.map((x) => x.added.p99));
  const bullmq50 = median(runs.map((x) => x.bullmq.p50));
  const hop50 = median(runs.map((x) => x.hop.p50));
  const vsBullmq = median(runs.map((x) => x.added.p50 / x.bullmq.p50));
  const tail = median(runs.map((x) => x.added.p99 / x.added.p50));
  const hops = median(runs.map((x) => x.added.p50 / x.hop.p50));
  return [
    {
      row: 'P4',
      measure: 'added latency p50 (ms), one request at a time',
      detail: `p50 of (full path - raw HTTP call) per request; full p50 ${ms(median(runs.map((x) => x.full.p50)))}, direct p50 ${ms(median(runs.map((x) => x.direct.p50)))} (runs: ${each(runs, (x) => x.added.p50)})`,
      value: added50,
      goal: '<= 1 ms',
      met: added50 <= 1,
      runs,
    },
    {
      row: 'P4',
      measure: 'added latency p50 / BullMQ alone p50 (same run)',
      detail: `${ms(added50)} vs BullMQ alone (add -> worker process -> reply) ${ms(bullmq50)} (runs: ${each(runs, (x) => x.added.p50 / x.bullmq.p50, 2)})`,
      value: vsBullmq,
      goal: '<= 2x',
      met: vsBullmq <= 2,
    },
    {
      row: 'P4',
      measure: 'added latency p99 / its p50',
      detail: `p99 of the per-request differences ${ms(added99)} vs p50 ${ms(added50)}; 3x BullMQ alone p50 is ${ms(3 * bullmq50)} (runs: ${each(runs, (x) => x.added.p99 / x.added.p50, 2)})`,
      value: tail,
      goal: '<= 3x',
      met: tail <= 3,
    },
    {
      row: 'P4',
      measure: 'added latency p99 (ms)',
      detail: `p99 of the per-request differences (runs: ${each(runs, (x) => x.added.p99)})`,
      value: added99,
      goal: '<= 5 ms',
      met: added99 <= 5,
    },
    {
      row: 'P4',
      measure: 'added latency p50 / bare stream hop p50',
      detail: `${ms(added50)} vs hop ${ms(hop50)} (runs: ${each(runs, (x) => x.added.p50 / x.hop.p50, 2)}); BullMQ alone = ${fmtNum(median(runs.map((x) => x.bullmq.p50 / x.hop.p50)), 2)} hops`,
      value: hops,
      goal: '<= 4x',
      met: hops <= 4,
    },
  ];
}
