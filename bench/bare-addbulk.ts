/**
 * Baseline of P1 in a process of its own (as the bridge runs in one): bare BullMQ `addBulk` of
 * the P1 documents in batches of 100, or (`batch`) the same jobs added by the bridge's batch
 * adds. Prints `{"rate": jobs per second, "cpuUsPerJob": ...}`.
 *
 *   node dist/bench/bare-addbulk.js <redis port> <prefix> <count> <queue>[,<queue>...] [addbulk|batch]
 */
import { backlogDoc, bareAddBulkRate, batchAddsRate } from './baselines.js';

const [port, prefix, count, queues, how = 'addbulk'] = process.argv.slice(2);
if (!port || !prefix || !count || !queues || (how !== 'addbulk' && how !== 'batch')) {
  process.stderr.write('usage: bare-addbulk <port> <prefix> <count> <queue,...> [addbulk|batch]\n');
  process.exit(2);
}
const docs = Array.from({ length: Number(count) }, (_, i) => backlogDoc(i));
const cpu0 = process.cpuUsage();
const rate = await (how === 'batch' ? batchAddsRate : bareAddBulkRate)(Number(port), prefix, docs, queues.split(','));
const cpu = process.cpuUsage(cpu0);
// CPU of this process per job, microseconds (connecting included; it is small next to the adds).
process.stdout.write(JSON.stringify({ rate, cpuUsPerJob: (cpu.user + cpu.system) / docs.length }) + '\n');
