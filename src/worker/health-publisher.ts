/**
 * Collects the node's health (the machine, an Ollama probe, the jobs waiting in its queue) and
 * writes the health document, one write after another so an older document never overwrites
 * a newer one. After each collection it says whether the node should take jobs: Ollama answers
 * and Redis's maxmemory-policy evicts nothing.
 */
import { Ollama } from 'ollama';
import { Queue, type ConnectionOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { WorkerConfig } from '../config/worker.js';
import type { NodeHealth } from '../contracts/types.js';
import { HeldConnection, closeBull, settled } from '../lib/bull.js';
import type { InferenceJobData } from '../lib/bus.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import type { RedisWatch } from '../lib/redis-watch.js';
import { Serial } from '../lib/serial.js';
import { DuplicateWatch } from './duplicates.js';
import { CpuMeter, buildHealth, probeOllama, readSystem, writeHealth, type OllamaStatus } from './health.js';
import { httpFetch } from './http-fetch.js';
import type { WorkerMetrics } from './metrics.js';
import type { OutageLog } from './outage-log.js';

/** How long a health probe waits for Ollama before calling it unreachable. */
const OLLAMA_PROBE_TIMEOUT_MS = 2000;

export interface HealthPublisherOptions {
  config: Pick<WorkerConfig, 'nodeId' | 'ollamaHost' | 'procRoot' | 'sysRoot' | 'healthTtl'>;
  redis: Redis;
  n: Names;
  connection: ConnectionOptions;
  redisWatch: RedisWatch;
  concurrency: number;
  log: Logger;
  metrics: WorkerMetrics;
  errors: OutageLog;
  /** Jobs running now. */
  active: () => number;
  /** Whether the worker is shutting down (the node is then unavailable). */
  closing: () => boolean;
  /** After each collection (and when a job finds Ollama unreachable): take jobs or not, and why. */
  onVerdict: (take: boolean, reason: string) => void;
}

export class HealthPublisher {
  /** The node queue, read for the count of jobs waiting. */
  private readonly queue: Queue<InferenceJobData>;
  private readonly probeClient: Ollama;
  private readonly cpu: CpuMeter;
  private readonly duplicates = new DuplicateWatch();
  private ollama: OllamaStatus | undefined;
  /** Installed models the last time Ollama answered. */
  private lastInstalled: string[] | undefined;
  /** Their sizes, MB. */
  private lastSizesMb: Record<string, number> | undefined;
  /** Writes one after another. */
  private readonly writes = new Serial();
  private pending = 0;
  private failing = false;
  private lastAt = 0;

  constructor(private readonly o: HealthPublisherOptions) {
    const { config, connection, n } = o;
    this.queue = new Queue<InferenceJobData>(config.nodeId, { connection, prefix: n.nodeQueuePrefix }, HeldConnection);
    this.queue.on('error', o.errors.listener('node-queue'));
    this.probeClient = new Ollama({
      host: config.ollamaHost,
      fetch: (input, init) => httpFetch(input, { ...init, signal: AbortSignal.timeout(OLLAMA_PROBE_TIMEOUT_MS) }),
    });
    this.cpu = new CpuMeter(config.procRoot);
  }

  /** Whether the node takes work now: not closing, Ollama answered the last probe, Redis evicts nothing. */
  available(): boolean {
    return !this.o.closing() && this.ollama?.ok === true && !this.o.redisWatch.policy.refusing();
  }

  /** When a document was last written (ms since the epoch; 0 before the first). */
  get lastPublishedAt(): number {
    return this.lastAt;
  }

  /** Whether a write is under way (or waiting on Redis). */
  get publishing(): boolean {
    return this.pending > 0;
  }

  /** Collect and write the document now (after the writes before it); resolves with what was written. */
  publish(): Promise<NodeHealth | undefined> {
    this.pending++;
    return this.writes.run(() => this.collectAndWrite()).then(
      (doc) => this.published(doc),
      (err: unknown) => this.notPublished(err),
    );
  }

  private published(doc: NodeHealth): NodeHealth {
    this.pending--;
    this.lastAt = Date.now();
    this.o.metrics.healthPublished.inc({ result: 'ok' });
    if (this.failing) this.o.log.info({}, 'health published again');
    this.failing = false;
    return doc;
  }

  private notPublished(err: unknown): undefined {
    this.pending--;
    this.o.metrics.healthPublished.inc({ result: 'error' });
    if (!this.failing) this.o.log.warn({ err }, 'health not published; retrying on the next beat');
    this.failing = true;
    return undefined;
  }

  /** A job found Ollama unreachable: take no jobs, and say so now rather than at the next beat. */
  ollamaUnreachable(reason: string): void {
    this.ollama = { ok: false, reason };
    this.o.onVerdict(false, reason);
    void this.publish();
  }

  private async collectAndWrite(): Promise<NodeHealth> {
    const { config, redisWatch } = this.o;
    const [sys, status, counts] = await Promise.all([
      readSystem(this.cpu, config.procRoot, config.sysRoot),
      probeOllama(this.probeClient),
      this.queue.getJobCounts('wait', 'prioritized'),
    ]);
    this.noteOllama(status);
    const doc = buildHealth({
      nodeId: config.nodeId,
      ...sys,
      ollama: status,
      lastInstalled: this.lastInstalled,
      lastSizesMb: this.lastSizesMb,
      concurrency: this.o.concurrency,
      active: this.o.active(),
      waiting: (counts['wait'] ?? 0) + (counts['prioritized'] ?? 0),
      ...this.unavailable(),
      now: redisWatch.clock.now(),
      clockOffsetMs: redisWatch.clock.offsetMs(),
      instanceId: this.duplicates.instanceId,
      duplicateInstances: this.duplicates.current(Date.now()),
    });
    const previous = await writeHealth(this.o.redis, this.o.n, doc, config.healthTtl);
    this.duplicates.replaced(previous, Date.now(), config.nodeId, this.o.log);
    this.exportGauges(doc, status);
    const refusing = redisWatch.policy.refusing();
    this.o.onVerdict(status.ok && !refusing, refusing ? this.evictingReason() : status.ok ? 'ollama answers' : status.reason);
    return doc;
  }

  /** Keep what Ollama said, logging when it starts or stops answering. */
  private noteOllama(status: OllamaStatus): void {
    const { log, config } = this.o;
    if (this.ollama === undefined || this.ollama.ok !== status.ok) {
      if (status.ok) log.info({ ollama: config.ollamaHost, version: status.version }, 'ollama answers');
      else log.warn({ ollama: config.ollamaHost, reason: status.reason }, 'ollama does not answer');
    }
    this.ollama = status;
    if (status.ok) {
      this.lastInstalled = status.installed;
      this.lastSizesMb = status.sizesMb;
    }
  }

  private exportGauges(doc: NodeHealth, status: OllamaStatus): void {
    const { metrics } = this.o;
    metrics.cpu.set(doc.cpu_percent);
    metrics.ram.set(doc.ram_percent);
    if (doc.temp_celsius === null) metrics.temp.reset();
    else metrics.temp.set(doc.temp_celsius);
    metrics.ollamaUp.set(status.ok ? 1 : 0);
  }

  private evictingReason(): string {
    return `redis maxmemory-policy ${this.o.redisWatch.policy.current().policy} evicts keys`;
  }

  /** Why the node reports itself unavailable whatever Ollama says, if it does. */
  private unavailable(): { unavailableReason?: string } {
    if (this.o.closing()) return { unavailableReason: 'shutting down' };
    if (this.o.redisWatch.policy.refusing()) return { unavailableReason: this.evictingReason() };
    return {};
  }

  /** Resolves once the queue's connections have finished connecting (or failed to). */
  ready(): Promise<void> {
    return settled([this.queue]);
  }

  /** Close the node queue while Redis is there (see `closeBull`); publish nothing more after this. */
  close(redisGone: AbortSignal): Promise<void> {
    return closeBull('queue', this.queue.close(), redisGone, this.o.log);
  }
}
