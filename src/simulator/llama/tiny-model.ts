/**
 * A tiny llama-architecture model that the project generates itself: no download, no training,
 * about half a megabyte, and the same bytes every time for the same spec.
 *
 * Vocabulary: 258 tokens. Ids 0-255 are the 256 bytes, spelled the way GPT-2's byte-level BPE
 * spells them (printable Latin-1 as itself, the rest shifted to U+0100 and up), tokenizer model
 * `gpt2` with no merges, so llama.cpp splits any text into one token per UTF-8 byte and joins
 * them back losslessly. 256 is `<s>` (BOS) and 257 is `</s>` (EOS), both control tokens.
 * (A `llama` SentencePiece vocabulary of `<0xNN>` byte tokens would also load, but it turns
 * every space into U+2581 before falling back to bytes, so generated spaces would come back as
 * "▁" instead of " ".)
 *
 * Weights: float32, drawn from a seeded generator, with one crafted feature. Dimension 0 of the
 * residual stream is a constant channel: every token embedding holds +4 there and no layer
 * writes to it, so after the final RMS norm it is always positive. The output matrix reads that
 * channel as a per-token bias: strongly negative for bytes that are not printable ASCII (so the
 * text streamed back is always valid UTF-8 and readable), and for the rest the log of an
 * English letter frequency, so the output looks like letter soup with spaces rather than noise.
 * The random part of the weights makes the text depend on the prompt, the seed and the sampler.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { encodeGguf, type GgufKv, type GgufTensor } from './gguf.js';
import { seededRandom } from '../../lib/random.js';

export interface TinyLlamaSpec {
  /** Seed of the weight generator: another seed, another model. */
  seed: number;
  /** `llama.embedding_length` (n_embd). */
  embeddingLength: number;
  /** `llama.block_count` (layers). */
  blockCount: number;
  /** `llama.attention.head_count`; must divide embeddingLength. */
  headCount: number;
  /** `llama.feed_forward_length` (n_ff). */
  feedForwardLength: number;
  /** `llama.context_length`: the most tokens a context may hold. */
  contextLength: number;
}

export const DEFAULT_TINY_LLAMA: Readonly<TinyLlamaSpec> = Object.freeze({
  seed: 0x0510_2024,
  embeddingLength: 64,
  blockCount: 2,
  headCount: 4,
  feedForwardLength: 128,
  contextLength: 4096,
});

const BYTE_VOCAB_SIZE = 258;
const BOS_TOKEN_ID = 256;
const EOS_TOKEN_ID = 257;
/** Token types as GGUF numbers them. */
const TOKEN_TYPE_NORMAL = 1;
const TOKEN_TYPE_CONTROL = 3;

/** GPT-2's byte-to-character table: printable bytes map to themselves, others to U+0100+. */
function byteLevelAlphabet(): string[] {
  const printable = (b: number): boolean =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let shifted = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable(b) ? b : 256 + shifted++));
  return out;
}

const seeded = seededRandom;

/** Approximate frequencies (per 1000 characters) of English text; others printable get 0.5. */
const CHAR_FREQ: Record<string, number> = {
  ' ': 180, e: 100, t: 72, a: 64, o: 60, i: 56, n: 56, s: 52, h: 48, r: 48, d: 34, l: 32,
  u: 22, c: 22, m: 20, f: 18, w: 17, g: 16, y: 15, p: 15, b: 12, ',': 10, '.': 10, v: 8,
  k: 6, '\n': 3, T: 3, I: 2, A: 2, S: 2, j: 1, x: 1, q: 1, z: 1,
};
/** The end-of-sequence token is about as likely as a full stop, so replies end on their own. */
const EOS_FREQ = 8;

/**
 * Balance of the output matrix, tuned by eye: the random part (its standard deviation) makes the
 * text depend on the prompt; the bias part, read through the constant channel (about 1.5-2 after
 * the final norm), makes it letter-shaped. More noise gives byte salad, less gives only spaces.
 */
const OUTPUT_NOISE = 0.2;
const BIAS_SCALE = 0.6;

function outputBias(token: number): number {
  if (token === EOS_TOKEN_ID) return Math.log(EOS_FREQ);
  if (token >= 256) return -40; // BOS
  const allowed = token === 0x0a || (token >= 0x20 && token <= 0x7e);
  if (!allowed) return -40;
  return Math.log(CHAR_FREQ[String.fromCharCode(token)] ?? 0.5);
}

export interface TinyModelParts {
  kv: GgufKv[];
  tensors: GgufTensor[];
  /** Number of weights. */
  parameterCount: number;
}

/** Metadata and tensors of the tiny model (pure; see writeTinyLlama for the file). */
export function buildTinyLlama(overrides: Partial<TinyLlamaSpec> = {}): TinyModelParts {
  const spec: TinyLlamaSpec = { ...DEFAULT_TINY_LLAMA, ...overrides };
  const { embeddingLength: E, headCount: H } = spec;
  if (E % H !== 0 || (E / H) % 2 !== 0) throw new RangeError(`embeddingLength ${E} must split into ${H} heads of even size`);
  const tensors = tinyTensors(spec);
  const parameterCount = tensors.reduce((n, t) => n + t.data.length, 0);
  return { kv: tinyMetadata(spec), tensors, parameterCount };
}

