/**
 * A fixed set of interchangeable resources (a loaded model's context sequences) handed out one
 * caller at a time, first come first served; waiting callers can give up through a signal.
 */
export class Pool<T> {
  private readonly free: T[];
  private readonly waiters: Array<{ resolve: (item: T) => void; reject: (err: unknown) => void }> = [];
  private closedWith: Error | undefined;

  constructor(items: readonly T[]) {
    this.free = [...items];
  }

  acquire(signal?: AbortSignal): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const item = this.free.pop();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        resolve: (it: T) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(it);
        },
        reject: (err: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i !== -1) this.waiters.splice(i, 1);
        reject(abortReason(signal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(item: T): void {
    const next = this.waiters.shift();
    if (next) next.resolve(item);
    else this.free.push(item);
  }

  /** Refuse every waiting and future caller with `err`. */
  close(err: Error): void {
    this.closedWith = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }
}

/**
 * The error a cancelled operation rejects with: the signal's reason when it is an Error, else an
 * Error named AbortError (the simulator's clock.ts answers aborts the same way).
 */
export function abortReason(signal?: AbortSignal): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  const err = new Error('This operation was aborted');
  err.name = 'AbortError';
  return err;
}
