/**
 * What a llama-architecture GGUF must hold before it is handed to llama.cpp. Missing keys that
 * llama.cpp reads with an assertion (feed_forward_length, attention.head_count) abort the whole
 * process rather than throw, so every problem is found here first and reported at once.
 *
 * The file is read with node-llama-cpp's `readGgufFileInfo` (header, metadata and tensor infos;
 * no tensor data, no llama.cpp binary). That reader fills bytes past the end of a short file
 * with zeros instead of failing, so a header that ends past the file's end is refused here.
 */
import { stat } from 'node:fs/promises';
import type { GgufFileInfo } from 'node-llama-cpp';
import { nodeLlamaCpp } from './runtime.js';

/** A file that is not GGUF, is truncated, or would not load; `problems` lists every reason. */
export class GgufError extends Error {
  override readonly name = 'GgufError';
  readonly problems: string[];

  constructor(problems: string[], options?: { cause?: unknown }) {
    super(problems.join('; '), options);
    this.problems = problems;
  }
}

type MetadataValue = string | number | bigint | boolean | MetadataValue[];

/** Metadata every file must have, whatever its architecture. */
const GENERAL_KEYS = ['general.architecture', 'tokenizer.ggml.model', 'tokenizer.ggml.tokens', 'tokenizer.ggml.token_type'];

/** Hyper-parameters of the llama architecture (all unsigned integers but the epsilon). */
const LLAMA_INT_KEYS = [
  'llama.context_length',
  'llama.embedding_length',
  'llama.block_count',
  'llama.feed_forward_length',
  'llama.attention.head_count',
] as const;
const LLAMA_EPSILON_KEY = 'llama.attention.layer_norm_rms_epsilon';

/** Tokenizer models llama.cpp accepts. */
const TOKENIZER_MODELS = ['llama', 'gpt2', 'bert', 't5', 'rwkv', 'plamo2', 'no_vocab'];

/** ggml type codes this validator can size (F32, F16, BF16); others are not size-checked. */
const TYPE_BYTES: Record<number, number> = { 0: 4, 1: 2, 30: 2 };

const DEFAULT_ALIGNMENT = 32;

export interface LlamaHyperParams {
  contextLength: number;
  embeddingLength: number;
  blockCount: number;
  feedForwardLength: number;
  headCount: number;
  headCountKv: number;
  vocabSize: number;
}

/**
 * The value stored under a dotted key ('llama.attention.head_count'): the reader nests metadata
 * by the dots of its keys. A key that names a group of keys rather than a value is missing.
 */
function metadataValue(info: GgufFileInfo, key: string): MetadataValue | undefined {
  let node: unknown = info.metadata;
  for (const part of key.split('.')) {
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  if (node !== null && typeof node === 'object' && !Array.isArray(node)) return undefined;
  return node as MetadataValue | undefined;
}

function asCount(v: MetadataValue | bigint | undefined): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  return undefined;
}

type Lookup = (key: string) => MetadataValue | undefined;

/**
 * Every reason this file would not load as a llama model (empty when it would). Checks the
 * required keys and their types, the tokenizer arrays, and the name and shape of each tensor
 * llama.cpp looks up, and that the tensor data lies inside the file.
 */
function llamaProblems(info: GgufFileInfo, fileSize: number): string[] {
  if (info.infoEndOffset === undefined || info.infoEndOffset > fileSize) return ['file ends inside the GGUF header'];
  const get: Lookup = (key) => metadataValue(info, key);
  const problems = [...keyProblems(get), ...tokenizerProblems(get), ...headProblems(get)];
  return problems.length > 0 ? problems : tensorProblems(info, llamaHyperParams(info), fileSize);
}

