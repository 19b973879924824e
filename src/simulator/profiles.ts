/**
 * The figures the simulator runs on: models (sizes, memory, metadata), storage bandwidths and
 * Raspberry Pi 5 node profiles (RAM, per-model speeds). Everything here is data; the engine and
 * the scheduler read it and nothing else decides timings.
 *
 * Where the numbers come from:
 * - Disk sizes are the ones the Ollama model library lists for each tag (Q4_K_M / Q8_0 GGUF
 *   blobs): gemma3:1b 815 MB, llama3.2:1b 1.3 GB, llama3.2:3b 2.0 GB, qwen2.5:0.5b 398 MB,
 *   tinyllama (tag latest) 638 MB, llama3.1:8b 4.9 GB.
 * - Memory when loaded is an estimate: the weights plus an f16 KV cache for Ollama's default
 *   4096-token context (layers x 2 x kv_heads x head_dim x 4096 x 2 bytes) plus a few hundred MB of
 *   compute buffers. It is what `/api/ps` reports and what the scheduler budgets.
 * - Generation speeds are published community measurements of Ollama on a stock Raspberry Pi 5
 *   (Cortex-A76 at 2.4 GHz, CPU only): llama3.2:3b about 4.6 tokens/s on the 8 GB board and 4.9 on
 *   the 16 GB board; 1B-class models (gemma3:1b, llama3.2:1b, tinyllama) roughly 10-14
 *   tokens/s; qwen2.5:0.5b near 20; an 8B model about 2. Prompt evaluation on the same CPU runs at
 *   a few times the generation rate (tens of tokens/s for 1-3B models). The 4 GB board has the
 *   same SoC and memory type, so it gets the 8 GB board's speeds.
 * - MemTotal is roughly what Raspberry Pi OS (64-bit) reports on each board: the nominal RAM minus
 *   what the firmware and kernel reserve (`free -m` shows about 4045, 8052 and 16210 MiB).
 * - Storage: the Pi 5 microSD slot (SDR104) reads about 85 MB/s, so a cold gemma3:1b load takes
 *   about 10 s and llama3.2:3b about 24 s; an NVMe SSD on the PCIe x1 connector reads about
 *   400-450 MB/s at the default Gen 2 and about 780 MB/s when forced to Gen 3 (hdparm figures).
 * - Thermals: a Pi 5 without active cooling idles around 45 C and climbs past 80 C under sustained
 *   all-core load; the firmware throttles the CPU from 85 C. The time constants (about a minute
 *   to heat, two to cool) are estimates for a bare board with a passive heatsink.
 * - Pull downloads default to 25 MB/s (a 200 Mbit/s home connection).
 */

const MB = 1_000_000;
const MiB = 1024 * 1024;

export interface ModelSpec {
  /** Canonical name with tag, as `/api/tags` shows it. */
  name: string;
  family: string;
  families: string[];
  parameterSize: string;
  quantizationLevel: string;
  /** Parameter count, for `/api/show` model_info. */
  parameterCount: number;
  /** Bytes on disk. */
  diskBytes: number;
  /** Bytes of RAM once loaded with the default context. */
  memoryBytes: number;
  /** Context length of the loaded runner (Ollama's default num_ctx). */
  contextLength: number;
  /** The model's trained context window (model_info `<arch>.context_length`). */
  trainedContextLength: number;
  capabilities: string[];
  license: string;
  template: string;
  /** Modelfile PARAMETER lines as `[name, value]` pairs. */
  parameters: Array<[string, string]>;
}

const LLAMA3_TEMPLATE =
  '<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>' +
  '<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>' +
  '<|start_header_id|>assistant<|end_header_id|>\n\n';
const LLAMA3_STOPS: Array<[string, string]> = [
  ['stop', '"<|start_header_id|>"'],
  ['stop', '"<|end_header_id|>"'],
  ['stop', '"<|eot_id|>"'],
];

