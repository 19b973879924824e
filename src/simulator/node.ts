/**
 * One simulated Raspberry Pi running Ollama: its installed models, the scheduler, the engine,
 * heat, the files a worker reads, fault knobs and counters. The HTTP server in front of it is
 * separate (server.ts); this object is the control surface tests and demos hold.
 */
import type { Logger } from '../lib/logger.js';
import { SimClock, monoNow } from './clock.js';
import type { EngineModelInfo, GenerationEngine } from './engine.js';
import { NO_FAULTS, parseFaults, type Faults } from './faults.js';
import { HostFiles } from './host-files.js';
import type { NodeProfile } from './profiles.js';
import { Scheduler, type RunnerView } from './scheduler.js';
import { seededRandom } from '../lib/random.js';
import { Periodic } from '../lib/periodic.js';
import { matchRule, parseScript, type ScriptRule } from './script.js';
import { ThermalModel } from './thermal.js';
import { modelKey } from './wire.js';

export interface SimulatedNodeOptions {
  id: string;
  profile: NodeProfile;
  clock: SimClock;
  engine: GenerationEngine;
  thermalModel: ThermalModel;
  installed: string[];
  numParallel: number;
  maxLoadedModels: number;
  maxQueue: number;
  defaultKeepAliveMs: number;
  faults?: Partial<Faults>;
  sysRoot?: string;
  procRoot?: string;
  /** Bytes per second a pull downloads at. */
  pullBandwidth: number;
  version: string;
  faultSeed: number;
  /** Scripted answers (see script.ts). */
  script?: ScriptRule[];
  /** Keep a record of every request (`requests()`). */
  recordRequests?: boolean;
  log: Logger;
}

/** One request as the node saw it (kept when `recordRequests` is on). */
export interface RecordedRequest {
  method: string;
  /** The path, without the query. */
  path: string;
  /** The JSON body, once read (undefined for requests without one). */
  body: Record<string, unknown> | undefined;
  /** The client closed the connection before the answer was complete. */
  clientClosed: boolean;
  /** The answer was written to the end. */
  finished: boolean;
}

export interface InstalledModel {
  info: EngineModelInfo;
  modifiedAt: Date;
}

export interface LoadedModel {
  name: string;
  state: 'loading' | 'ready';
  sizeBytes: number;
  active: number;
  keepAliveMs: number;
  /** When it unloads if left idle; null when kept forever. */
  expiresAt: Date | null;
}

export interface NodeCounters {
  /** Every /api/generate and /api/chat request received. */
  requests: number;
  generate: number;
  chat: number;
  /** `/api/embed` calls answered. */
  embed: number;
  completed: number;
  aborted: number;
  errors: number;
  faultsInjected: number;
  coldLoads: number;
  unloads: number;
  evictions: number;
  /** Answered 503 because the queue was full. */
  rejected: number;
}

export interface NodeState {
  id: string;
  profile: string;
  url: string | null;
  listening: boolean;
  version: string;
  speed: number;
  engine: string;
  ram: { totalBytes: number; usedBytes: number; availableBytes: number; modelsBytes: number };
  temperatureC: number;
  temperaturePinned: boolean;
  installed: string[];
  loaded: Array<{ name: string; state: string; sizeBytes: number; active: number; keepAliveMs: number; expiresAt: string | null }>;
  queue: { pending: number; active: number; generating: number; numParallel: number; maxLoadedModels: number; maxQueue: number };
  counters: NodeCounters;
  faults: Faults;
}

/** What the HTTP server tells the node about itself. */
export interface EndpointInfo {
  url(): string | null;
  listening(): boolean;
  settled(): Promise<void>;
}

const TICK_MS = 200;

export class SimulatedNode {
  readonly id: string;
  readonly profile: NodeProfile;
  readonly clock: SimClock;
  readonly engine: GenerationEngine;
  readonly scheduler: Scheduler;
  readonly version: string;
  readonly pullBandwidth: number;
  readonly log: Logger;
  private readonly thermal: ThermalModel;
  private readonly hostFiles: HostFiles;
  private readonly known = new Map<string, EngineModelInfo>();
  private readonly installed = new Map<string, Date>();
  private currentFaults: Faults;
  private readonly faultListeners: Array<(f: Faults) => void> = [];
  private readonly random: () => number;
  private generating = 0;
  /** Advances heat and memory between requests too (`tick` also runs at every change). */
  private readonly ticker = new Periodic(TICK_MS, async () => this.tick(), { unref: true });
  private lastTick = monoNow();
  private endpoint: EndpointInfo | undefined;
  private rules: ScriptRule[];
  private readonly journal: RecordedRequest[] | undefined;
  private readonly count = { requests: 0, generate: 0, chat: 0, embed: 0, completed: 0, aborted: 0, errors: 0, faultsInjected: 0 };