/** The general keys, the architecture, and the llama hyper-parameters with their types. */
function keyProblems(get: Lookup): string[] {
  const problems: string[] = [];
  for (const key of GENERAL_KEYS) if (get(key) === undefined) problems.push(`missing key ${key}`);
  const arch = get('general.architecture');
  if (arch !== undefined && arch !== 'llama') problems.push(`general.architecture is ${String(arch)}, expected llama`);
  for (const key of LLAMA_INT_KEYS) {
    const v = get(key);
    if (v === undefined) problems.push(`missing key ${key}`);
    else if (!asCount(v)) problems.push(`${key} must be a positive integer`);
  }
  const eps = get(LLAMA_EPSILON_KEY);
  if (eps === undefined) problems.push(`missing key ${LLAMA_EPSILON_KEY}`);
  else if (typeof eps !== 'number' || !(eps > 0)) problems.push(`${LLAMA_EPSILON_KEY} must be a positive float`);
  return problems;
}

/** The tokenizer model, its vocabulary and token types, and the BOS and EOS ids. */
function tokenizerProblems(get: Lookup): string[] {
  const problems: string[] = [];
  const model = get('tokenizer.ggml.model');
  if (model !== undefined && (typeof model !== 'string' || !TOKENIZER_MODELS.includes(model))) {
    problems.push(`tokenizer.ggml.model ${String(model)} is not one llama.cpp knows`);
  }
  if (model === 'gpt2' && get('tokenizer.ggml.merges') === undefined) {
    problems.push('missing key tokenizer.ggml.merges (required by the gpt2 tokenizer)');
  }
  const tokens = get('tokenizer.ggml.tokens');
  const types = get('tokenizer.ggml.token_type');
  let vocabSize = 0;
  if (tokens !== undefined) {
    if (!Array.isArray(tokens) || tokens.length === 0 || tokens.some((t) => typeof t !== 'string')) {
      problems.push('tokenizer.ggml.tokens must be a non-empty array of strings');
    } else {
      vocabSize = tokens.length;
    }
  }
  if (types !== undefined && (!Array.isArray(types) || (vocabSize > 0 && types.length !== vocabSize))) {
    problems.push(`tokenizer.ggml.token_type must have one entry per token (${vocabSize})`);
  }
  for (const key of ['tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id']) {
    const id = get(key);
    if (id !== undefined && (asCount(id) === undefined || (vocabSize > 0 && asCount(id)! >= vocabSize))) {
      problems.push(`${key} ${String(id)} is not a token id`);
    }
  }
  return problems;
}

/** Head counts that split the embedding and each other. */
function headProblems(get: Lookup): string[] {
  const problems: string[] = [];
  const nEmbd = asCount(get('llama.embedding_length'));
  const nHead = asCount(get('llama.attention.head_count'));
  const kvRaw = get('llama.attention.head_count_kv');
  const headCountKv = asCount(kvRaw) ?? nHead;
  if (kvRaw !== undefined && !asCount(kvRaw)) problems.push('llama.attention.head_count_kv must be a positive integer');
  if (nEmbd && nHead && nEmbd % nHead !== 0) {
    problems.push(`llama.embedding_length ${nEmbd} is not a multiple of llama.attention.head_count ${nHead}`);
  }
  if (nHead && headCountKv && nHead % headCountKv !== 0) {
    problems.push(`llama.attention.head_count ${nHead} is not a multiple of head_count_kv ${headCountKv}`);
  }
  return problems;
}

/** The shapes llama.cpp's llama graph expects, by tensor name (output.weight is optional). */
function expectedLlamaTensors(hp: LlamaHyperParams): Map<string, number[]> {
  const kvDim = (hp.embeddingLength / hp.headCount) * hp.headCountKv;
  const shapes = new Map<string, number[]>([
    ['token_embd.weight', [hp.embeddingLength, hp.vocabSize]],
    ['output_norm.weight', [hp.embeddingLength]],
  ]);
  for (let i = 0; i < hp.blockCount; i++) {
    shapes.set(`blk.${i}.attn_norm.weight`, [hp.embeddingLength]);
    shapes.set(`blk.${i}.attn_q.weight`, [hp.embeddingLength, hp.embeddingLength]);
    shapes.set(`blk.${i}.attn_k.weight`, [hp.embeddingLength, kvDim]);
    shapes.set(`blk.${i}.attn_v.weight`, [hp.embeddingLength, kvDim]);
    shapes.set(`blk.${i}.attn_output.weight`, [hp.embeddingLength, hp.embeddingLength]);
    shapes.set(`blk.${i}.ffn_norm.weight`, [hp.embeddingLength]);
    shapes.set(`blk.${i}.ffn_gate.weight`, [hp.embeddingLength, hp.feedForwardLength]);
    shapes.set(`blk.${i}.ffn_up.weight`, [hp.embeddingLength, hp.feedForwardLength]);
    shapes.set(`blk.${i}.ffn_down.weight`, [hp.feedForwardLength, hp.embeddingLength]);
  }
  return shapes;
}

