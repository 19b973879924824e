/**
 * A stand-in for Ollama over real HTTP, speaking just what the worker uses: /api/generate and
 * /api/chat (NDJSON streams ending with done:true, or error statuses), /api/ps, /api/tags and
 * /api/version. Each generation follows a script chosen per request; every request is recorded,
 * including whether the client hung up before the answer was complete.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Script {
  /** Answer with this HTTP status and `{"error": error}` instead of generating. */
  status?: number;
  error?: string;
  /** Text pieces streamed one chunk each. */
  chunks?: string[];
  /** Pause before the first byte (a model load) and between chunks. */
  firstByteDelayMs?: number;
  chunkDelayMs?: number;
  /** Close the stream without the done:true chunk. */
  endWithoutDone?: boolean;
  doneReason?: string;
  /** Durations reported in the done chunk, in nanoseconds. */
  loadNs?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  body: Record<string, unknown> | undefined;
  /** The client closed the connection before the answer was complete. */
  clientClosed: boolean;
  /** The answer was written to the end. */
  finished: boolean;
}

export interface FakeOllama {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  /** Chooses the script of each generate/chat request (default: "Hello" " world"). */
  script: (path: string, body: Record<string, unknown>) => Script;
  installed: string[];
  loaded: string[];
  version: string;
  /** Generation requests only. */
  generations(): RecordedRequest[];
  /** Resolves when a recorded request matches (polling). */
  waitFor(pred: (r: RecordedRequest) => boolean, timeoutMs?: number): Promise<RecordedRequest>;
  /** Stop listening and drop every connection (the port then refuses connections). */
  stop(): Promise<void>;
  /** Listen again on the same port. */
  start(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (s += d));
    req.on('end', () => resolve(s));
    req.on('error', reject);
  });
}

export async function startFakeOllama(port = 0): Promise<FakeOllama> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;

  const fake: FakeOllama = {
    url: '',
    port: 0,
    requests: [],
    script: () => ({ chunks: ['Hello', ' world'] }),
    installed: ['gemma3:1b', 'llama3.2:3b'],
    loaded: ['gemma3:1b'],
    version: '0.6.4',
    generations: () => fake.requests.filter((r) => r.path === '/api/generate' || r.path === '/api/chat'),
    async waitFor(pred, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const hit = fake.requests.find(pred);
        if (hit) return hit;
        if (Date.now() > end) throw new Error('fake ollama: no matching request in time');
        await sleep(10);
      }
    },
    stop: async () => {
      const s = server;
      server = undefined;
      if (!s) return;
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        for (const sock of sockets) sock.destroy();
      });
    },
    start: async () => {
      server = createServer((req, res) => void handle(req, res));
      server.on('connection', (sock: Socket) => {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
      });
      const s = server;
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(port, '127.0.0.1', () => resolve());
      });
      port = (s.address() as AddressInfo).port;
      Object.assign(fake, { port, url: `http://127.0.0.1:${port}` });
    },
  };

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = await readBody(req);
    let body: Record<string, unknown> | undefined;
    try {
      body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
    } catch {
      body = undefined;
    }
    const rec: RecordedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', body, clientClosed: false, finished: false };
    fake.requests.push(rec);
    res.on('close', () => {
      if (!res.writableFinished) rec.clientClosed = true;
    });
    const path = rec.path;
    if (path === '/api/version') return json(res, 200, { version: fake.version });
    if (path === '/api/tags') {
      return json(res, 200, {
        models: fake.installed.map((name) => ({ name, model: name, modified_at: '2026-01-19T12:00:00Z', size: 1, digest: 'x', details: {} })),
      });
    }
    if (path === '/api/ps') {
      return json(res, 200, {
        models: fake.loaded.map((name) => ({ name, model: name, size: 1, digest: 'x', details: {}, expires_at: '2026-01-19T12:05:00Z', size_vram: 0 })),
      });
    }
    if ((path !== '/api/generate' && path !== '/api/chat') || req.method !== 'POST' || !body) {
      return json(res, 404, { error: 'not found' });
    }
    const script = fake.script(path, body);
    if (script.firstByteDelayMs) await sleep(script.firstByteDelayMs);
    if (res.destroyed) return;
    if (script.status !== undefined) return json(res, script.status, { error: script.error ?? `status ${script.status}` });
    const model = String(body['model']);
    const chat = path === '/api/chat';
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
    const piece = (text: string, done: boolean): Record<string, unknown> =>
      chat
        ? { model, created_at: new Date().toISOString(), message: { role: 'assistant', content: text }, done }
        : { model, created_at: new Date().toISOString(), response: text, done };
    const chunks = script.chunks ?? [];
    for (let i = 0; i < chunks.length; i++) {
      if (i > 0 && script.chunkDelayMs) await sleep(script.chunkDelayMs);
      if (res.destroyed) return;
      res.write(JSON.stringify(piece(chunks[i]!, false)) + '\n');
    }
    if (script.chunkDelayMs) await sleep(script.chunkDelayMs);
    if (res.destroyed) return;
    if (script.endWithoutDone) {
      res.end();
      return;
    }
    res.end(
      JSON.stringify({
        ...piece('', true),
        done_reason: script.doneReason ?? 'stop',
        total_duration: 1_500_000_000,
        load_duration: script.loadNs ?? 250_000_000,
        prompt_eval_count: 12,
        prompt_eval_duration: 100_000_000,
        eval_count: chunks.length,
        eval_duration: 1_000_000_000,
      }) + '\n',
    );
    rec.finished = true;
  }

  await fake.start();
  return fake;
}
