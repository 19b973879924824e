/**
 * Baseline of P6: a bare BullMQ Worker process, idle on one queue, with nothing else loaded.
 * Prints `{"ready": true}` once its connection is up; exits on SIGTERM/SIGINT.
 *
 *   node dist/bench/bare-worker.js <redis port> <prefix> <queue> [reply stream]
 *
 * With a reply stream (a baseline of P4), each job XADDs its data's `i` there and is done.
 */
import { Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';

const [port, prefix, queue, reply] = process.argv.slice(2);
if (!port || !prefix || !queue) {
  process.stderr.write('usage: bare-worker <port> <prefix> <queue>\n');
  process.exit(2);
}
const out = reply ? new Redis(Number(port), '127.0.0.1') : undefined;
const processor = out && reply ? async (job: Job<{ i: number }>) => out.xadd(reply, '*', 'i', String(job.data.i)) : async () => 'ok';
const worker = new Worker(queue, processor, { connection: { host: '127.0.0.1', port: Number(port) }, prefix });
worker.on('error', () => undefined);
await worker.waitUntilReady();
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
const stop = (): void => void worker.close().then(() => {
  out?.disconnect();
  process.exit(0);
});
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
