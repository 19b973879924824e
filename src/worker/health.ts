/**
 * The node's health document (SPEC.md section 5), from files first:
 *   CPU %     deltas of the first line of `<procRoot>/proc/stat` between two beats
 *   RAM %     `<procRoot>/proc/meminfo`: (MemTotal - MemAvailable) / MemTotal (MemFree would
 *             count the page cache as used and make every Pi look full)
 *   temp °C   `<sysRoot>/sys/class/thermal/thermal_zone0/temp`, in millidegrees
 * systeminformation is only the fallback where those files do not exist (it waits on its own
 * sampling, so it stays off the normal path), and is loaded only then: a Pi, which has those
 * files, never pays for it in memory. No sensor: null, never invented.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { Ollama } from 'ollama';
import type { NodeHealth } from '../contracts/types.js';
import { validateHealth } from '../contracts/index.js';
import { publishHealth } from '../lib/health-registry.js';
import type { Names } from '../lib/names.js';
import { rfc3339 } from '../lib/time.js';
import { VERSION } from '../lib/version.js';

const MIB = 1024 * 1024;

/** systeminformation, loaded on first use. */
const si = async (): Promise<typeof import('systeminformation')> => (await import('systeminformation')).default;

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

// ---------------------------------------------------------------- CPU

/** Jiffies since boot: `idle` counts idle + iowait, `total` every state but guest (already in user). */
export interface CpuSample {
  idle: number;
  total: number;
}

/** The aggregate `cpu` line of /proc/stat, or null when there is none. */
export function parseProcStat(text: string): CpuSample | null {
  const line = text.split('\n').find((l) => /^cpu\s/.test(l));
  if (!line) return null;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  if (v.length < 4 || v.some((x) => !Number.isFinite(x))) return null;
  // user nice system idle iowait irq softirq steal [guest guest_nice]
  const states = v.slice(0, 8);
  const total = states.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { idle, total };
}

/** Busy share of the time between two samples, 0-100; a sample since boot when `prev` is absent. */
export function cpuPercentBetween(prev: CpuSample | undefined, cur: CpuSample): number {
  const dTotal = cur.total - (prev?.total ?? 0);
  const dIdle = cur.idle - (prev?.idle ?? 0);
  if (!(dTotal > 0)) return 0;
  return Math.min(100, Math.max(0, ((dTotal - dIdle) / dTotal) * 100));
}

/** CPU use between successive `read()` calls, from `<procRoot>/proc/stat`. */
export class CpuMeter {
  private prev: CpuSample | undefined;
  constructor(private readonly procRoot: string) {}

  async read(): Promise<number> {
    let text: string | undefined;
    try {
      text = await readFile(join(this.procRoot, 'proc', 'stat'), 'utf8');
    } catch {
      text = undefined;
    }
    const cur = text === undefined ? null : parseProcStat(text);
    if (!cur) {
      // Not Linux, or no such tree: systeminformation samples on its own.
      const load = await si()
        .then((s) => s.currentLoad())
        .catch(() => undefined);
      return load && Number.isFinite(load.currentLoad) ? Math.min(100, Math.max(0, load.currentLoad)) : 0;
    }
    const pct = cpuPercentBetween(this.prev, cur);
    this.prev = cur;
    return pct;
  }
}

// ---------------------------------------------------------------- RAM

export interface MemInfo {
  totalBytes: number;
  availableBytes: number;
}

/** MemTotal and MemAvailable (kB) of /proc/meminfo; kernels older than 3.14 lack MemAvailable. */
export function parseMeminfo(text: string): MemInfo | null {
  const kb: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+)/.exec(line);
    if (m) kb[m[1]!] = Number(m[2]);
  }
  const total = kb['MemTotal'];
  if (total === undefined || total <= 0) return null;
  const available = kb['MemAvailable'] ?? (kb['MemFree'] ?? 0) + (kb['Buffers'] ?? 0) + (kb['Cached'] ?? 0);
  return { totalBytes: total * 1024, availableBytes: Math.min(total, available) * 1024 };
}