  constructor(private readonly opts: SimulatedNodeOptions) {
    this.id = opts.id;
    this.profile = opts.profile;
    this.clock = opts.clock;
    this.engine = opts.engine;
    this.version = opts.version;
    this.pullBandwidth = opts.pullBandwidth;
    this.log = opts.log;
    this.thermal = opts.thermalModel;
    this.random = seededRandom(opts.faultSeed);
    this.currentFaults = { ...NO_FAULTS, ...parseFaults(opts.faults ?? {}) };
    this.rules = parseScript(opts.script ?? []);
    this.journal = opts.recordRequests ? [] : undefined;
    for (const m of opts.engine.models()) this.known.set(modelKey(m.name), m);
    const since = Date.now() - 86_400_000;
    opts.installed.forEach((name, i) => {
      const info = this.modelInfo(name);
      if (!info) throw new Error(`cannot install '${name}': not a model of profile ${opts.profile.name} (${[...this.known.values()].map((m) => m.name).join(', ')})`);
      this.installed.set(info.name, new Date(since - i * 3_600_000));
    });
    this.hostFiles = new HostFiles({ sysRoot: opts.sysRoot, procRoot: opts.procRoot, log: opts.log }, opts.profile.cores);
    this.scheduler = new Scheduler({
      engine: opts.engine,
      clock: opts.clock,
      numParallel: opts.numParallel,
      maxLoadedModels: opts.maxLoadedModels,
      maxQueue: opts.maxQueue,
      defaultKeepAliveMs: opts.defaultKeepAliveMs,
      modelMemoryBytes: opts.profile.ramBytes - opts.profile.baseUsedBytes,
      log: opts.log,
      onChange: () => this.writeMemory(),
    });
  }

  /** Write the host files and start the heat clock. */
  async start(): Promise<void> {
    this.writeMemory();
    this.hostFiles.writeTemperature(this.thermal.temperature);
    this.ticker.start();
    await this.hostFiles.flush();
  }

  attachEndpoint(endpoint: EndpointInfo): void {
    this.endpoint = endpoint;
  }

  // ---- models ----

  /** The engine's model matching a name (`llama3` means `llama3:latest`), installed or not. */
  modelInfo(name: string): EngineModelInfo | undefined {
    return this.known.get(modelKey(name));
  }

  /** The installed model a name refers to, or undefined. */
  installedModel(name: string): EngineModelInfo | undefined {
    const info = this.modelInfo(name);
    return info && this.installed.has(info.name) ? info : undefined;
  }

  installedModels(): InstalledModel[] {
    return [...this.installed.entries()]
      .map(([name, modifiedAt]) => ({ info: this.known.get(modelKey(name))!, modifiedAt }))
      .sort((a, b) => b.modifiedAt.getTime() - a.modifiedAt.getTime());
  }

  install(name: string): void {
    const info = this.modelInfo(name);
    if (!info) throw new Error(`unknown model '${name}'`);
    this.installed.set(info.name, new Date());
  }

  /** Remove a model from disk (and from memory once idle); false when it was not installed. */
  uninstall(name: string): boolean {
    const info = this.installedModel(name);
    if (!info) return false;
    this.installed.delete(info.name);
    this.scheduler.expire(info.name);
    return true;
  }

  loadedModels(): LoadedModel[] {
    return this.scheduler
      .runnersView()
      .filter((r): r is RunnerView & { state: 'loading' | 'ready' } => r.state !== 'unloading')
      .map((r) => ({
        name: r.name,
        state: r.state,
        sizeBytes: r.memoryBytes,
        active: r.active,
        keepAliveMs: r.keepAliveMs,
        expiresAt: r.expiresAt === null ? null : new Date(r.expiresAt),
      }));
  }

  // ---- faults ----

  faults(): Faults {
    return { ...this.currentFaults };
  }

  /** Change the named knobs (validated like the HTTP endpoint) and return them all. */
  setFaults(update: Partial<Faults>): Faults {
    const parsed = parseFaults(update);
    this.currentFaults = { ...this.currentFaults, ...parsed };
    this.log.info({ faults: parsed }, 'faults changed');
    for (const listener of this.faultListeners) listener(this.faults());
    return this.faults();
  }

  clearFaults(): Faults {
    return this.setFaults({ ...NO_FAULTS });
  }

  onFaultsChange(listener: (f: Faults) => void): void {
    this.faultListeners.push(listener);
  }

  /** Roll the errorRate dice for one request. */
  rollError(): boolean {
    const rate = this.currentFaults.errorRate;
    return rate > 0 && this.random() < rate;
  }

  /** Wait until the listening socket matches the faults (after refuseConnections changes). */
  async settled(): Promise<void> {
    await this.endpoint?.settled();
  }

  // ---- scripted answers ----

  script(): ScriptRule[] {
    return structuredClone(this.rules);
  }

  /** Replace the scripted answers (validated like the HTTP endpoint); `[]` turns them off. */
  setScript(rules: ScriptRule[]): ScriptRule[] {
    this.rules = parseScript(rules);
    this.log.info({ rules: this.rules.length }, 'script changed');
    return this.script();
  }

