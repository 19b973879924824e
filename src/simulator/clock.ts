/**
 * Simulated time. Every duration the simulator models (model loads, prompt and token timings,
 * keep-alive, heating and cooling, pull downloads) is expressed in simulated milliseconds and
 * divided by `speed` before it is waited for, so a run at speed 100 keeps every proportion of a
 * real Pi at one hundredth of the wall-clock time. Durations reported on the wire are measured
 * wall-clock times multiplied back by `speed`, so they read like a Pi's.
 */

export class SimClock {
  readonly speed: number;

  constructor(speed = 1) {
    if (!Number.isFinite(speed) || speed <= 0) throw new Error(`speed must be a positive number, got ${speed}`);
    this.speed = speed;
  }

  /** Wall-clock milliseconds that a simulated span takes. */
  toReal(simMs: number): number {
    return simMs / this.speed;
  }

  /** Simulated milliseconds that a measured wall-clock span stands for. */
  toSim(realMs: number): number {
    return realMs * this.speed;
  }

  /** Wait for a simulated span; rejects with an AbortError if the signal fires first. */
  sleep(simMs: number, signal?: AbortSignal): Promise<void> {
    return delay(this.toReal(simMs), signal);
  }
}

export function abortError(signal?: AbortSignal): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  const err = new Error('This operation was aborted');
  err.name = 'AbortError';
  return err;
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/** setTimeout as a promise that rejects with an AbortError when the signal fires. */
export function delay(realMs: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  if (realMs <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, realMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Milliseconds from a monotonic clock. */
export const monoNow = (): number => performance.now();
