/**
 * Adding many jobs, to one BullMQ queue or to many, in one script call.
 *
 * BullMQ adds each job with a call of its own add script (`addPrioritizedJob`, or
 * `addStandardJob` for priority 0), built from a `Job` object: the object, its options mapped
 * and packed, its data and a dozen other fields serialised, and a command with the queue's nine
 * keys written out. For the bridge, which places tens of thousands of jobs a minute, adding
 * jobs that way took about two fifths of its CPU in a backlog drain (BENCHMARKS.md, P1).
 *
 * Here BullMQ's own add script, read from the installed package, is wrapped in a loop that
 * runs it once for each job of a batch: one call carries each queue's key prefix and the
 * jobs' options once and, per job, only its id and data. What Redis holds afterwards is what
 * `Queue.add` would have left, key for key and event for event (test/integration/
 * bull-batch.test.ts compares the two and has a BullMQ Worker run the jobs), so every BullMQ
 * reader, Bull Board included, sees ordinary jobs. Should the installed BullMQ lay its scripts
 * out differently, `BatchAdds.load` answers undefined and the caller adds jobs one by one
 * through BullMQ's own API.
 *
 * As with BullMQ's own adds, a call that Redis fails half-way (a queue key of the wrong type)
 * keeps what it wrote before the failure: scripts do not roll back.
 *
 * The wrapped call adds groups of jobs, each group to one queue and at one priority:
 *   KEYS    none
 *   ARGV    job name, timestamp, the number of option sets and the sets (JSON; each job's id
 *           is set in its set), a line per group 'option set (from 1),number of jobs', then per
 *           group: its queue's key prefix, and per job: id, data
 *   reply   per job, in order, what BullMQ's script answers: the job id, or a negative error
 *           code
 * The script makes a queue's nine keys from its key prefix (BullMQ's `QueueKeys` naming,
 * checked at load), as BullMQ's own scripts make each job's key from it: a thousand node queues
 * in a call would otherwise be nine thousand arguments to write and parse. So, like BullMQ's
 * job keys, they are not declared: ORION runs on one Redis server (or the one a sentinel
 * names), not on a cluster.
 */
import { createRequire } from 'node:module';
import { Job, QueueKeys as BullQueueKeys, type JobsOptions, type Queue } from 'bullmq';
import type { ChainableCommander, Redis, Result } from 'ioredis';

/** One job of a batch. */
export interface BatchJob {
  /** Its queue. */
  queue: Queue;
  id: string;
  /** BullMQ's priority: 0 adds to the wait list, above 0 to the prioritized set. */
  priority: number;
  /** The job's data, serialised (`JSON.stringify`, as BullMQ does it). */
  data: string;
}

/** What a job's options depend on: its id and its priority. */
export type JobKey = Pick<BatchJob, 'id' | 'priority'>;

/** One wrapped call queued on a pipeline: its jobs, in the order of the call's reply. */
export interface BatchCall<J extends BatchJob = BatchJob> {
  at: number;
  jobs: J[];
}

type QueueKeys = Queue['keys'];

/** Jobs in one call at most (see `BatchAdds.add`): about 6 ms of Redis's time. */
export const MAX_JOBS_PER_CALL = 250;

interface AddScript {
  command: 'orionAddPrioritizedJobs' | 'orionAddStandardJobs';
  /** BullMQ's script file and export, under `bullmq/dist/cjs/scripts/`. */
  file: string;
  exportName: string;
  /** The queue's keys, in the order BullMQ passes them to that script (its header lists them). */
  keys: (k: QueueKeys) => string[];
}

