/**
 * Configuration of `orion-ollama-sim`: flags, their `ORION_SIM_*` twins (Ollama's own
 * `OLLAMA_NUM_PARALLEL`, `OLLAMA_MAX_LOADED_MODELS`, `OLLAMA_MAX_QUEUE` and `OLLAMA_KEEP_ALIVE`
 * are read when the twin is unset), and an optional JSON file of nodes. Pure apart from reading
 * that file, which is injectable.
 *
 * Precedence: a node's own fields in the file > flags > environment > the file's top-level
 * fields > defaults.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgv, parsers, resolveOptions, type OptionSpec, type OptionTable } from '../config/options.js';
import { ConfigError } from '../lib/errors.js';
import { logOption } from '../config/common.js';
import type { LogLevel } from '../lib/logger.js';
import { parseFaults, type Faults } from './faults.js';
import { getProfile, isStorageKind, profileNames, type StorageKind } from './profiles.js';
import type { SimulatorOptions } from './index.js';
import { parseKeepAlive } from './wire.js';

export interface NodeSpec {
  id: string;
  profile: string;
  port: number;
}

function parseNodeSpec(raw: string): NodeSpec {
  const m = /^([A-Za-z0-9._-]{1,64}):([A-Za-z0-9._-]+):(\d{1,5})$/.exec(raw.trim());
  if (!m) throw new Error(`'${raw}' is not id:profile:port (e.g. pi-8g:pi5-8g:11436)`);
  getProfile(m[2]!);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port ${port} is out of range`);
  return { id: m[1]!, profile: m[2]!, port };
}

const list = (raw: string): string[] =>
  raw
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

export const simOptions = {
  port: {
    flag: 'port',
    env: 'ORION_SIM_PORT',
    description: 'Port of the single node (0 picks a free one)',
    default: 11434,
    defaultText: '11434',
    parse: parsers.int(0, 65535),
  } satisfies OptionSpec<number>,
  host: {
    flag: 'host',
    env: 'ORION_SIM_HOST',
    description: 'Listen address of every node',
    default: '127.0.0.1',
    defaultText: '127.0.0.1',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  profile: {
    flag: 'profile',
    env: 'ORION_SIM_PROFILE',
    description: `Profile of the single node: ${profileNames().join(', ')}`,
    default: 'pi5-8g',
    defaultText: 'pi5-8g',
    parse: (raw: string): string => getProfile(raw).name,
  } satisfies OptionSpec<string>,
  nodeId: {
    flag: 'node-id',
    env: 'ORION_SIM_NODE_ID',
    description: 'Label of the single node in logs and /_sim/state',
    defaultText: 'the profile name',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  nodes: {
    flag: 'node',
    env: 'ORION_SIM_NODES',
    description: 'A node as id:profile:port; repeat the flag (comma-separate in the env) for several',
    defaultText: 'none (single node)',
    repeatable: true,
    parse: (raw: string): NodeSpec[] => list(raw).map(parseNodeSpec),
  } satisfies OptionSpec<NodeSpec[]>,
  config: {
    flag: 'config',
    env: 'ORION_SIM_CONFIG',
    description: 'JSON file: {"nodes":[{"id","profile","port",...}], ...defaults for every node}',
    defaultText: 'none',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  speed: {
    flag: 'speed',
    env: 'ORION_SIM_SPEED',
    description: 'Divide every simulated duration by this (100 runs a Pi 100x faster)',
    default: 1,
    defaultText: '1',
    parse: parsers.number(0.001, 1_000_000),
  } satisfies OptionSpec<number>,
  storage: {
    flag: 'storage',
    env: 'ORION_SIM_STORAGE',
    description: 'Where models load from: microsd (85 MB/s), nvme (450 MB/s) or nvme-gen3 (780 MB/s)',
    defaultText: "the profile's (microsd)",
    parse: (raw: string): StorageKind => {
      if (!isStorageKind(raw)) throw new Error('must be microsd, nvme or nvme-gen3');
      return raw;
    },
  } satisfies OptionSpec<StorageKind>,
  numParallel: {
    flag: 'num-parallel',
    env: 'ORION_SIM_NUM_PARALLEL',
    description: 'Requests one loaded model serves at once (OLLAMA_NUM_PARALLEL)',
    default: 1,
    defaultText: '1',
    parse: parsers.int(1, 64),
  } satisfies OptionSpec<number>,
  maxLoadedModels: {
    flag: 'max-loaded-models',
    env: 'ORION_SIM_MAX_LOADED_MODELS',
    description: 'Models loaded at once (OLLAMA_MAX_LOADED_MODELS)',
    default: 3,
    defaultText: '3',
    parse: parsers.int(1, 64),
  } satisfies OptionSpec<number>,
  maxQueue: {
    flag: 'max-queue',
    env: 'ORION_SIM_MAX_QUEUE',
    description: 'Requests waiting before 503 (OLLAMA_MAX_QUEUE)',
    default: 512,
    defaultText: '512',
    parse: parsers.int(1, 1_000_000),
  } satisfies OptionSpec<number>,
  keepAlive: {
    flag: 'keep-alive',
    env: 'ORION_SIM_KEEP_ALIVE',
    description: 'Default keep-alive, a duration (5m, 30s, -1 = forever) (OLLAMA_KEEP_ALIVE)',
    default: '5m',
    defaultText: '5m',
    parse: (raw: string): string => {
      parseKeepAlive(raw);
      return raw;
    },
  } satisfies OptionSpec<string>,
  loaded: {
    flag: 'loaded',
    env: 'ORION_SIM_LOADED',
    description: 'Models loaded at start, comma-separated (kept forever)',
    defaultText: 'none',
    parse: list,
  } satisfies OptionSpec<string[]>,
  installed: {
    flag: 'installed',
    env: 'ORION_SIM_INSTALLED',
    description: 'Installed models, comma-separated',
    defaultText: "the profile's",
    parse: list,
  } satisfies OptionSpec<string[]>,
  sysRoot: {
    flag: 'sys-root',
    env: 'ORION_SIM_SYS_ROOT',
    description: 'Write <root>/sys/class/thermal/thermal_zone0/temp (several nodes: <root>/<id>/sys/...)',
    defaultText: 'not written',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  procRoot: {
    flag: 'proc-root',
    env: 'ORION_SIM_PROC_ROOT',
    description: 'Write <root>/proc/meminfo and proc/stat (several nodes: <root>/<id>/proc/...)',
    defaultText: 'not written',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  ambientTemp: {
    flag: 'ambient-temp',
    env: 'ORION_SIM_AMBIENT_TEMP',
    description: 'Idle temperature, Celsius',
    defaultText: '45',
    parse: parsers.number(-40, 150),
  } satisfies OptionSpec<number>,
  maxTemp: {
    flag: 'max-temp',
    env: 'ORION_SIM_MAX_TEMP',
    description: 'Temperature under sustained load, Celsius',
    defaultText: '82',
    parse: parsers.number(-40, 150),
  } satisfies OptionSpec<number>,
  faults: {
    flag: 'faults',
    env: 'ORION_SIM_FAULTS',
    description: 'Initial faults as JSON, e.g. {"errorRate":0.1}',
    defaultText: 'none',
    parse: (raw: string): Partial<Faults> => parseFaults(JSON.parse(raw) as unknown),
  } satisfies OptionSpec<Partial<Faults>>,
  engine: {
    flag: 'engine',
    env: 'ORION_SIM_ENGINE',
    description: 'profile (Pi timings, made-up text) or llama (real llama.cpp generation on a tiny generated model)',
    default: 'profile' as 'profile' | 'llama',
    defaultText: 'profile',
    parse: (raw: string): 'profile' | 'llama' => {
      if (raw !== 'profile' && raw !== 'llama') throw new Error('must be profile or llama');
      return raw;
    },
  } satisfies OptionSpec<'profile' | 'llama'>,
  logLevel: { ...logOption.logLevel, env: 'ORION_SIM_LOG_LEVEL' },
} satisfies OptionTable;

export interface SimConfig {
  nodes: SimulatorOptions[];
  logLevel: LogLevel;
  /** Which engine produces the text (the llama engine is loaded only when asked for). */
  engine: 'profile' | 'llama';
}

