/**
 * The worker's fetch over node:http, against a server that closes a kept-alive connection just
 * as the next request arrives on it (what a server whose keep-alive timeout ends at the moment
 * of a periodic probe does): the request is sent again on a new connection, once.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { httpFetch } from '../../src/worker/http-fetch.js';

const servers: Server[] = [];
const sockets = new Set<Socket>();
afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

/**
 * An HTTP/1.1 server by hand: on each connection it answers the first `answer` requests with
 * keep-alive, then resets the connection (RST) when the next request arrives.
 */
async function resettingServer(answerPerConnection: number): Promise<{ url: string; connections: () => number; requests: () => number }> {
  let connections = 0;
  let requests = 0;
  const server = createServer((sock: Socket) => {
    connections++;
    sockets.add(sock);
    let answered = 0;
    sock.on('data', (d: Buffer) => {
      if (!d.toString().includes('\r\n\r\n')) return;
      if (answered >= answerPerConnection) {
        sock.resetAndDestroy();
        return;
      }
      answered++;
      requests++;
      const body = '{"ok":true}';
      sock.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: keep-alive\r\n\r\n${body}`);
    });
    sock.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, connections: () => connections, requests: () => requests };
}

describe('httpFetch on a kept-alive connection the server resets', () => {
  it('sends the request again on a new connection, and the caller sees only the answer', async () => {
    const s = await resettingServer(1);
    const first = await httpFetch(`${s.url}/api/ps`);
    expect(await first.json()).toEqual({ ok: true });
    // The same socket is reused for the next request and reset by the server: sent again.
    const second = await httpFetch(`${s.url}/api/ps`, { method: 'POST', body: '{"x":1}' });
    expect(second.status).toBe(200);
    expect(await second.json()).toEqual({ ok: true });
    expect(s.connections()).toBe(2);
    expect(s.requests()).toBe(2);
  });

  it('does not retry a reset on a new connection: that is a real failure', async () => {
    const s = await resettingServer(0);
    const err = (await httpFetch(`${s.url}/api/ps`).catch((e: unknown) => e)) as TypeError & { cause?: NodeJS.ErrnoException };
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe('fetch failed');
    expect(err.cause?.code).toBe('ECONNRESET');
    expect(s.connections()).toBe(1);
  });
});
