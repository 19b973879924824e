/**
 * The files a Pi's kernel would show, written under chosen roots so a worker started with
 * `--sys-root` / `--proc-root` reads the simulated node instead of the host:
 *
 * - `<sysRoot>/sys/class/thermal/thermal_zone0/temp`: millidegrees Celsius, one integer line.
 * - `<procRoot>/proc/meminfo`: MemTotal, MemFree, MemAvailable, ... in kB, kernel layout.
 * - `<procRoot>/proc/stat`: cumulative CPU jiffies (USER_HZ 100) for 4 cores, busy while the
 *   node generates.
 *
 * Each file is replaced atomically (write then rename), so a reader never sees half a file.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../lib/logger.js';

export interface HostFilesOptions {
  sysRoot?: string;
  procRoot?: string;
  log: Logger;
}

export interface MemorySnapshot {
  totalBytes: number;
  usedBytes: number;
}

/** Writes one file at a time per path, always ending with the latest content. */
class AtomicFile {
  private pending: string | null = null;
  private writing: Promise<void> | null = null;
  private seq = 0;

  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {}

  write(content: string): void {
    this.pending = content;
    this.writing ??= this.drain();
  }

  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending !== null) {
        const content = this.pending;
        this.pending = null;
        const tmp = `${this.path}.${process.pid}.${this.seq++}.tmp`;
        try {
          await mkdir(dirname(this.path), { recursive: true });
          await writeFile(tmp, content);
          await rename(tmp, this.path);
        } catch (err) {
          this.log.warn({ path: this.path, err }, 'cannot write simulated host file');
        }
      }
    } finally {
      this.writing = null;
    }
  }
}

const kbLine = (key: string, kb: number): string => `${(key + ':').padEnd(16)}${String(Math.max(0, Math.round(kb))).padStart(8)} kB`;

function meminfoText({ totalBytes, usedBytes }: MemorySnapshot): string {
  const total = totalBytes / 1024;
  const available = Math.max(0, total - usedBytes / 1024);
  const cached = Math.min(available * 0.25, 400 * 1024);
  const buffers = Math.min(available * 0.02, 40 * 1024);
  return (
    [
      kbLine('MemTotal', total),
      kbLine('MemFree', available - cached - buffers),
      kbLine('MemAvailable', available),
      kbLine('Buffers', buffers),
      kbLine('Cached', cached),
      kbLine('SwapCached', 0),
      kbLine('SwapTotal', 102_396),
      kbLine('SwapFree', 102_396),
    ].join('\n') + '\n'
  );
}

/** Cumulative jiffies per core: [user, nice, system, idle, iowait, irq, softirq, steal]. */
export type CpuTimes = number[][];

function statText(cores: CpuTimes, bootEpochS: number): string {
  const fmt = (t: number[]): string => t.map((v) => Math.floor(v)).join(' ') + ' 0 0';
  const total = cores[0]!.map((_, i) => cores.reduce((n, c) => n + c[i]!, 0));
  return (
    [
      `cpu  ${fmt(total)}`,
      ...cores.map((c, i) => `cpu${i} ${fmt(c)}`),
      'intr 0',
      'ctxt 0',
      `btime ${bootEpochS}`,
      'processes 1',
      'procs_running 1',
      'procs_blocked 0',
      'softirq 0 0 0 0 0 0 0 0 0 0 0',
    ].join('\n') + '\n'
  );
}

export class HostFiles {
  private readonly temp: AtomicFile | null;
  private readonly meminfo: AtomicFile | null;
  private readonly stat: AtomicFile | null;
  private lastMilli: number | null = null;
  private lastMeminfo = '';
  private readonly cpu: CpuTimes;
  private readonly bootEpochS = Math.floor(Date.now() / 1000);

  constructor(opts: HostFilesOptions, cores = 4) {
    const file = (root: string | undefined, ...parts: string[]): AtomicFile | null =>
      root ? new AtomicFile(join(root, ...parts), opts.log) : null;
    this.temp = file(opts.sysRoot, 'sys', 'class', 'thermal', 'thermal_zone0', 'temp');
    this.meminfo = file(opts.procRoot, 'proc', 'meminfo');
    this.stat = file(opts.procRoot, 'proc', 'stat');
    this.cpu = Array.from({ length: cores }, () => [0, 0, 0, 0, 0, 0, 0, 0]);
  }

  writeTemperature(celsius: number): void {
    const milli = Math.round(celsius * 1000);
    if (!this.temp || milli === this.lastMilli) return;
    this.lastMilli = milli;
    this.temp.write(`${milli}\n`);
  }

  writeMemory(snapshot: MemorySnapshot): void {
    if (!this.meminfo) return;
    const text = meminfoText(snapshot);
    if (text === this.lastMeminfo) return;
    this.lastMeminfo = text;
    this.meminfo.write(text);
  }

  /** Account `realMs` of wall-clock time at CPU `busy` (0..1) and `iowait` (0..1) fractions. */
  advanceCpu(realMs: number, busy: number, iowait: number): void {
    if (!this.stat) return;
    const jiffies = realMs / 10;
    for (const c of this.cpu) {
      const user = jiffies * busy * 0.94;
      const system = jiffies * (busy * 0.05 + 0.01);
      const io = jiffies * iowait * (1 - busy);
      c[0]! += user;
      c[2]! += system;
      c[4]! += io;
      c[3]! += Math.max(0, jiffies - user - system - io);
    }
    this.stat.write(statText(this.cpu, this.bootEpochS));
  }

  async flush(): Promise<void> {
    await Promise.all([this.temp?.flush(), this.meminfo?.flush(), this.stat?.flush()]);
  }
}