const OLLAMA_TWINS: Record<string, string> = {
  ORION_SIM_NUM_PARALLEL: 'OLLAMA_NUM_PARALLEL',
  ORION_SIM_MAX_LOADED_MODELS: 'OLLAMA_MAX_LOADED_MODELS',
  ORION_SIM_MAX_QUEUE: 'OLLAMA_MAX_QUEUE',
  ORION_SIM_KEEP_ALIVE: 'OLLAMA_KEEP_ALIVE',
};

const FILE_KEYS = new Set([
  'nodes', 'id', 'profile', 'host', 'port', 'speed', 'storage', 'installed', 'loaded', 'numParallel', 'maxLoadedModels',
  'maxQueue', 'keepAlive', 'faults', 'sysRoot', 'procRoot', 'thermal', 'initialTemperatureC', 'responseTokens',
  'pullBandwidth', 'version', 'faultSeed',
]);

function readConfigFile(path: string, readFile: (p: string) => string): { defaults: SimulatorOptions; nodes: SimulatorOptions[] } {
  let data: unknown;
  try {
    data = JSON.parse(readFile(path));
  } catch (err) {
    throw new ConfigError([`--config ${path}: ${(err as Error).message}`]);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new ConfigError([`--config ${path}: must hold a JSON object`]);
  const problems: string[] = [];
  const check = (obj: Record<string, unknown>, where: string): void => {
    for (const k of Object.keys(obj)) if (!FILE_KEYS.has(k) || (k === 'nodes' && where !== 'top level')) problems.push(`--config ${path}: unknown key '${k}' at ${where}`);
  };
  const { nodes, ...defaults } = data as Record<string, unknown>;
  check(data as Record<string, unknown>, 'top level');
  const list = Array.isArray(nodes) ? nodes : [];
  if (nodes !== undefined && !Array.isArray(nodes)) problems.push(`--config ${path}: "nodes" must be an array`);
  list.forEach((n, i) => {
    if (typeof n !== 'object' || n === null || Array.isArray(n)) {
      problems.push(`--config ${path}: nodes[${i}] must be an object`);
      return;
    }
    check(n as Record<string, unknown>, `nodes[${i}]`);
    const { id, profile, port } = n as Record<string, unknown>;
    if (typeof id !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(id)) problems.push(`--config ${path}: nodes[${i}].id must be 1-64 of [A-Za-z0-9._-]`);
    if (profile !== undefined && (typeof profile !== 'string' || !profileNames().includes(profile))) {
      problems.push(`--config ${path}: nodes[${i}].profile must be one of ${profileNames().join(', ')}`);
    }
    if (port !== undefined && (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535)) {
      problems.push(`--config ${path}: nodes[${i}].port must be 0-65535`);
    }
  });
  if (problems.length) throw new ConfigError(problems);
  return { defaults: defaults as SimulatorOptions, nodes: list as SimulatorOptions[] };
}

export function loadSimConfig(input: {
  argv: readonly string[];
  env: Record<string, string | undefined>;
  readFile?: (path: string) => string;
}): SimConfig {
  const env = { ...input.env };
  for (const [twin, ollama] of Object.entries(OLLAMA_TWINS)) if (!env[twin] && env[ollama]) env[twin] = env[ollama];
  const { flags, positional } = parseArgv(input.argv, simOptions);
  const o = resolveOptions(simOptions, { flags, positional, env });
  const table = simOptions as OptionTable;
  const explicit = (key: keyof typeof simOptions): boolean => {
    const spec = table[key]!;
    return flags[spec.flag] !== undefined || (env[spec.env] ?? '') !== '';
  };

  const file = o.config ? readConfigFile(o.config, input.readFile ?? ((p) => readFileSync(p, 'utf8'))) : undefined;
  const fromFlags: SimulatorOptions = {};
  const set = <K extends keyof SimulatorOptions>(flagKey: keyof typeof simOptions, key: K, value: SimulatorOptions[K]): void => {
    if (value !== undefined && (explicit(flagKey) || !file || !(key in file.defaults))) fromFlags[key] = value;
  };
  set('host', 'host', o.host);
  set('speed', 'speed', o.speed);
  set('storage', 'storage', o.storage);
  set('numParallel', 'numParallel', o.numParallel);
  set('maxLoadedModels', 'maxLoadedModels', o.maxLoadedModels);
  set('maxQueue', 'maxQueue', o.maxQueue);
  set('keepAlive', 'keepAlive', o.keepAlive);
  set('loaded', 'loaded', o.loaded);
  set('installed', 'installed', o.installed);
  set('faults', 'faults', o.faults);
  if (o.ambientTemp !== undefined || o.maxTemp !== undefined) {
    fromFlags.thermal = { ...(o.ambientTemp !== undefined && { ambientC: o.ambientTemp }), ...(o.maxTemp !== undefined && { maxC: o.maxTemp }) };
  }

  let nodes: SimulatorOptions[];
  const many = (o.nodes?.length ?? 0) + (file?.nodes.length ?? 0) > 0;
  if (!many) {
    nodes = [{ ...file?.defaults, ...fromFlags, id: o.nodeId ?? o.profile, profile: o.profile, port: o.port, sysRoot: o.sysRoot, procRoot: o.procRoot }];
  } else {
    const specs: SimulatorOptions[] = [...(o.nodes ?? []), ...(file?.nodes ?? [])];
    nodes = specs.map((spec) => {
      const id = spec.id!;
      return {
        ...file?.defaults,
        ...fromFlags,
        ...(o.sysRoot !== undefined && { sysRoot: join(o.sysRoot, id) }),
        ...(o.procRoot !== undefined && { procRoot: join(o.procRoot, id) }),
        ...spec,
      };
    });
    const ids = nodes.map((n) => n.id);
    const dup = ids.find((x, i) => ids.indexOf(x) !== i);
    if (dup) throw new ConfigError([`node id '${dup}' appears twice`]);
  }
  return { nodes, logLevel: o.logLevel, engine: o.engine };
}
