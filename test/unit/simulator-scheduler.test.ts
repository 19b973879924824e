import { afterEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/lib/logger.js';
import { SimClock } from '../../src/simulator/clock.js';
import type { GenerationEngine } from '../../src/simulator/engine.js';
import { Scheduler, SchedulerError, type SchedulerOptions } from '../../src/simulator/scheduler.js';

const GB = 1_000_000_000;

/** An engine whose loads take `loadMs` (or fail for models in `failing`) and that records unloads. */
function fakeEngine(loadMs = 0, failing: string[] = []) {
  const unloaded: string[] = [];
  const engine: GenerationEngine = {
    kind: 'profile',
    models: () => [],
    load: async (model) => {
      await new Promise((r) => setTimeout(r, loadMs));
      if (failing.includes(model)) throw new Error(`cannot load ${model}`);
    },
    unload: async (model) => {
      unloaded.push(model);
    },
    generate: () => Promise.reject(new Error('not used')),
    close: async () => {},
  };
  return { engine, unloaded };
}

const schedulers: Scheduler[] = [];
function scheduler(over: Partial<SchedulerOptions> = {}, loadMs = 0, failing: string[] = []) {
  const { engine, unloaded } = fakeEngine(loadMs, failing);
  const s = new Scheduler({
    engine,
    clock: new SimClock(1),
    numParallel: 1,
    maxLoadedModels: 3,
    maxQueue: 512,
    defaultKeepAliveMs: 300_000,
    modelMemoryBytes: 4 * GB,
    log: silentLogger,
    ...over,
  });
  schedulers.push(s);
  return { s, unloaded };
}

const loadedNames = (s: Scheduler): string[] => s.runnersView().map((r) => r.name).sort();

afterEach(() => {
  for (const s of schedulers.splice(0)) s.close();
});

describe('scheduler', () => {
  it('loads a model on first use and reports the wait as load time; a warm request waits for nothing', async () => {
    const { s } = scheduler({}, 40);
    const cold = await s.acquire('a', GB);
    expect(cold.cold).toBe(true);
    expect(cold.loadMs).toBeGreaterThanOrEqual(35);
    cold.release();
    const warm = await s.acquire('a', GB);
    expect(warm.cold).toBe(false);
    expect(warm.loadMs).toBeLessThan(5);
    expect(s.counters.coldLoads).toBe(1);
  });

  it('serves numParallel requests of one model at once and queues the rest', async () => {
    const { s } = scheduler({ numParallel: 2 });
    const a = await s.acquire('m', GB);
    const b = await s.acquire('m', GB);
    let third = false;
    const c = s.acquire('m', GB).then((l) => {
      third = true;
      return l;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(third).toBe(false);
    expect(s.pendingCount()).toBe(1);
    expect(s.activeCount()).toBe(2);
    a.release();
    (await c).release();
    b.release();
    expect(third).toBe(true);
    expect(s.activeCount()).toBe(0);
  });

  it('answers 503 with Ollama words once maxQueue requests are waiting', async () => {
    const { s } = scheduler({ maxQueue: 1 });
    const running = await s.acquire('m', GB);
    const waiting = s.acquire('m', GB);
    await expect(s.acquire('m', GB)).rejects.toMatchObject({
      status: 503,
      message: 'server busy, please try again.  maximum pending requests exceeded',
    });
    expect(s.counters.rejected).toBe(1);
    running.release();
    (await waiting).release();
  });

  it('evicts the idle model that expires soonest when max loaded models is reached', async () => {
    const { s, unloaded } = scheduler({ maxLoadedModels: 2 });
    (await s.acquire('long', GB, { keepAliveMs: 3_600_000 })).release();
    (await s.acquire('short', GB, { keepAliveMs: 600_000 })).release();
    (await s.acquire('long', GB)).release(); // most recently used, and still expires last
    (await s.acquire('new', GB)).release();
    expect(unloaded).toEqual(['short']);
    expect(loadedNames(s)).toEqual(['long', 'new']);
    expect(s.counters.evictions).toBe(1);
  });

  it('evicts the least recently used when expiries tie, and keep-forever models last', async () => {
    const { s, unloaded } = scheduler({ maxLoadedModels: 2 });
    (await s.acquire('forever', GB, { keepAliveMs: -1 })).release();
    (await s.acquire('x', GB, { keepAliveMs: -1 })).release();
    (await s.acquire('y', GB)).release();
    expect(unloaded).toEqual(['forever']);
    (await s.acquire('z', GB)).release();
    expect(unloaded).toEqual(['forever', 'y']);
  });

  it('evicts to make room in RAM', async () => {
    const { s, unloaded } = scheduler({ modelMemoryBytes: 3 * GB });
    (await s.acquire('small', 1 * GB)).release();
    (await s.acquire('big', 2.5 * GB)).release();
    expect(unloaded).toEqual(['small']);
    expect(s.usedMemory()).toBe(2.5 * GB);
  });

  it('makes a request wait while the memory it needs is held by a busy model, then drains that model', async () => {
    const { s, unloaded } = scheduler({ maxLoadedModels: 1 });
    const busy = await s.acquire('a', GB);
    let granted = false;
    const other = s.acquire('b', GB).then((l) => {
      granted = true;
      return l;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(granted).toBe(false);
    // Draining: a new request for the busy model does not jump the queue.
    const again = s.acquire('a', GB);
    busy.release();
    const lease = await other;
    expect(unloaded).toEqual(['a']);
    expect(lease.cold).toBe(true);
    lease.release();
    (await again).release();
  });

  it('refuses a model larger than the RAM models may use', async () => {
    const { s } = scheduler({ modelMemoryBytes: 3 * GB });
    await expect(s.acquire('huge', 5.8 * GB)).rejects.toEqual(
      new SchedulerError(500, 'model requires more system memory (5.4 GiB) than is available (2.8 GiB)'),
    );
  });

  it('unloads an idle model when its keep-alive runs out, on the simulated clock', async () => {
    const { s, unloaded } = scheduler({ clock: new SimClock(100) });
    (await s.acquire('m', GB, { keepAliveMs: 3_000 })).release();
    const view = s.runnersView()[0]!;
    expect(view.expiresAt! - Date.now()).toBeGreaterThan(15);
    expect(view.expiresAt! - Date.now()).toBeLessThanOrEqual(30);
    await vi.waitFor(() => expect(unloaded).toEqual(['m']), { timeout: 1_000, interval: 5 });
    expect(loadedNames(s)).toEqual([]);
  });

  it('keeps a model forever with a negative keep-alive', async () => {
    const { s } = scheduler({ clock: new SimClock(1_000_000) });
    (await s.acquire('m', GB, { keepAliveMs: -1 })).release();
    await new Promise((r) => setTimeout(r, 20));
    expect(s.runnersView()[0]).toMatchObject({ name: 'm', expiresAt: null, keepAliveMs: -1 });
  });

  it('unloads right after the request with keep_alive 0', async () => {
    const { s, unloaded } = scheduler();
    const lease = await s.acquire('m', GB, { keepAliveMs: 0 });
    expect(unloaded).toEqual([]);
    lease.release();
    await vi.waitFor(() => expect(unloaded).toEqual(['m']));
  });

  it('expires an idle model at once and a busy one when its last request ends', async () => {
    const { s, unloaded } = scheduler();
    (await s.acquire('idle', GB)).release();
    const busy = await s.acquire('busy', GB);
    s.expire('idle');
    s.expire('busy');
    await vi.waitFor(() => expect(unloaded).toEqual(['idle']));
    busy.release();
    await vi.waitFor(() => expect(unloaded).toEqual(['idle', 'busy']));
  });

  it('lets an aborted waiter go without holding its place', async () => {
    const { s } = scheduler({ maxQueue: 1 });
    const running = await s.acquire('m', GB);
    const ac = new AbortController();
    const waiting = s.acquire('m', GB, { signal: ac.signal });
    ac.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    expect(s.pendingCount()).toBe(0);
    const next = s.acquire('m', GB);
    running.release();
    (await next).release();
  });

  it('fails every waiter of a model whose load fails, with 500', async () => {
    const { s } = scheduler({}, 5, ['broken']);
    const results = await Promise.allSettled([s.acquire('broken', GB), s.acquire('broken', GB)]);
    for (const r of results) expect(r).toMatchObject({ status: 'rejected', reason: { status: 500, message: 'cannot load broken' } });
    expect(loadedNames(s)).toEqual([]);
  });

  it('rejects waiters when closed', async () => {
    const { s } = scheduler();
    const running = await s.acquire('m', GB);
    const waiting = s.acquire('m', GB);
    s.close();
    await expect(waiting).rejects.toMatchObject({ status: 503 });
    running.release();
    await expect(s.acquire('m', GB)).rejects.toMatchObject({ status: 503 });
  });
});
