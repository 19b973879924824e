/**
 * `orion drain NODE` / `undrain NODE`: take a node out of rotation (the set `{p}:drained`, which
 * every bridge reads with the registry: the node is excluded as `drained`, and the jobs waiting
 * in its queue are moved to eligible nodes by the bridge's own re-routing, as for an
 * unavailable node) and put it back. `orion forget NODE`: remove a node that is gone for good
 * from the registry, its queues with it (Bull Board drops them at the bridge's next refresh).
 */
import { Queue } from 'bullmq';
import { HeldConnection } from '../lib/bull.js';
import { isValidNodeId } from '../lib/names.js';
import { sleep } from '../lib/time.js';
import { parseDuration } from '../lib/time.js';
import { UsageError, str, type CliContext, type Command } from './context.js';

function nodeArg(args: string[], cmd: string): string {
  const node = args[0];
  if (!node || args.length > 1) throw new UsageError(`${cmd} needs exactly one node id`);
  if (!isValidNodeId(node)) throw new UsageError(`'${node}' is not a node id (1-64 of A-Z a-z 0-9 . _ -)`);
  return node;
}

/** Jobs in the node's queue that have not started (waiting, prioritized, delayed) and running. */
async function queueCounts(ctx: CliContext, node: string): Promise<{ waiting: number; running: number }> {
  const q = new Queue(node, { prefix: ctx.n.nodeQueuePrefix, connection: ctx.redis() }, HeldConnection);
  try {
    const c = await q.getJobCounts('wait', 'prioritized', 'delayed', 'active');
    return { waiting: (c['wait'] ?? 0) + (c['prioritized'] ?? 0) + (c['delayed'] ?? 0), running: c['active'] ?? 0 };
  } finally {
    await q.close();
  }
}

async function known(ctx: CliContext, node: string): Promise<boolean> {
  const [inHash, inSet] = await Promise.all([ctx.redis().hexists(ctx.n.health, node), ctx.redis().sismember(ctx.n.nodes, node)]);
  return inHash === 1 || inSet === 1;
}

export const drain: Command = {
  name: 'drain',
  summary: 'stop placing work on a node and move what waits there to other nodes',
  usage: 'NODE [--wait 30s] [--json]',
  help: `Takes NODE out of rotation: every bridge excludes it (reason "drained") from its next
registry refresh, about a second, and moves the jobs waiting in its queue to eligible nodes;
jobs already running there finish there. The node stays drained, across restarts, until
"orion undrain NODE". Then waits until no job waits in its queue (at most --wait).

  --wait 30s    how long to wait for the waiting jobs to move (0: do not wait)
  --json        {node, drained, waiting, running}

Example: orion drain pi-8g && (do the maintenance) && orion undrain pi-8g`,
  options: { wait: { type: 'string' } },
  async run(ctx, values, args) {
    const node = nodeArg(args, 'drain');
    const waitMs = parseDuration(str(values, 'wait') ?? '30s');
    if (waitMs === null || waitMs < 0) throw new UsageError('--wait must be a duration like 30s (or 0)');
    if (!(await known(ctx, node))) ctx.err(`note: ${node} is not in the registry (yet); it is drained from its first report on`);
    await ctx.redis().sadd(ctx.n.drained, node);
    let c = await queueCounts(ctx, node);
    if (!values['json']) ctx.out(`${node} drained: no new work goes there; ${c.waiting} waiting job(s) to move, ${c.running} running (they finish there)`);
    const end = Date.now() + waitMs;
    while (c.waiting > 0 && Date.now() < end && !ctx.signal.aborted) {
      await sleep(250, ctx.signal);
      c = await queueCounts(ctx, node);
    }
    if (values['json']) ctx.out(JSON.stringify({ node, drained: true, ...c }));
    else if (c.waiting > 0 && waitMs > 0) ctx.out(`${c.waiting} job(s) still wait on ${node}: the bridge moves them once another node is eligible (is a bridge running?)`);
    else if (waitMs > 0) ctx.out(`no job waits on ${node}${c.running > 0 ? `; ${c.running} still running there` : ''}`);
    return 0;
  },
};

export const undrain: Command = {
  name: 'undrain',
  summary: 'put a drained node back in rotation',
  usage: 'NODE [--json]',
  help: `Puts NODE back in rotation: from the bridges' next registry refresh it is eligible again
(if it is fresh, cool and has RAM to spare).

  --json    {node, drained}`,
  options: {},
  async run(ctx, values, args) {
    const node = nodeArg(args, 'undrain');
    const removed = await ctx.redis().srem(ctx.n.drained, node);
    if (values['json']) ctx.out(JSON.stringify({ node, drained: false, was_drained: removed === 1 }));
    else ctx.out(removed === 1 ? `${node} back in rotation` : `${node} was not drained`);
    return 0;
  },
};

export const forget: Command = {
  name: 'forget',
  summary: 'remove a dead node and its queues from the registry and Bull Board',
  usage: 'NODE [--force] [--json]',
  help: `Removes NODE from the registry (its health entry, its TTL key, the node set, the drained
set) and deletes its job and heartbeat queues, so that it leaves /nodes, the page and Bull
Board. Refused while the node is alive (its worker would add it again) or while jobs wait or
run in its queue (they would be lost): the bridge moves a dead node's jobs to eligible nodes
first. --force forgets it all the same.

  --force   forget a live node, or one whose queue still holds jobs (those jobs are deleted)
  --json    {node, forgotten, jobs_deleted}

Example: orion forget pi-4g`,
  options: { force: { type: 'boolean' } },
  async run(ctx, values, args) {
    const node = nodeArg(args, 'forget');
    const redis = ctx.redis();
    const force = values['force'] === true;
    const [alive, isKnown, c] = await Promise.all([redis.exists(ctx.n.healthKey(node)), known(ctx, node), queueCounts(ctx, node)]);
    if (!isKnown && c.waiting + c.running === 0) {
      ctx.err(`${node} is not in the registry`);
      return 1;
    }
    if (!force && alive === 1) {
      ctx.err(`${node} is alive (it reported in the last seconds): stop its worker first, or drain it (orion drain ${node}), or use --force`);
      return 1;
    }
    if (!force && c.waiting + c.running > 0) {
      ctx.err(`${node}'s queue still holds ${c.waiting} waiting and ${c.running} running job(s); the bridge moves them to eligible nodes, try again then (or --force to delete them)`);
      return 1;
    }
    await redis.multi().hdel(ctx.n.health, node).srem(ctx.n.nodes, node).srem(ctx.n.drained, node).del(ctx.n.healthKey(node)).zrem(ctx.n.healthVersions, node).exec();
    for (const prefix of [ctx.n.nodeQueuePrefix, ctx.n.heartbeatQueuePrefix]) {
      const q = new Queue(node, { prefix, connection: redis }, HeldConnection);
      try {
        await q.obliterate({ force: true });
      } finally {
        await q.close();
      }
    }
    const deleted = c.waiting + c.running;
    if (values['json']) ctx.out(JSON.stringify({ node, forgotten: true, jobs_deleted: deleted }));
    else ctx.out(`${node} forgotten: out of the registry, its queues deleted${deleted ? ` (${deleted} job(s) with them)` : ''}`);
    return 0;
  },
};
