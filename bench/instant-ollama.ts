/**
 * A backend that answers at once, speaking just enough of Ollama's API for the worker:
 * /api/generate and /api/chat (an NDJSON stream of one `done: true` line), /api/ps, /api/tags
 * and /api/version. P4 subtracts a direct call to it from the full path, so what remains is
 * what ORION adds.
 *
 * Run as a process of its own: `node dist/bench/instant-ollama.js [port]` prints `{"port": N}`.
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

const MODELS = ['gemma3:1b', 'llama3.2:3b'];
const modelEntry = (name: string) => ({
  name,
  model: name,
  size: 1_000_000_000,
  digest: 'sha256:' + '0'.repeat(64),
  details: { format: 'gguf', family: 'gemma3', parameter_size: '1B', quantization_level: 'Q4_K_M' },
  expires_at: '2100-01-01T00:00:00Z',
  size_vram: 0,
  modified_at: '2025-01-01T00:00:00Z',
});
const PS = JSON.stringify({ models: MODELS.map(modelEntry) });
const TAGS = PS;
const VERSION = JSON.stringify({ version: '0.12.6' });

function send(res: ServerResponse, status: number, body: string, type = 'application/json'): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/';
  if (req.method === 'GET' && url === '/api/ps') return send(res, 200, PS);
  if (req.method === 'GET' && url === '/api/tags') return send(res, 200, TAGS);
  if (req.method === 'GET' && url === '/api/version') return send(res, 200, VERSION);
  if (req.method === 'HEAD' || (req.method === 'GET' && url === '/')) return send(res, 200, 'Ollama is running', 'text/plain');
  if (req.method === 'POST' && (url === '/api/generate' || url === '/api/chat')) {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      let model = 'gemma3:1b';
      try {
        model = String((JSON.parse(body) as { model?: unknown }).model ?? model);
      } catch {
        return send(res, 400, JSON.stringify({ error: 'bad json' }));
      }
      const created_at = new Date().toISOString();
      const text = url === '/api/chat' ? { message: { role: 'assistant', content: 'ok' } } : { response: 'ok' };
      const line = JSON.stringify({
        model,
        created_at,
        ...text,
        done: true,
        done_reason: 'stop',
        total_duration: 1000,
        load_duration: 0,
        prompt_eval_count: 1,
        prompt_eval_duration: 100,
        eval_count: 1,
        eval_duration: 100,
      });
      send(res, 200, line + '\n', 'application/x-ndjson');
    });
    return;
  }
  send(res, 404, JSON.stringify({ error: 'not found' }));
}

export async function startInstantOllama(port = 0): Promise<{ url: string; port: number; server: Server; close(): Promise<void> }> {
  const server = createServer(handle);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const s = await startInstantOllama(Number(process.argv[2] ?? 0));
  process.stdout.write(JSON.stringify({ port: s.port }) + '\n');
  const stop = (): void => void s.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
