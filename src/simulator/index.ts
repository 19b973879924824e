/**
 * orion-ollama-sim: HTTP servers that speak Ollama's API and behave like Ollama on a Raspberry
 * Pi 5. Start one in-process (`startSimulator({ port: 0 })`) or several
 * (`startSimulatorCluster([...])`); each handle has a `node` to steer faults and temperature.
 */
import { silentLogger, type Logger } from '../lib/logger.js';
import { SimClock } from './clock.js';
import type { GenerationEngine } from './engine.js';
import type { Faults } from './faults.js';
import type { ScriptRule } from './script.js';
import { SimulatedNode } from './node.js';
import { ProfileEngine } from './profile-engine.js';
import { DEFAULT_PROFILE, getProfile, STORAGE_BANDWIDTH, type NodeProfile, type StorageKind, type ThermalProfile } from './profiles.js';
import { SimServer } from './server.js';
import { ThermalModel } from './thermal.js';
import { parseKeepAlive } from './wire.js';

export interface SimulatorOptions {
  /** Node label used in logs and `/_sim/state`. @defaultValue the profile name */
  id?: string;
  /** A profile name (`pi5-16g`, `pi5-8g`, `pi5-4g`) or a profile object. @defaultValue 'pi5-8g' */
  profile?: string | NodeProfile;
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @defaultValue 0 */
  port?: number;
  /** Time-scale divisor for every simulated duration. @defaultValue 1 */
  speed?: number;
  /** Where models load from: a storage kind or bytes per second. @defaultValue the profile's */
  storage?: StorageKind | number;
  /** Installed models. @defaultValue the profile's list (an engine's own models for other engines) */
  installed?: string[];
  /** Models already loaded at start; keep-alive forever unless given. */
  loaded?: Array<string | { model: string; keepAlive?: string | number }>;
  /** OLLAMA_NUM_PARALLEL. @defaultValue 1 */
  numParallel?: number;
  /** OLLAMA_MAX_LOADED_MODELS. @defaultValue 3 */
  maxLoadedModels?: number;
  /** OLLAMA_MAX_QUEUE. @defaultValue 512 */
  maxQueue?: number;
  /** OLLAMA_KEEP_ALIVE: default keep-alive, seconds or a duration string. @defaultValue '5m' */
  keepAlive?: string | number;
  faults?: Partial<Faults>;
  /** Writes `<sysRoot>/sys/class/thermal/thermal_zone0/temp` when set. */
  sysRoot?: string;
  /** Writes `<procRoot>/proc/meminfo` and `<procRoot>/proc/stat` when set. */
  procRoot?: string;
  /** Overrides of the profile's thermal figures (ambientC, maxC, heatTauS, coolTauS, ...). */
  thermal?: Partial<ThermalProfile>;
  /** Starting temperature, Celsius. @defaultValue the ambient */
  initialTemperatureC?: number;
  /** Bounds of a response's natural length in tokens (profile engine). @defaultValue [8, 64] */
  responseTokens?: [number, number];
  /** Download speed of /api/pull, bytes per second. @defaultValue 25 MB/s */
  pullBandwidth?: number;
  /** What /api/version reports. @defaultValue '0.12.6' */
  version?: string;
  /** Seed of the errorRate dice. @defaultValue 1 */
  faultSeed?: number;
  /** Scripted answers for generate and chat requests (see script.ts). @defaultValue none */
  script?: ScriptRule[];
  /** Keep every request for `node.requests()` and `GET /_sim/requests`. @defaultValue false */
  recordRequests?: boolean;
  /** Produces the text and timings; the simulator owns and closes it. @defaultValue a ProfileEngine */
  engine?: GenerationEngine;
  /** @defaultValue a silent logger */
  logger?: Logger;
}

export interface SimulatorHandle {
  id: string;
  /** `http://127.0.0.1:<port>`, what `new Ollama({ host })` takes. */
  url: string;
  port: number;
  node: SimulatedNode;
  /** Stop listening, end open connections, stop timers. Safe to call twice. */
  close(): Promise<void>;
}

export interface SimulatorCluster {
  nodes: SimulatorHandle[];
  /** The node with this id; throws when there is none. */
  node(id: string): SimulatorHandle;
  close(): Promise<void>;
}