  /** The rule that answers a generate or chat request with this body, if any. */
  scriptedAnswer(body: Record<string, unknown>): ScriptRule | undefined {
    return matchRule(this.rules, body);
  }

  // ---- request record ----

  /** Every request so far, oldest first (empty unless `recordRequests`); live objects. */
  requests(): readonly RecordedRequest[] {
    return this.journal ?? [];
  }

  /** Start a record for a request arriving, or undefined when not recording. */
  record(method: string, path: string): RecordedRequest | undefined {
    if (!this.journal) return undefined;
    const rec: RecordedRequest = { method, path, body: undefined, clientClosed: false, finished: false };
    this.journal.push(rec);
    return rec;
  }

  // ---- heat ----

  /**
   * Set the temperature in Celsius. It holds there (the sysfs file reads that value) until
   * `setTemperature(null)` hands it back to the heat model; pass `{ hold: false }` to let the
   * model carry on from the new value at once.
   */
  setTemperature(celsius: number | null, options: { hold?: boolean } = {}): void {
    this.thermal.set(celsius, options.hold ?? true);
    this.tick();
  }

  temperature(): number {
    return this.thermal.temperature;
  }

  // ---- accounting used by the API handlers ----

  countRequest(kind: 'generate' | 'chat'): void {
    this.count.requests++;
    this.count[kind]++;
  }

  countEmbed(): void {
    this.count.requests++;
    this.count.embed++;
  }

  countOutcome(outcome: 'completed' | 'aborted' | 'errors' | 'faultsInjected'): void {
    this.count[outcome]++;
  }

  /** Mark a generation running (heat, CPU); call the returned function when it ends. */
  beginGeneration(): () => void {
    this.tick();
    this.generating++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.tick();
      this.generating--;
    };
  }

  /**
   * Nanoseconds to report for a measured wall-clock span. The profile engine waits on the scaled
   * clock, so its spans are multiplied back by `speed` to read like a Pi's; another engine's work
   * is real and reported as measured.
   */
  reportNs(realMs: number): number {
    const scale = this.engine.kind === 'profile' ? this.clock.speed : 1;
    return Math.max(0, Math.round(realMs * scale * 1e6));
  }

  counters(): NodeCounters {
    return { ...this.count, ...this.scheduler.counters };
  }

  state(): NodeState {
    this.tick();
    const modelsBytes = this.scheduler.usedMemory();
    const used = this.profile.baseUsedBytes + modelsBytes;
    return {
      id: this.id,
      profile: this.profile.name,
      url: this.endpoint?.url() ?? null,
      listening: this.endpoint?.listening() ?? false,
      version: this.version,
      speed: this.clock.speed,
      engine: this.engine.kind,
      ram: { totalBytes: this.profile.ramBytes, usedBytes: used, availableBytes: this.profile.ramBytes - used, modelsBytes },
      temperatureC: Math.round(this.thermal.temperature * 100) / 100,
      temperaturePinned: this.thermal.isPinned,
      installed: this.installedModels().map((m) => m.info.name),
      loaded: this.scheduler.runnersView().map((r) => ({
        name: r.name,
        state: r.state,
        sizeBytes: r.memoryBytes,
        active: r.active,
        keepAliveMs: r.keepAliveMs,
        expiresAt: r.expiresAt === null ? null : new Date(r.expiresAt).toISOString(),
      })),
      queue: {
        pending: this.scheduler.pendingCount(),
        active: this.scheduler.activeCount(),
        generating: this.generating,
        numParallel: this.opts.numParallel,
        maxLoadedModels: this.opts.maxLoadedModels,
        maxQueue: this.opts.maxQueue,
      },
      counters: this.counters(),
      faults: this.faults(),
    };
  }

  /** Wait for the host files to be written (tests read them right after). */
  async flushFiles(): Promise<void> {
    this.tick();
    await this.hostFiles.flush();
  }

  async close(): Promise<void> {
    await this.ticker.stop();
    this.scheduler.close();
    await this.engine.close().catch((err: unknown) => this.log.warn({ err }, 'engine close failed'));
    await this.hostFiles.flush();
  }

  private tick(): void {
    const now = monoNow();
    const elapsed = now - this.lastTick;
    this.lastTick = now;
    const busy = this.generating > 0 ? 1 : 0;
    const iowait = this.scheduler.loadingCount() > 0 ? 0.3 : 0;
    this.thermal.step(Math.max(busy, iowait), now);
    this.hostFiles.writeTemperature(this.thermal.temperature);
    this.hostFiles.advanceCpu(elapsed, busy, iowait);
  }

  private writeMemory(): void {
    this.hostFiles.writeMemory({ totalBytes: this.profile.ramBytes, usedBytes: this.profile.baseUsedBytes + this.scheduler.usedMemory() });
  }
}
