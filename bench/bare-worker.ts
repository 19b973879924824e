/**
 * Baseline of P6: a bare BullMQ Worker process, idle on one queue, with nothing else loaded.
 * Prints `{"ready": true}` once its connection is up; exits on SIGTERM/SIGINT.
 *
 *   node dist/bench/bare-worker.js <redis port> <prefix> <queue>
 */
import { Worker } from 'bullmq';

const [port, prefix, queue] = process.argv.slice(2);
if (!port || !prefix || !queue) {
  process.stderr.write('usage: bare-worker <port> <prefix> <queue>\n');
  process.exit(2);
}
const worker = new Worker(queue, async () => 'ok', { connection: { host: '127.0.0.1', port: Number(port) }, prefix });
worker.on('error', () => undefined);
await worker.waitUntilReady();
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
const stop = (): void => void worker.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