function positiveInt(name: string, v: number | undefined, fallback: number): number {
  const n = v ?? fallback;
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number >= 1, got ${v}`);
  return n;
}

/** The simulated node an options object describes, with its clock, thermal model and engine. */
function buildNode(opts: SimulatorOptions): { node: SimulatedNode; id: string; log: Logger; engine: GenerationEngine } {
  const profile = typeof opts.profile === 'object' ? opts.profile : getProfile(opts.profile ?? DEFAULT_PROFILE);
  const id = opts.id ?? profile.name;
  const clock = new SimClock(opts.speed ?? 1);
  const log = (opts.logger ?? silentLogger).child({ component: 'ollama-sim', node: id });
  const thermal = new ThermalModel({ ...profile.thermal, ...opts.thermal }, clock, opts.initialTemperatureC);
  const storage = opts.storage ?? profile.storage;
  const diskBandwidth = typeof storage === 'number' ? storage : STORAGE_BANDWIDTH[storage];
  if (!(diskBandwidth > 0)) throw new Error(`storage must be one of ${Object.keys(STORAGE_BANDWIDTH).join(', ')} or bytes per second`);
  const engine =
    opts.engine ??
    new ProfileEngine({ profile, clock, diskBandwidth, responseTokens: opts.responseTokens, rateFactor: () => thermal.rateFactor() });
  const node = new SimulatedNode({
    id,
    profile,
    clock,
    engine,
    thermalModel: thermal,
    installed: opts.installed ?? (engine.kind === 'profile' ? profile.installed : engine.models().map((m) => m.name)),
    numParallel: positiveInt('numParallel', opts.numParallel, 1),
    maxLoadedModels: positiveInt('maxLoadedModels', opts.maxLoadedModels, 3),
    maxQueue: positiveInt('maxQueue', opts.maxQueue, 512),
    defaultKeepAliveMs: parseKeepAlive(opts.keepAlive ?? '5m') ?? 300_000,
    faults: opts.faults,
    sysRoot: opts.sysRoot,
    procRoot: opts.procRoot,
    pullBandwidth: opts.pullBandwidth ?? 25_000_000,
    version: opts.version ?? '0.12.6',
    faultSeed: opts.faultSeed ?? 1,
    script: opts.script,
    recordRequests: opts.recordRequests,
    log,
  });
  return { node, id, log, engine };
}

export async function startSimulator(opts: SimulatorOptions = {}): Promise<SimulatorHandle> {
  const { node, id, log, engine } = buildNode(opts);
  const server = new SimServer(node, opts.host ?? '127.0.0.1', opts.port ?? 0);
  try {
    await node.start();
    for (const entry of opts.loaded ?? []) {
      const { model, keepAlive } = typeof entry === 'string' ? { model: entry, keepAlive: -1 } : entry;
      const info = node.installedModel(model);
      if (!info) throw new Error(`cannot preload '${model}': not installed on ${id}`);
      await node.scheduler.preload(info.name, info.memoryBytes, parseKeepAlive(keepAlive ?? -1) ?? -1);
    }
    await server.listen();
  } catch (err) {
    await server.close();
    await node.close();
    throw err;
  }
  log.info({ url: server.url, profile: node.profile.name, speed: node.clock.speed, engine: engine.kind }, 'ollama simulator listening');

  let closing: Promise<void> | undefined;
  return {
    id,
    url: server.url,
    port: server.port,
    node,
    close: () =>
      (closing ??= (async () => {
        await server.close();
        await node.close();
        log.info({}, 'ollama simulator closed');
      })()),
  };
}

export async function startSimulatorCluster(nodes: SimulatorOptions[]): Promise<SimulatorCluster> {
  const ids = nodes.map((n, i) => n.id ?? (typeof n.profile === 'object' ? n.profile.name : (n.profile ?? `${DEFAULT_PROFILE}-${i}`)));
  const dup = ids.find((x, i) => ids.indexOf(x) !== i);
  if (dup) throw new Error(`duplicate node id '${dup}'`);
  const started: SimulatorHandle[] = [];
  try {
    for (const [i, n] of nodes.entries()) started.push(await startSimulator({ ...n, id: ids[i] }));
  } catch (err) {
    await Promise.all(started.map((h) => h.close()));
    throw err;
  }
  let closing: Promise<void> | undefined;
  return {
    nodes: started,
    node(id) {
      const h = started.find((s) => s.id === id);
      if (!h) throw new Error(`no simulated node '${id}' (have ${ids.join(', ')})`);
      return h;
    },
    close: () => (closing ??= Promise.all(started.map((h) => h.close())).then(() => undefined)),
  };
}

export { SimulatedNode, type LoadedModel, type NodeCounters, type NodeState, type RecordedRequest } from './node.js';
export { parseScript, type ScriptReport, type ScriptRule } from './script.js';
export { NO_FAULTS, parseFaults, type Faults } from './faults.js';
export { ProfileEngine } from './profile-engine.js';
export { MODEL_CATALOG, NODE_PROFILES, STORAGE_BANDWIDTH, getProfile, profileNames, type ModelSpec, type NodeProfile, type ThermalProfile } from './profiles.js';
export type { EngineModelInfo, GenerateInput, GenerateResult, GenerationEngine } from './engine.js';
export { normalizeModelName } from './wire.js';
