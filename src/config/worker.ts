/** Configuration of `orion-inference-worker`: the guide's flags plus SPEC.md's. */
import { isValidNodeId } from '../lib/names.js';
import { httpOptions, logOption, redisOptions } from './common.js';
import { parsers, resolveOptions, type OptionInput, type OptionSpec, type Resolved } from './options.js';

export const workerOptions = {
  nodeId: {
    flag: 'node-id',
    env: 'ORION_NODE_ID',
    description: 'Unique node identifier (1-64 of A-Z a-z 0-9 . _ -)',
    required: true,
    parse: (raw: string): string => {
      if (!isValidNodeId(raw)) throw new Error('a node id is 1-64 characters of [A-Za-z0-9._-] (no ":", BullMQ forbids it in queue names)');
      return raw;
    },
  } satisfies OptionSpec<string>,
  ...redisOptions,
  ollamaHost: {
    flag: 'ollama-host',
    env: 'ORION_OLLAMA_HOST',
    description: 'Ollama server URL',
    default: 'http://localhost:11434',
    defaultText: 'http://localhost:11434',
    parse: parsers.url,
  } satisfies OptionSpec<string>,
  ollamaTimeout: {
    flag: 'ollama-timeout',
    env: 'ORION_OLLAMA_TIMEOUT',
    description: 'An Ollama call that sends nothing this long (no first byte, no next chunk) is given up and retried on another node',
    default: 300_000,
    defaultText: '5m',
    parse: parsers.duration(1000),
  } satisfies OptionSpec<number>,
  ...httpOptions(8081),
  concurrency: {
    flag: 'concurrency',
    env: 'ORION_CONCURRENCY',
    description: 'Jobs run at once (default: by RAM tier, 2 at >= 12 GiB, 1 at 6-12 GiB)',
    defaultText: 'by RAM tier',
    parse: parsers.int(1, 64),
  } satisfies OptionSpec<number>,
  procRoot: {
    flag: 'proc-root',
    env: 'ORION_PROC_ROOT',
    description: 'Root of the tree holding proc/meminfo',
    default: '/',
    defaultText: '/',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  sysRoot: {
    flag: 'sys-root',
    env: 'ORION_SYS_ROOT',
    description: 'Root of the tree holding sys/class/thermal',
    default: '/',
    defaultText: '/',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  heartbeatInterval: {
    flag: 'heartbeat-interval',
    env: 'ORION_HEARTBEAT_INTERVAL',
    description: 'How often health is published',
    default: 5000,
    defaultText: '5s',
    parse: parsers.duration(100),
  } satisfies OptionSpec<number>,
  healthTtl: {
    flag: 'health-ttl',
    env: 'ORION_HEALTH_TTL',
    description: 'TTL of {prefix}:health:{nodeID}; its expiry marks the node dead',
    default: 15000,
    defaultText: '15s',
    parse: parsers.duration(1000),
  } satisfies OptionSpec<number>,
  lockDuration: {
    flag: 'lock-duration',
    env: 'ORION_LOCK_DURATION',
    description: 'BullMQ job lock, renewed while a job runs; a dead worker\'s running jobs move once its health key expired and their lock lapsed',
    default: 10000,
    defaultText: '10s',
    parse: parsers.duration(1000),
  } satisfies OptionSpec<number>,
  ...logOption,
};

export type WorkerConfig = Resolved<typeof workerOptions>;

export function loadWorkerConfig(input: OptionInput): WorkerConfig {
  return resolveOptions(workerOptions, input);
}
