/**
 * A scheduler shaped like Ollama's (server/sched.go): requests wait for their model to be loaded
 * and for one of its `numParallel` slots; a model that is not loaded is loaded when it fits (at
 * most `maxLoadedModels`, within the RAM left for models), else an idle model is unloaded to make
 * room, chosen as the one that would expire soonest, then the least recently used. When every
 * candidate is busy, the soonest-expiring one is drained (no new requests, unloaded when its last
 * one ends) and the request waits. Idle models unload when their keep-alive runs out.
 *
 * Differences from Ollama, on purpose: requests waiting for a slot of a loaded model count as
 * pending (Ollama hands them to the runner, which queues them without limit), so `maxQueue` bounds
 * every request that is not running; and a model load is not cancelled when the client that
 * started it goes away (the model stays loaded with its keep-alive).
 */
import type { Logger } from '../lib/logger.js';
import { SimClock, abortError, monoNow } from './clock.js';
import type { GenerationEngine } from './engine.js';
import { OLLAMA_ERRORS } from './wire.js';

export interface SchedulerOptions {
  engine: GenerationEngine;
  clock: SimClock;
  /** Requests one loaded model serves at once (OLLAMA_NUM_PARALLEL). @defaultValue 1 */
  numParallel: number;
  /** Models loaded at once (OLLAMA_MAX_LOADED_MODELS). @defaultValue 3 */
  maxLoadedModels: number;
  /** Requests waiting before new ones get 503 (OLLAMA_MAX_QUEUE). @defaultValue 512 */
  maxQueue: number;
  /** Keep-alive for requests that give none, simulated ms; negative is forever. @defaultValue 300000 */
  defaultKeepAliveMs: number;
  /** RAM the models may use, bytes. */
  modelMemoryBytes: number;
  log: Logger;
  /** Called when the set of loaded models (and so memory use) changes. */
  onChange?: () => void;
}

/** A failure with the HTTP status Ollama would answer it with. */
export class SchedulerError extends Error {
  override readonly name = 'SchedulerError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Lease {
  model: string;
  /** Wall-clock ms from the request to its model being ready (Ollama's load_duration). */
  loadMs: number;
  /** Whether this request waited for a model load. */
  cold: boolean;
  release(): void;
}

export type RunnerState = 'loading' | 'ready' | 'unloading';

export interface RunnerView {
  name: string;
  state: RunnerState;
  memoryBytes: number;
  active: number;
  /** Simulated ms; negative is forever. */
  keepAliveMs: number;
  /** Wall-clock epoch ms at which it unloads if nothing uses it; null when never. */
  expiresAt: number | null;
  lastUsed: number;
}

interface Runner {
  name: string;
  memoryBytes: number;
  state: RunnerState;
  active: number;
  sessionMs: number;
  idleExpiresAt: number | null;
  timer: NodeJS.Timeout | undefined;
  /** Evicted while busy: no new requests, unload when idle. */
  draining: boolean;
  /** Unload requested (keep_alive 0): unload when idle, requests still welcome. */
  expireWhenIdle: boolean;
  lastUsed: number;
  /** Order of last use (ties of lastUsed within a millisecond). */
  useSeq: number;
  loadAbort: AbortController;
}

interface Waiter {
  model: string;
  memoryBytes: number;
  keepAliveMs: number | undefined;
  startedAt: number;
  readyAt?: number;
  cold: boolean;
  resolve(lease: Lease): void;
  reject(err: Error): void;
  cleanup(): void;
}

/** Something an engine may offer: mark a model loaded at once (preloading at start-up). */
interface InstantLoader {
  loadInstantly(model: string): void;
}

function canLoadInstantly(engine: GenerationEngine): engine is GenerationEngine & InstantLoader {
  return typeof (engine as Partial<InstantLoader>).loadInstantly === 'function';
}

export class Scheduler {
  private readonly runners = new Map<string, Runner>();
  private waiters: Waiter[] = [];
  private closed = false;
  private pumping = false;
  private pumpAgain = false;
  private useSeq = 0;
  readonly counters = { coldLoads: 0, unloads: 0, evictions: 0, rejected: 0 };

  constructor(private readonly opts: SchedulerOptions) {}