export async function readMemInfo(procRoot: string): Promise<MemInfo> {
  try {
    const parsed = parseMeminfo(await readFile(join(procRoot, 'proc', 'meminfo'), 'utf8'));
    if (parsed) return parsed;
  } catch {
    // fall through to systeminformation
  }
  const m = await (await si()).mem();
  return { totalBytes: m.total, availableBytes: m.available };
}

export function ramPercent(m: MemInfo): number {
  return m.totalBytes > 0 ? ((m.totalBytes - m.availableBytes) / m.totalBytes) * 100 : 0;
}

// ---------------------------------------------------------------- temperature

/** thermal_zone0/temp holds millidegrees Celsius. */
export function parseThermal(text: string): number | null {
  const t = text.trim();
  if (!/^-?\d+$/.test(t)) return null;
  return Number(t) / 1000;
}

/**
 * °C from `<sysRoot>/sys/class/thermal/thermal_zone0/temp`; when that is missing and we read
 * the real machine (`sysRoot` is '/'), systeminformation's reading; otherwise null.
 */
export async function readTemperature(sysRoot: string): Promise<number | null> {
  try {
    const t = parseThermal(await readFile(join(sysRoot, 'sys', 'class', 'thermal', 'thermal_zone0', 'temp'), 'utf8'));
    if (t !== null) return t;
  } catch {
    // no sensor file
  }
  if (sysRoot !== '/') return null;
  const t = await si()
    .then((s) => s.cpuTemperature())
    .catch(() => undefined);
  // systeminformation reports an unknown temperature as null (or -1 on older versions).
  return t && typeof t.main === 'number' && t.main > 0 ? t.main : null;
}

// ---------------------------------------------------------------- Ollama

export type OllamaStatus =
  | { ok: true; models: string[]; installed: string[]; sizesMb?: Record<string, number>; expiresAt?: Record<string, number>; version: string }
  | { ok: false; reason: string };

/** What Ollama has loaded and installed, or why it does not answer. `ollama` should time out its calls. */
export async function probeOllama(ollama: Ollama): Promise<OllamaStatus> {
  try {
    const [ps, tags, version] = await Promise.all([ollama.ps(), ollama.list(), ollama.version()]);
    return {
      ok: true,
      models: ps.models.map((m) => m.name),
      installed: tags.models.map((m) => m.name),
      sizesMb: sizesMbOf(tags.models),
      expiresAt: expiriesOf(ps.models),
      version: version.version,
    };
  } catch (err) {
    return { ok: false, reason: `ollama unreachable: ${describeProbeError(err)}` };
  }
}

/**
 * Each installed model's size on disk from `/api/tags` (`size`, bytes), in megabytes of
 * 10^6 bytes, rounded; a model without a usable size is left out.
 */
export function sizesMbOf(models: readonly { name: string; size?: unknown }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of models) {
    const b = m.size;
    if (typeof b === 'number' && Number.isFinite(b) && b > 0) out[m.name] = Math.max(1, Math.round(b / 1e6));
  }
  return out;
}

/** When Ollama will unload each loaded model (`/api/ps` expires_at, ms on this machine's clock); unreadable ones are left out. */
export function expiriesOf(models: readonly { name: string; expires_at?: unknown }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of models) {
    const at = m.expires_at instanceof Date ? m.expires_at.getTime() : typeof m.expires_at === 'string' ? Date.parse(m.expires_at) : Number.NaN;
    if (Number.isFinite(at)) out[m.name] = at;
  }
  return out;
}

function describeProbeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (err.name === 'TimeoutError' || err.name === 'AbortError') return 'no answer within the time limit';
  const cause = err.cause as { message?: string; code?: string } | undefined;
  return cause?.message ? `${err.message}: ${cause.message}` : cause?.code ? `${err.message}: ${cause.code}` : err.message;
}

// ---------------------------------------------------------------- the document