export const MODEL_CATALOG: readonly ModelSpec[] = [
  {
    name: 'gemma3:1b',
    family: 'gemma3',
    families: ['gemma3'],
    parameterSize: '999.89M',
    quantizationLevel: 'Q4_K_M',
    parameterCount: 999_885_952,
    diskBytes: 815 * MB,
    memoryBytes: 1_300 * MB,
    contextLength: 4096,
    trainedContextLength: 32_768,
    capabilities: ['completion'],
    license: 'Gemma Terms of Use',
    template: '<start_of_turn>user\n{{ .Prompt }}<end_of_turn>\n<start_of_turn>model\n',
    parameters: [
      ['stop', '"<end_of_turn>"'],
      ['temperature', '1'],
      ['top_k', '64'],
      ['top_p', '0.95'],
    ],
  },
  {
    name: 'llama3.2:1b',
    family: 'llama',
    families: ['llama'],
    parameterSize: '1.2B',
    quantizationLevel: 'Q8_0',
    parameterCount: 1_235_814_432,
    diskBytes: 1_300 * MB,
    memoryBytes: 1_750 * MB,
    contextLength: 4096,
    trainedContextLength: 131_072,
    capabilities: ['completion', 'tools'],
    license: 'LLAMA 3.2 COMMUNITY LICENSE AGREEMENT',
    template: LLAMA3_TEMPLATE,
    parameters: LLAMA3_STOPS,
  },
  {
    name: 'llama3.2:3b',
    family: 'llama',
    families: ['llama'],
    parameterSize: '3.2B',
    quantizationLevel: 'Q4_K_M',
    parameterCount: 3_212_749_888,
    diskBytes: 2_000 * MB,
    memoryBytes: 2_800 * MB,
    contextLength: 4096,
    trainedContextLength: 131_072,
    capabilities: ['completion', 'tools'],
    license: 'LLAMA 3.2 COMMUNITY LICENSE AGREEMENT',
    template: LLAMA3_TEMPLATE,
    parameters: LLAMA3_STOPS,
  },
  {
    name: 'qwen2.5:0.5b',
    family: 'qwen2',
    families: ['qwen2'],
    parameterSize: '494.03M',
    quantizationLevel: 'Q4_K_M',
    parameterCount: 494_032_768,
    diskBytes: 398 * MB,
    memoryBytes: 700 * MB,
    contextLength: 4096,
    trainedContextLength: 32_768,
    capabilities: ['completion', 'tools'],
    license: 'Apache License 2.0',
    template: '<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n',
    parameters: [['stop', '"<|im_end|>"']],
  },
  {
    name: 'tinyllama:latest',
    family: 'llama',
    families: ['llama'],
    parameterSize: '1B',
    quantizationLevel: 'Q4_0',
    parameterCount: 1_100_048_384,
    diskBytes: 638 * MB,
    memoryBytes: 900 * MB,
    contextLength: 2048,
    trainedContextLength: 2048,
    capabilities: ['completion'],
    license: 'Apache License 2.0',
    template: '<|system|>\n{{ .System }}</s>\n<|user|>\n{{ .Prompt }}</s>\n<|assistant|>\n',
    parameters: [
      ['stop', '"<|system|>"'],
      ['stop', '"<|user|>"'],
      ['stop', '"<|assistant|>"'],
      ['stop', '"</s>"'],
    ],
  },
  {
    name: 'llama3.1:8b',
    family: 'llama',
    families: ['llama'],
    parameterSize: '8.0B',
    quantizationLevel: 'Q4_K_M',
    parameterCount: 8_030_261_248,
    diskBytes: 4_900 * MB,
    memoryBytes: 5_800 * MB,
    contextLength: 4096,
    trainedContextLength: 131_072,
    capabilities: ['completion', 'tools'],
    license: 'LLAMA 3.1 COMMUNITY LICENSE AGREEMENT',
    template: LLAMA3_TEMPLATE,
    parameters: LLAMA3_STOPS,
  },
];

/** Sequential read bandwidth of the storage a node loads models from, bytes per second. */
export const STORAGE_BANDWIDTH = {
  microsd: 85 * MB,
  nvme: 450 * MB,
  'nvme-gen3': 780 * MB,
  /** No wait at all (the `instant` profile). */
  instant: Number.POSITIVE_INFINITY,
} as const;

export type StorageKind = keyof typeof STORAGE_BANDWIDTH;

export function isStorageKind(v: string): v is StorageKind {
  return v in STORAGE_BANDWIDTH;
}

export interface ModelRates {
  /** Generation speed, tokens per second, one request alone on the node. */
  evalTps: number;
  /** Prompt evaluation speed, tokens per second. */
  promptTps: number;
}

export interface NodeProfile {
  name: string;
  description: string;
  /** MemTotal, bytes. */
  ramBytes: number;
  /** RAM used by the OS and the Ollama server with no model loaded, bytes. */
  baseUsedBytes: number;
  cores: number;
  storage: StorageKind;
  /** Models installed when the node starts. */
  installed: string[];
  /** Every model this board can run (and therefore pull), with its speeds. */
  rates: Record<string, ModelRates>;
  /**
   * How much each extra concurrent generation slows every stream: with n at once each runs at
   * rate / (1 + slowdown * (n - 1)). The four cores are already saturated by one stream, so the
   * aggregate gains little.
   */
  parallelSlowdown: number;
  thermal: ThermalProfile;
}

export interface ThermalProfile {
  /** Idle steady-state temperature, Celsius. */
  ambientC: number;
  /** Steady-state temperature under sustained full load, Celsius. */
  maxC: number;
  /** Time constant of heating under load, simulated seconds. */
  heatTauS: number;
  /** Time constant of cooling when idle, simulated seconds. */
  coolTauS: number;
  /** At or above this temperature the CPU throttles. */
  throttleC: number;
  /** Speed multiplier while throttled. */
  throttleFactor: number;
}

