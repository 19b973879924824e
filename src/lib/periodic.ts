/**
 * Background work run every `everyMs`, counted from the end of one run to the start of the
 * next: runs never overlap, and a slow run delays the next one instead of piling up. A run
 * asked for while one is in progress joins it (one run at a time, whoever asks).
 * `run` is expected to handle its own errors (log and carry on): it is never retried here.
 * With `unref`, the timer alone does not keep the process alive.
 */
export class Periodic {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly everyMs: number,
    private readonly run: () => Promise<void>,
    private readonly opts: { unref?: boolean } = {},
  ) {}

  /** Runs every `everyMs` from now on (the first one `everyMs` from now). Started already: nothing. */
  start(): void {
    if (this.timer !== undefined) return;
    const next = (): void => {
      this.timer = setTimeout(() => {
        void this.runNow().finally(() => {
          if (this.timer !== undefined) next();
        });
      }, this.everyMs);
      if (this.opts.unref) this.timer.unref();
    };
    next();
  }

  /** No run starts after this; resolves once the run in progress, if any, has ended. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** Run now, or join the run in progress; works whether started or not. */
  runNow(): Promise<void> {
    if (!this.running) {
      const run = this.run().finally(() => {
        this.running = undefined;
      });
      this.running = run;
    }
    return this.running;
  }
}