  /**
   * Wait until `model` is loaded and one of its slots is free. Rejects with a SchedulerError
   * (503 when the queue is full, 500 when the model can never fit) or the signal's AbortError.
   */
  acquire(model: string, memoryBytes: number, options: { keepAliveMs?: number; signal?: AbortSignal } = {}): Promise<Lease> {
    if (this.closed) return Promise.reject(new SchedulerError(503, 'server shutting down'));
    const { signal } = options;
    return new Promise<Lease>((resolve, reject) => {
      const onAbort = (): void => {
        if (this.removeWaiter(waiter)) {
          reject(abortError(signal));
          this.pump();
        }
      };
      const waiter: Waiter = {
        model,
        memoryBytes,
        keepAliveMs: options.keepAliveMs,
        startedAt: monoNow(),
        cold: false,
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      if (signal?.aborted) return reject(abortError(signal));
      // Like Ollama's bounded pending channel: once maxQueue requests wait, new ones are refused.
      if (this.waiters.length >= this.opts.maxQueue) {
        this.counters.rejected++;
        return reject(new SchedulerError(503, OLLAMA_ERRORS.busy));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /** Unload a model as soon as it is idle (a request with an empty prompt and keep_alive 0). */
  expire(model: string): void {
    const r = this.runners.get(model);
    if (!r || r.state === 'unloading') return;
    if (r.state === 'ready' && r.active === 0) this.unload(r, 'keep_alive 0');
    else r.expireWhenIdle = true;
  }

  /** Load a model at start-up and keep it for `keepAliveMs` (negative: forever). */
  async preload(model: string, memoryBytes: number, keepAliveMs: number): Promise<void> {
    const { engine } = this.opts;
    if (!canLoadInstantly(engine)) {
      (await this.acquire(model, memoryBytes, { keepAliveMs })).release();
      return;
    }
    if (this.runners.has(model)) return;
    if (!this.hasRoomFor(memoryBytes)) {
      throw new Error(`cannot preload ${model}: ${this.usedMemory()} of ${this.opts.modelMemoryBytes} bytes in use`);
    }
    engine.loadInstantly(model);
    this.opts.log.info({ model, keepAliveMs }, 'model preloaded');
    const r = this.newRunner(model, memoryBytes, keepAliveMs);
    r.state = 'ready';
    this.runners.set(model, r);
    this.startIdleTimer(r);
    this.opts.onChange?.();
  }

  runnersView(): RunnerView[] {
    return [...this.runners.values()].map((r) => ({
      name: r.name,
      state: r.state,
      memoryBytes: r.memoryBytes,
      active: r.active,
      keepAliveMs: r.sessionMs,
      expiresAt: this.expiresAt(r),
      lastUsed: r.lastUsed,
    }));
  }

  pendingCount(): number {
    return this.waiters.length;
  }

  activeCount(): number {
    let n = 0;
    for (const r of this.runners.values()) n += r.active;
    return n;
  }

  loadingCount(): number {
    return [...this.runners.values()].filter((r) => r.state === 'loading').length;
  }

  usedMemory(): number {
    let n = 0;
    for (const r of this.runners.values()) n += r.memoryBytes;
    return n;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.runners.values()) {
      clearTimeout(r.timer);
      r.loadAbort.abort();
    }
    for (const w of this.waiters.splice(0)) {
      w.cleanup();
      w.reject(new SchedulerError(503, 'server shutting down'));
    }
  }

  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain && !this.closed);
    } finally {
      this.pumping = false;
    }
  }

  /** One FIFO pass. A request that needs room it cannot get blocks new loads behind it. */
  private pumpOnce(): void {
    let blocked = false;
    for (const w of [...this.waiters]) {
      const r = this.runners.get(w.model);
      if (r) {
        if (r.state === 'loading') w.cold = true;
        if (r.state === 'ready') {
          w.readyAt ??= monoNow();
          if (!r.draining && r.active < this.opts.numParallel) this.grant(w, r);
        }
        continue;
      }
      if (blocked) continue;
      if (w.memoryBytes > this.opts.modelMemoryBytes) {
        this.removeWaiter(w);
        w.reject(new SchedulerError(500, OLLAMA_ERRORS.tooLarge(w.memoryBytes, this.opts.modelMemoryBytes)));
        continue;
      }
      if (this.hasRoomFor(w.memoryBytes)) {
        this.startLoad(w);
        continue;
      }
      blocked = true;
      this.makeRoom();
    }
  }

  private makeRoom(): void {
    const all = [...this.runners.values()];
    if (all.some((r) => r.state === 'unloading' || r.draining)) return;
    const candidates = all
      .filter((r) => r.state === 'ready')
      .sort((a, b) => Number(a.active > 0) - Number(b.active > 0) || this.expiryRank(a) - this.expiryRank(b) || a.useSeq - b.useSeq);
    const victim = candidates[0];
    if (!victim) return;
    this.counters.evictions++;
    if (victim.active === 0) this.unload(victim, 'evicted to make room');
    else {
      victim.draining = true;
      this.opts.log.info({ model: victim.name }, 'draining busy model to make room');
    }
  }

  private expiryRank(r: Runner): number {
    if (r.sessionMs < 0) return Number.MAX_SAFE_INTEGER;
    return r.idleExpiresAt ?? Date.now() + this.opts.clock.toReal(r.sessionMs);
  }

  private hasRoomFor(memoryBytes: number): boolean {
    return this.runners.size < this.opts.maxLoadedModels && this.usedMemory() + memoryBytes <= this.opts.modelMemoryBytes;
  }

  private newRunner(name: string, memoryBytes: number, keepAliveMs: number | undefined): Runner {
    return {
      name,
      memoryBytes,
      state: 'loading',
      active: 0,
      sessionMs: keepAliveMs ?? this.opts.defaultKeepAliveMs,
      idleExpiresAt: null,
      timer: undefined,
      draining: false,
      expireWhenIdle: false,
      lastUsed: Date.now(),
      useSeq: ++this.useSeq,
      loadAbort: new AbortController(),
    };
  }

  private startLoad(w: Waiter): void {
    const r = this.newRunner(w.model, w.memoryBytes, w.keepAliveMs);
    this.runners.set(w.model, r);
    w.cold = true;
    this.opts.onChange?.();
    this.opts.log.info({ model: r.name }, 'loading model');
    this.opts.engine.load(r.name, r.loadAbort.signal).then(
      () => {
        if (this.closed) return;
        r.state = 'ready';
        this.counters.coldLoads++;
        this.opts.log.info({ model: r.name }, 'model loaded');
        this.pump();
        if (r.active === 0 && r.state === 'ready') this.startIdleTimer(r);
      },
      (err: unknown) => {
        if (this.closed) return;
        this.runners.delete(r.name);
        this.opts.onChange?.();
        const message = err instanceof Error ? err.message : String(err);
        this.opts.log.error({ model: r.name, err }, 'model load failed');
        for (const waiting of this.waiters.filter((x) => x.model === r.name)) {
          this.removeWaiter(waiting);
          waiting.reject(new SchedulerError(500, message));
        }
        this.pump();
      },
    );
  }

  private grant(w: Waiter, r: Runner): void {
    this.removeWaiter(w);
    r.active++;
    clearTimeout(r.timer);
    r.timer = undefined;
    r.idleExpiresAt = null;
    if (w.keepAliveMs !== undefined) r.sessionMs = w.keepAliveMs;
    r.lastUsed = Date.now();
    r.useSeq = ++this.useSeq;
    let released = false;
    w.resolve({
      model: r.name,
      loadMs: (w.readyAt ?? monoNow()) - w.startedAt,
      cold: w.cold,
      release: () => {
        if (released) return;
        released = true;
        this.release(r);
      },
    });
  }

  private release(r: Runner): void {
    r.active--;
    r.lastUsed = Date.now();
    r.useSeq = ++this.useSeq;
    if (r.active === 0 && r.state === 'ready') this.startIdleTimer(r);
    this.pump();
  }

  private startIdleTimer(r: Runner): void {
    if (this.closed) return;
    if (r.draining || r.expireWhenIdle || r.sessionMs === 0) {
      this.unload(r, r.draining ? 'evicted to make room' : 'keep_alive 0');
      return;
    }
    clearTimeout(r.timer);
    if (r.sessionMs < 0) {
      r.idleExpiresAt = null;
      return;
    }
    const realMs = this.opts.clock.toReal(r.sessionMs);
    r.idleExpiresAt = Date.now() + realMs;
    r.timer = setTimeout(() => this.unload(r, 'keep-alive expired'), realMs);
    r.timer.unref();
  }

  private unload(r: Runner, reason: string): void {
    if (r.state === 'unloading') return;
    r.state = 'unloading';
    clearTimeout(r.timer);
    this.opts.log.info({ model: r.name, reason }, 'unloading model');
    this.opts.engine
      .unload(r.name)
      .catch((err: unknown) => this.opts.log.warn({ model: r.name, err }, 'engine unload failed'))
      .finally(() => {
        if (this.runners.get(r.name) === r) this.runners.delete(r.name);
        this.counters.unloads++;
        this.opts.onChange?.();
        if (!this.closed) this.pump();
      });
  }

  private expiresAt(r: Runner): number | null {
    if (r.sessionMs < 0) return null;
    if (r.idleExpiresAt !== null) return r.idleExpiresAt;
    return Date.now() + this.opts.clock.toReal(r.sessionMs);
  }

  private removeWaiter(w: Waiter): boolean {
    const i = this.waiters.indexOf(w);
    if (i === -1) return false;
    this.waiters.splice(i, 1);
    w.cleanup();
    return true;
  }
}
