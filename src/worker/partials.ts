/**
 * Publishes streamed text in order without holding up the Ollama stream: one publish in flight
 * at a time, and the text that arrives meanwhile goes out as one partial after it.
 */
export class PartialPublisher {
  private pending = '';
  private running: Promise<void> | undefined;
  superseded = false;

  constructor(
    private readonly send: (delta: string) => Promise<boolean>,
    private readonly onSuperseded: () => void,
    private readonly onError: (err: unknown) => void,
  ) {}

  push(delta: string): void {
    if (this.superseded) return;
    this.pending += delta;
    this.running ??= this.pump().finally(() => {
      this.running = undefined;
    });
  }

  private async pump(): Promise<void> {
    while (this.pending !== '' && !this.superseded) {
      const delta = this.pending;
      this.pending = '';
      try {
        if (!(await this.send(delta))) {
          this.superseded = true;
          this.onSuperseded();
        }
      } catch (err) {
        this.onError(err);
      }
    }
  }

  async flush(): Promise<void> {
    while (this.running) await this.running;
  }
}