/** The weights, drawn from the seed in a fixed order, with the crafted constant channel and output bias. */
function tinyTensors(spec: TinyLlamaSpec): GgufTensor[] {
  const { embeddingLength: E, feedForwardLength: F, blockCount: L } = spec;
  const V = BYTE_VOCAB_SIZE;
  const rnd = seeded(spec.seed);
  // Irwin-Hall: the sum of 4 uniforms is close enough to normal for weights, and cheap.
  const normal = (std: number): number => (rnd() + rnd() + rnd() + rnd() - 2) * std * Math.sqrt(3);
  const matrix = (cols: number, rows: number, std: number): Float32Array =>
    Float32Array.from({ length: cols * rows }, () => normal(std));
  const ones = (n: number): Float32Array => new Float32Array(n).fill(1);
  /** ggml order [in, out]: row `out` of an out-by-in matrix is data[out * in ... + in). */
  const zeroOutputRow = (m: Float32Array, inDim: number, row: number): Float32Array => {
    m.fill(0, row * inDim, (row + 1) * inDim);
    return m;
  };

  const embd = matrix(E, V, 1);
  for (let v = 0; v < V; v++) embd[v * E] = 4; // the constant channel

  const tensors: GgufTensor[] = [{ name: 'token_embd.weight', dims: [E, V], data: embd }];
  const w = 1 / Math.sqrt(E);
  for (let i = 0; i < L; i++) {
    const p = `blk.${i}`;
    tensors.push(
      { name: `${p}.attn_norm.weight`, dims: [E], data: ones(E) },
      { name: `${p}.attn_q.weight`, dims: [E, E], data: matrix(E, E, w * 2) },
      { name: `${p}.attn_k.weight`, dims: [E, E], data: matrix(E, E, w * 2) },
      { name: `${p}.attn_v.weight`, dims: [E, E], data: matrix(E, E, w) },
      { name: `${p}.attn_output.weight`, dims: [E, E], data: zeroOutputRow(matrix(E, E, w), E, 0) },
      { name: `${p}.ffn_norm.weight`, dims: [E], data: ones(E) },
      { name: `${p}.ffn_gate.weight`, dims: [E, F], data: matrix(E, F, w) },
      { name: `${p}.ffn_up.weight`, dims: [E, F], data: matrix(E, F, w) },
      { name: `${p}.ffn_down.weight`, dims: [F, E], data: zeroOutputRow(matrix(F, E, 1 / Math.sqrt(F)), F, 0) },
    );
  }
  const output = matrix(E, V, OUTPUT_NOISE);
  for (let v = 0; v < V; v++) {
    const bias = outputBias(v);
    output[v * E] = bias * BIAS_SCALE;
    if (bias <= -40) output.fill(0, v * E + 1, (v + 1) * E);
  }
  tensors.push({ name: 'output_norm.weight', dims: [E], data: ones(E) }, { name: 'output.weight', dims: [E, V], data: output });
  return tensors;
}

/** The llama hyper-parameters and the byte-level gpt2 vocabulary. */
function tinyMetadata(spec: TinyLlamaSpec): GgufKv[] {
  const { embeddingLength: E, feedForwardLength: F, headCount: H, blockCount: L } = spec;
  const V = BYTE_VOCAB_SIZE;
  const tokens = [...byteLevelAlphabet(), '<s>', '</s>'];
  const tokenTypes = tokens.map((_, i) => (i >= 256 ? TOKEN_TYPE_CONTROL : TOKEN_TYPE_NORMAL));
  return [
    { key: 'general.architecture', type: 'string', value: 'llama' },
    { key: 'general.name', type: 'string', value: 'ORION tiny llama' },
    { key: 'general.description', type: 'string', value: `Generated by the ORION simulator from seed ${spec.seed}; untrained.` },
    { key: 'general.file_type', type: 'uint32', value: 0 }, // ALL_F32
    { key: 'general.alignment', type: 'uint32', value: 32 },
    { key: 'llama.context_length', type: 'uint32', value: spec.contextLength },
    { key: 'llama.embedding_length', type: 'uint32', value: E },
    { key: 'llama.block_count', type: 'uint32', value: L },
    { key: 'llama.feed_forward_length', type: 'uint32', value: F },
    { key: 'llama.rope.dimension_count', type: 'uint32', value: E / H },
    { key: 'llama.rope.freq_base', type: 'float32', value: 10000 },
    { key: 'llama.attention.head_count', type: 'uint32', value: H },
    { key: 'llama.attention.head_count_kv', type: 'uint32', value: H },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: 'float32', value: 1e-5 },
    { key: 'llama.vocab_size', type: 'uint32', value: V },
    { key: 'tokenizer.ggml.model', type: 'string', value: 'gpt2' },
    { key: 'tokenizer.ggml.pre', type: 'string', value: 'default' },
    { key: 'tokenizer.ggml.tokens', type: 'array', itemType: 'string', value: tokens },
    { key: 'tokenizer.ggml.token_type', type: 'array', itemType: 'int32', value: tokenTypes },
    { key: 'tokenizer.ggml.merges', type: 'array', itemType: 'string', value: [] },
    { key: 'tokenizer.ggml.bos_token_id', type: 'uint32', value: BOS_TOKEN_ID },
    { key: 'tokenizer.ggml.eos_token_id', type: 'uint32', value: EOS_TOKEN_ID },
    { key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: true },
    { key: 'tokenizer.ggml.add_eos_token', type: 'bool', value: false },
  ];
}

export interface WrittenModel {
  path: string;
  sizeBytes: number;
  /** Hex sha256 of the file. */
  digest: string;
  parameterCount: number;
}

/** Write the tiny model to `path` (atomically: a temp file, then a rename). */
export async function writeTinyLlama(path: string, overrides: Partial<TinyLlamaSpec> = {}): Promise<WrittenModel> {
  const parts = buildTinyLlama(overrides);
  const bytes = encodeGguf(parts.kv, parts.tensors);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, path);
  return {
    path,
    sizeBytes: bytes.length,
    digest: createHash('sha256').update(bytes).digest('hex'),
    parameterCount: parts.parameterCount,
  };
}
