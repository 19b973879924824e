/**
 * Nodes heartbeating in a process of their own (as workers are), for the drains of P1-P3:
 * writes every node's health once, prints `{"ready": true}`, then each node again every
 * `everyMs` (spread evenly) until SIGTERM, and prints `{"written": N}`. SIGUSR2 makes it print
 * `{"written": N, "asked": k}` at once (k counting the signals), so the bench can tell how
 * many documents were written between two moments.
 *
 *   node dist/bench/heartbeats.js <redis port> <prefix> <count> <everyMs>
 */
import { Redis } from 'ioredis';
import { names } from '../src/lib/names.js';
import { heartbeat, writeNodes } from './nodes.js';

const [port, prefix, count, everyMs] = process.argv.slice(2);
if (!port || !prefix || !count || !everyMs) {
  process.stderr.write('usage: heartbeats <port> <prefix> <count> <everyMs>\n');
  process.exit(2);
}
const redis = new Redis(Number(port), '127.0.0.1', { maxRetriesPerRequest: null });
const n = names(prefix);
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
const progress = { written: 0 };
let asked = 0;
process.on('SIGUSR2', () => void process.stdout.write(JSON.stringify({ written: progress.written, asked: ++asked }) + '\n'));
await writeNodes(redis, n, Number(count));
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
const written = await heartbeat(redis, n, Number(count), Number(everyMs), stop.signal, progress);
process.stdout.write(JSON.stringify({ written }) + '\n');
redis.disconnect();