const SCRIPTS = {
  prioritized: {
    command: 'orionAddPrioritizedJobs',
    file: 'addPrioritizedJob-9.js',
    exportName: 'addPrioritizedJob',
    keys: (k) => [k.marker!, k.meta!, k.id!, k.prioritized!, k.delayed!, k.completed!, k.active!, k.events!, k.pc!],
  },
  standard: {
    command: 'orionAddStandardJobs',
    file: 'addStandardJob-9.js',
    exportName: 'addStandardJob',
    keys: (k) => [k.wait!, k.paused!, k.meta!, k.id!, k.completed!, k.delayed!, k.active!, k.events!, k.marker!],
  },
} satisfies Record<string, AddScript>;

/**
 * What each of a script's keys adds to the queue's key prefix (`marker`, `meta`, ...), in the
 * script's order; undefined unless every key is the prefix and a plain name.
 */
function keySuffixes(s: AddScript): string[] | undefined {
  const k = new BullQueueKeys('p').getKeys('q');
  const prefix = k['']!;
  const suffixes = s.keys(k).map((key) => (key.startsWith(prefix) ? key.slice(prefix.length) : ''));
  return suffixes.every((x) => /^[a-z-]+$/.test(x)) ? suffixes : undefined;
}

/**
 * BullMQ's script run once per job. Its text reads `KEYS` and `ARGV`; as the body of a local
 * function taking those two names it reads its group's keys and each job's own arguments,
 * packed as BullMQ packs them: [key prefix, id, name, timestamp] (no parent, repeat or
 * deduplication), the data, and the options.
 */
function wrap(content: string, suffixes: readonly string[]): string {
  return `local function addOne(KEYS, ARGV)
${content}
end
local suffixes = {${suffixes.map((x) => `'${x}'`).join(', ')}}
local name, timestamp = ARGV[1], tonumber(ARGV[2])
local sets = {}
for i = 1, tonumber(ARGV[3]) do sets[i] = cjson.decode(ARGV[3 + i]) end
local out, n, a = {}, 0, 5 + #sets
for set, count in string.gmatch(ARGV[4 + #sets], '(%d+),(%d+)\\n') do
  local prefix = ARGV[a]
  local keys = {}
  for k = 1, #suffixes do keys[k] = prefix .. suffixes[k] end
  local args = {prefix, '', name, timestamp}
  local opts = sets[tonumber(set)]
  a = a + 1
  for _ = 1, tonumber(count) do
    args[2] = ARGV[a]
    opts['jobId'] = ARGV[a]
    n = n + 1
    out[n] = addOne(keys, {cmsgpack.pack(args), ARGV[a + 1], cmsgpack.pack(opts)}) or false
    a = a + 2
  end
end
return out
`;
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** numkeys (0), then the arguments (see `wrap`). */
    orionAddPrioritizedJobs(...args: (string | number)[]): Result<(string | number | null)[], Context>;
    orionAddStandardJobs(...args: (string | number)[]): Result<(string | number | null)[], Context>;
  }
}

/** Read one of BullMQ's scripts from the installed package; undefined when it is not there. */
function bullScript(s: AddScript): string | undefined {
  try {
    const mod = createRequire(import.meta.url)(`bullmq/dist/cjs/scripts/${s.file}`) as Record<string, { content?: unknown; keys?: unknown } | undefined>;
    const script = mod[s.exportName];
    const content = script?.content;
    // The wrapper relies on the script taking nine keys and its job from ARGV[1..3].
    if (typeof content !== 'string' || script?.keys !== 9 || !content.includes('cmsgpack.unpack(ARGV[1])') || !content.includes('cmsgpack.unpack(ARGV[3])')) return undefined;
    return content;
  } catch {
    return undefined;
  }
}

export class BatchAdds {
  /** BullMQ's options of a job at each priority, as its `Job` maps them, with the id to fill in. */
  private readonly opts = new Map<number, string>();

  private constructor(private readonly lua: { prioritized: string; standard: string }) {}

  /** Define the two wrapped scripts on a connection (its pipelines get them too); idempotent. */
  define(redis: Redis): void {
    if (typeof (redis as Partial<Redis>).orionAddPrioritizedJobs === 'function') return;
    redis.defineCommand(SCRIPTS.prioritized.command, { lua: this.lua.prioritized });
    redis.defineCommand(SCRIPTS.standard.command, { lua: this.lua.standard });
  }