function tensorProblems(info: GgufFileInfo, hp: LlamaHyperParams, fileSize: number): string[] {
  const problems: string[] = [];
  const tensors = (info.tensorInfo ?? []).map((t) => ({
    name: t.name,
    dims: t.dimensions.map(Number),
    type: t.ggmlType as number,
    offset: Number(t.offset),
    fileOffset: Number(t.fileOffset),
  }));
  const alignment = asCount(metadataValue(info, 'general.alignment')) ?? DEFAULT_ALIGNMENT;
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const expected = expectedLlamaTensors(hp);
  expected.set('output.weight', [hp.embeddingLength, hp.vocabSize]);
  for (const [name, dims] of expected) {
    const t = byName.get(name);
    if (!t) {
      if (name !== 'output.weight') problems.push(`missing tensor ${name}`);
      continue;
    }
    if (t.dims.join('x') !== dims.join('x')) {
      problems.push(`tensor ${name} is ${t.dims.join('x')}, expected ${dims.join('x')}`);
    }
  }
  for (const t of tensors) {
    if (t.offset % alignment !== 0) problems.push(`tensor ${t.name} offset ${t.offset} is not aligned`);
    const width = TYPE_BYTES[t.type];
    if (width !== undefined) {
      const end = t.fileOffset + t.dims.reduce((a, b) => a * b, 1) * width;
      if (end > fileSize) problems.push(`tensor ${t.name} runs past the end of the file (${end} > ${fileSize})`);
    }
  }
  return problems;
}

/** Hyper-parameters of a file that passed llamaProblems. */
function llamaHyperParams(info: GgufFileInfo): LlamaHyperParams {
  const n = (key: string): number => asCount(metadataValue(info, key)) ?? 0;
  const headCount = n('llama.attention.head_count');
  const tokens = metadataValue(info, 'tokenizer.ggml.tokens');
  return {
    contextLength: n('llama.context_length'),
    embeddingLength: n('llama.embedding_length'),
    blockCount: n('llama.block_count'),
    feedForwardLength: n('llama.feed_forward_length'),
    headCount,
    headCountKv: asCount(metadataValue(info, 'llama.attention.head_count_kv')) ?? headCount,
    vocabSize: Array.isArray(tokens) ? tokens.length : 0,
  };
}

/**
 * Read and check a file; resolves with its header, size and hyper-parameters, or rejects with a
 * GgufError naming every problem. Call this before any llama.cpp load.
 */
export async function validateLlamaGguf(path: string): Promise<{
  info: GgufFileInfo;
  fileSize: number;
  hyperParams: LlamaHyperParams;
}> {
  const { size: fileSize } = await stat(path);
  const { readGgufFileInfo } = await nodeLlamaCpp();
  const info = await readGgufFileInfo(path, { sourceType: 'filesystem', spliceSplitFiles: false, logWarnings: false }).catch(
    (err: unknown) => {
      throw new GgufError([`${path}: not a GGUF file llama.cpp can read: ${(err as Error).message}`], { cause: err });
    },
  );
  const problems = llamaProblems(info, fileSize);
  if (problems.length > 0) throw new GgufError(problems.map((p) => `${path}: ${p}`));
  return { info, fileSize, hyperParams: llamaHyperParams(info) };
}