export interface HealthInput {
  nodeId: string;
  cpuPercent: number;
  mem: MemInfo;
  tempCelsius: number | null;
  ollama: OllamaStatus;
  concurrency: number;
  active: number;
  waiting: number;
  /** Set to report the node unavailable whatever Ollama says (e.g. 'shutting down'). */
  unavailableReason?: string;
  /**
   * What `/api/tags` listed when Ollama last answered, reported while it does not: the models
   * are still on disk, and the bridge holds requests for a model only this node has rather
   * than refusing them as `model_not_found`.
   */
  lastInstalled?: string[];
  /** The sizes `/api/tags` gave when Ollama last answered, reported with `lastInstalled`. */
  lastSizesMb?: Record<string, number>;
  /** This worker process's random id (see duplicates.ts). */
  instanceId?: string;
  /** Other processes seen publishing under this node id lately. */
  duplicateInstances?: string[];
  /** Redis's clock, ms since the epoch (`last_seen` is stamped on it); the local clock when unset. */
  now?: number;
  /** Redis's clock minus this machine's, when measured. */
  clockOffsetMs?: number;
}

/** The health document, in the guide's field order, numbers rounded to one decimal. */
export function buildHealth(h: HealthInput): NodeHealth {
  const available = h.ollama.ok && h.unavailableReason === undefined;
  const doc: NodeHealth = {
    node_id: h.nodeId,
    cpu_percent: round1(h.cpuPercent),
    ram_percent: round1(ramPercent(h.mem)),
    temp_celsius: h.tempCelsius === null ? null : round1(h.tempCelsius),
    models: h.ollama.ok ? h.ollama.models : [],
    available,
    last_seen: rfc3339(h.now),
  };
  if (h.ollama.ok) doc.installed_models = h.ollama.installed;
  else if (h.lastInstalled) doc.installed_models = h.lastInstalled;
  const sizes = h.ollama.ok ? h.ollama.sizesMb : h.lastSizesMb;
  if (sizes !== undefined && Object.keys(sizes).length > 0) doc.installed_sizes_mb = sizes;
  const expires = h.ollama.ok ? h.ollama.expiresAt : undefined;
  if (expires !== undefined && Object.keys(expires).length > 0) {
    // On Redis's clock, as last_seen: a bridge compares it with its own view of that clock.
    doc.models_expire_at = Object.fromEntries(Object.entries(expires).map(([m, at]) => [m, rfc3339(at + (h.clockOffsetMs ?? 0))]));
  }
  doc.ram_total_mb = round1(h.mem.totalBytes / MIB);
  doc.ram_available_mb = round1(h.mem.availableBytes / MIB);
  doc.concurrency = h.concurrency;
  doc.active = h.active;
  doc.waiting = h.waiting;
  doc.worker_version = VERSION;
  doc.ollama_version = h.ollama.ok ? h.ollama.version : null;
  if (!available) doc.reason = h.unavailableReason ?? (h.ollama.ok ? 'unavailable' : h.ollama.reason);
  if (h.instanceId !== undefined) doc.instance_id = h.instanceId;
  if (h.duplicateInstances !== undefined && h.duplicateInstances.length > 0) doc.duplicate_instances = h.duplicateInstances;
  if (h.clockOffsetMs !== undefined) doc.clock_offset_ms = Math.round(h.clockOffsetMs);
  return doc;
}

/** The machine's share of the document: CPU, RAM and temperature. */
export interface SystemReading {
  cpuPercent: number;
  mem: MemInfo;
  tempCelsius: number | null;
}

export async function readSystem(cpu: CpuMeter, procRoot: string, sysRoot: string): Promise<SystemReading> {
  const [cpuPercent, mem, tempCelsius] = await Promise.all([cpu.read(), readMemInfo(procRoot), readTemperature(sysRoot)]);
  return { cpuPercent, mem, tempCelsius };
}

/**
 * Write one health document: the registry hash, the TTL key whose expiry marks the node dead,
 * the set of known nodes and the document's version, in one script (`publishHealth`). Refuses
 * a document that breaks the schema. Returns the document it replaced in the hash (JSON, or
 * null), read by the same script.
 */
export async function writeHealth(redis: Redis, n: Names, doc: NodeHealth, ttlMs: number): Promise<string | null> {
  const v = validateHealth(doc);
  if (!v.ok) throw new Error(`health document breaks the schema: ${v.message}`);
  return publishHealth(redis, n, doc.node_id, JSON.stringify(doc), ttlMs);
}
