/**
 * P8: the time to first token the gateway adds. The built worker, bridge and gateway run as
 * processes of their own on the `instant` simulator (no load or generation time). One streamed
 * chat at a time, alternating:
 *
 *   gateway   POST /api/chat (stream) to orion-inference-gateway: HTTP -> bus -> bridge -> node
 *             queue -> worker -> simulator -> reply stream -> gateway -> HTTP
 *   direct    the same POST /api/chat straight to the simulator
 *
 * each timed from sending the request to the first NDJSON line carrying text. The row is the
 * ratio of the p50s (and the added milliseconds).
 */
import http from 'node:http';
import { join } from 'node:path';
import { fmtNum, median, nowMs, percentile, type RowResult } from './lib.js';
import { DIST, PI_8G_ROOT, startBackend, startBridgeProcess, startNode, startWorkerProcess, waitForLog, type Child } from './proc.js';

export interface GatewayBenchOptions {
  port: number;
  runs: number;
  requests: number;
  log(line: string): void;
}

const MODEL = 'gemma3:1b';
const agent = new http.Agent({ keepAlive: true });

/** Milliseconds from sending a streamed chat to the first line with text. */
function firstToken(url: string): Promise<number> {
  const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Say ok.' }], stream: true });
  const t0 = nowMs();
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/api/chat`, { method: 'POST', agent, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let got: number | undefined;
      let buf = '';
      res.on('data', (d: Buffer) => {
        if (got !== undefined) return;
        buf += d.toString();
        for (const line of buf.split('\n').slice(0, -1)) {
          const doc = JSON.parse(line) as { message?: { content?: string } };
          if (doc.message?.content) got ??= nowMs() - t0;
        }
      });
      res.on('end', () => (res.statusCode === 200 && got !== undefined ? resolve(got) : reject(new Error(`${url}: HTTP ${res.statusCode}, no token`))));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function waitEligible(gatewayUrl: string): Promise<void> {
  const end = Date.now() + 20_000;
  while (Date.now() < end) {
    const res = await fetch(`${gatewayUrl}/health`).catch(() => undefined);
    if (res?.ok && ((await res.json()) as { eligible_nodes: number }).eligible_nodes > 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the gateway saw no eligible node within 20 s');
}

interface Run {
  gateway: number[];
  direct: number[];
}

async function once(o: GatewayBenchOptions, backendUrl: string, r: number): Promise<Run> {
  const prefix = `bench:p8:${r}`;
  const addr = `127.0.0.1:${o.port}`;
  const children: Child[] = [];
  try {
    const worker = await startWorkerProcess({ 'node-id': 'bench-p8', 'redis-addr': addr, 'stream-prefix': prefix, 'ollama-host': backendUrl, 'proc-root': PI_8G_ROOT, 'sys-root': PI_8G_ROOT });
    children.push(worker.child);
    const bridge = await startBridgeProcess({ 'redis-addr': addr, 'stream-prefix': prefix, 'consumer-name': 'bench' });
    children.push(bridge.child);
    const gw = startNode(join(DIST, 'src', 'bin', 'gateway.js'), [`--redis-addr=${addr}`, `--stream-prefix=${prefix}`, '--http-addr=127.0.0.1', '--http-port=0', '--log-level=info']);
    children.push(gw);
    const gatewayUrl = `http://127.0.0.1:${Number((await waitForLog(gw, 'gateway started'))['http_port'])}`;
    await waitEligible(gatewayUrl);
    const out: Run = { gateway: [], direct: [] };
    const warm = Math.min(20, Math.floor(o.requests / 10));
    for (let i = 0; i < o.requests + warm; i++) {
      const g = await firstToken(gatewayUrl);
      const d = await firstToken(backendUrl);
      if (i < warm) continue;
      out.gateway.push(g);
      out.direct.push(d);
    }
    return out;
  } finally {
    await Promise.all(children.map((c) => c.stop('SIGTERM')));
  }
}

export async function runGatewayRows(o: GatewayBenchOptions): Promise<RowResult[]> {
  const backend = await startBackend();
  const runs: { g50: number; d50: number; g99: number; d99: number }[] = [];
  try {
    for (let r = 0; r < o.runs; r++) {
      const x = await once(o, backend.url, r);
      const s = { g50: median(x.gateway), d50: median(x.direct), g99: percentile(x.gateway, 99), d99: percentile(x.direct, 99) };
      o.log(`  run ${r + 1}: first token p50 via gateway ${fmtNum(s.g50, 3)} ms, direct ${fmtNum(s.d50, 3)} ms; p99 ${fmtNum(s.g99, 3)} / ${fmtNum(s.d99, 3)} ms`);
      runs.push(s);
    }
  } finally {
    await backend.child.stop();
  }
  const ratios = runs.map((x) => x.g50 / x.d50);
  const mid = runs[ratios.indexOf(median(ratios))] ?? runs[0]!;
  const added = mid.g50 - mid.d50;
  return [
    {
      row: 'P8',
      measure: 'time to first token p50: via the gateway / direct to Ollama',
      value: mid.g50 / mid.d50,
      goal: 'added <= 5 ms',
      met: added <= 5,
      detail: `${fmtNum(mid.g50, 3)} ms vs ${fmtNum(mid.d50, 3)} ms, added ${fmtNum(added, 3)} ms; p99 ${fmtNum(mid.g99, 3)} vs ${fmtNum(mid.d99, 3)} ms (runs: ${ratios.map((x) => fmtNum(x, 2)).join(', ')}; ${o.requests} streamed chats each)`,
      runs,
    },
  ];
}