  /**
   * Queue the adds of `jobs` on `pipe`, whose connection `define` was given: one call for the
   * jobs with a priority, one for those without, whatever their queues; more when there are
   * over `maxPerCall` of a kind, so that Redis serves its other clients between calls (a call
   * holds Redis for about 25 us a job). `optionsOf` gives a job's options as `Queue.add` would
   * take them; jobs of one priority must have the same options but for their id. Returns the
   * calls, each with its place in the pipeline counted from `at` and its jobs (the caller's own
   * objects) in the order of its reply.
   */
  add<J extends BatchJob>(pipe: ChainableCommander, jobs: readonly J[], name: string, optionsOf: (job: JobKey) => JobsOptions, at: number, maxPerCall = MAX_JOBS_PER_CALL): BatchCall<J>[] {
    // A group goes to one queue at one priority: one key prefix and one options set in the call.
    const byQueue = new Map<Queue, Map<number, J[]>>();
    for (const job of jobs) {
      let byPriority = byQueue.get(job.queue);
      if (!byPriority) byQueue.set(job.queue, (byPriority = new Map()));
      const group = byPriority.get(job.priority);
      if (group) group.push(job);
      else byPriority.set(job.priority, [job]);
    }
    const calls: BatchCall<J>[] = [];
    const timestamp = String(Date.now());
    for (const script of [SCRIPTS.prioritized, SCRIPTS.standard]) {
      let sets: string[] = [];
      let groups = '';
      let args: string[] = [];
      let order: J[] = [];
      const send = (): void => {
        if (order.length === 0) return;
        pipe[script.command](0, name, timestamp, String(sets.length), ...sets, groups, ...args);
        calls.push({ at: at + calls.length, jobs: order });
        [sets, groups, args, order] = [[], '', [], []];
      };
      for (const [queue, byPriority] of byQueue) {
        for (const [priority, group] of byPriority) {
          if (priority > 0 !== (script === SCRIPTS.prioritized)) continue;
          for (let i = 0; i < group.length; ) {
            const part = group.slice(i, i + maxPerCall - order.length);
            const options = this.optionsAt(queue, name, part[0]!, optionsOf);
            let set = sets.indexOf(options);
            if (set < 0) set = sets.push(options) - 1;
            groups += `${set + 1},${part.length}\n`;
            args.push(queue.keys['']!);
            for (const job of part) {
              args.push(job.id, job.data);
              order.push(job);
            }
            i += part.length;
            if (order.length >= maxPerCall) send();
          }
        }
      }
      send();
    }
    return calls;
  }

  /** The options BullMQ stores for a job at this priority (JSON), taken once from a `Job` of its own. */
  private optionsAt(queue: Queue, name: string, job: JobKey, optionsOf: (job: JobKey) => JobsOptions): string {
    let o = this.opts.get(job.priority);
    if (o === undefined) {
      o = JSON.stringify(new Job(queue, name, {}, optionsOf(job), job.id).asJSON().opts);
      this.opts.set(job.priority, o);
    }
    return o;
  }

  /** The wrapped scripts, or undefined when the installed BullMQ's add scripts are not as expected. */
  static load(): BatchAdds | undefined {
    const prioritized = bullScript(SCRIPTS.prioritized);
    const standard = bullScript(SCRIPTS.standard);
    const prioritizedKeys = keySuffixes(SCRIPTS.prioritized);
    const standardKeys = keySuffixes(SCRIPTS.standard);
    if (prioritized === undefined || standard === undefined || prioritizedKeys === undefined || standardKeys === undefined) return undefined;
    return new BatchAdds({ prioritized: wrap(prioritized, prioritizedKeys), standard: wrap(standard, standardKeys) });
  }
}