const PI5_THERMAL: ThermalProfile = {
  ambientC: 45,
  maxC: 82,
  heatTauS: 60,
  coolTauS: 120,
  throttleC: 85,
  throttleFactor: 0.7,
};

const PI5_8G_RATES: Record<string, ModelRates> = {
  'qwen2.5:0.5b': { evalTps: 19, promptTps: 100 },
  'gemma3:1b': { evalTps: 11.5, promptTps: 55 },
  'llama3.2:1b': { evalTps: 10, promptTps: 48 },
  'tinyllama:latest': { evalTps: 13, promptTps: 65 },
  'llama3.2:3b': { evalTps: 4.6, promptTps: 18 },
  'llama3.1:8b': { evalTps: 1.9, promptTps: 6.5 },
};

/** Every model of the catalog, answered with no wait at all. */
const INSTANT_RATES: Record<string, ModelRates> = Object.fromEntries(
  ['qwen2.5:0.5b', 'gemma3:1b', 'llama3.2:1b', 'tinyllama:latest', 'llama3.2:3b', 'llama3.1:8b'].map((m) => [
    m,
    { evalTps: Number.POSITIVE_INFINITY, promptTps: Number.POSITIVE_INFINITY },
  ]),
);

/**
 * Not a Pi: a backend that loads and generates in no time and never heats, for measuring what
 * ORION itself adds (bench P4, P1) and for tests that want answers at once. Its RAM is the
 * 16 GB board's, so a worker on it takes two jobs at once like on a Pi 16 GB.
 */
export const INSTANT_PROFILE: NodeProfile = {
  name: 'instant',
  description: 'no waits: loads and generates at once (benchmarks, tests)',
  ramBytes: 16_210 * MiB,
  baseUsedBytes: 600 * MB,
  cores: 4,
  storage: 'instant',
  installed: ['gemma3:1b', 'llama3.2:3b'],
  rates: INSTANT_RATES,
  parallelSlowdown: 0,
  thermal: { ambientC: 45, maxC: 45, heatTauS: 60, coolTauS: 120, throttleC: 85, throttleFactor: 1 },
};

export const NODE_PROFILES: Readonly<Record<string, NodeProfile>> = {
  'pi5-16g': {
    name: 'pi5-16g',
    description: 'Raspberry Pi 5, 16 GB, microSD',
    ramBytes: 16_210 * MiB,
    baseUsedBytes: 600 * MB,
    cores: 4,
    storage: 'microsd',
    installed: ['llama3.2:3b', 'gemma3:1b'],
    rates: {
      'qwen2.5:0.5b': { evalTps: 20, promptTps: 105 },
      'gemma3:1b': { evalTps: 12, promptTps: 58 },
      'llama3.2:1b': { evalTps: 10.5, promptTps: 50 },
      'tinyllama:latest': { evalTps: 13.5, promptTps: 68 },
      'llama3.2:3b': { evalTps: 4.9, promptTps: 19 },
      'llama3.1:8b': { evalTps: 2, promptTps: 7 },
    },
    parallelSlowdown: 0.7,
    thermal: PI5_THERMAL,
  },
  'pi5-8g': {
    name: 'pi5-8g',
    description: 'Raspberry Pi 5, 8 GB, microSD',
    ramBytes: 8_052 * MiB,
    baseUsedBytes: 600 * MB,
    cores: 4,
    storage: 'microsd',
    installed: ['gemma3:1b', 'llama3.2:3b'],
    rates: PI5_8G_RATES,
    parallelSlowdown: 0.7,
    thermal: PI5_THERMAL,
  },
  'pi5-4g': {
    name: 'pi5-4g',
    description: 'Raspberry Pi 5, 4 GB, microSD',
    ramBytes: 4_045 * MiB,
    baseUsedBytes: 550 * MB,
    cores: 4,
    storage: 'microsd',
    installed: ['gemma3:1b'],
    rates: PI5_8G_RATES,
    parallelSlowdown: 0.7,
    thermal: PI5_THERMAL,
  },
  instant: INSTANT_PROFILE,
};

export const DEFAULT_PROFILE = 'pi5-8g';

export function profileNames(): string[] {
  return Object.keys(NODE_PROFILES);
}

/** The named profile, or a thrown Error listing the known ones. */
export function getProfile(name: string): NodeProfile {
  const p = NODE_PROFILES[name];
  if (!p) throw new Error(`unknown profile '${name}' (known: ${profileNames().join(', ')})`);
  return p;
}

export function findModelSpec(name: string): ModelSpec | undefined {
  return MODEL_CATALOG.find((m) => m.name === name);
}
