/**
 * Work that must not overlap: each `run` starts after everything queued before it has ended
 * (whether that succeeded or failed).
 */
export class Serial {
  private chain: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }
}
