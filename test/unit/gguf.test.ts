import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufFileInfo, type GgufFileInfo } from 'node-llama-cpp';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeGguf, type GgufKv, type GgufTensor } from '../../src/simulator/llama/gguf.js';
import { GgufError, validateLlamaGguf } from '../../src/simulator/llama/gguf-validate.js';
import { buildTinyLlama, writeTinyLlama } from '../../src/simulator/llama/tiny-model.js';

// The tiny model's vocabulary, as docs/LLAMA_ENGINE.md gives it: the 256 bytes, then <s> (BOS) and </s> (EOS).
const BYTE_VOCAB_SIZE = 258;
const BOS_TOKEN_ID = 256;
const EOS_TOKEN_ID = 257;

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'orion-gguf-test-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** The bytes as a file in a temp directory. */
async function asFile(bytes: Buffer, name = 'model.gguf'): Promise<string> {
  const path = join(await tempDir(), name);
  await writeFile(path, bytes);
  return path;
}

/** Read back with node-llama-cpp's reader, the one llama.cpp's loader is checked against here. */
async function readBack(bytes: Buffer): Promise<GgufFileInfo> {
  return readGgufFileInfo(await asFile(bytes), { sourceType: 'filesystem', logWarnings: false });
}

/** A metadata value by its dotted key (the reader nests keys by their dots). */
function meta(info: GgufFileInfo, key: string): unknown {
  return key.split('.').reduce<unknown>((node, part) => (node as Record<string, unknown> | undefined)?.[part], info.metadata);
}

/** The validator's problems for these bytes, without the path prefix (empty when it would load). */
async function problemsOf(bytes: Buffer): Promise<string[]> {
  const path = await asFile(bytes);
  const err = await validateLlamaGguf(path).then(() => undefined, (e: unknown) => e);
  if (err === undefined) return [];
  expect(err).toBeInstanceOf(GgufError);
  return (err as GgufError).problems.map((p) => p.replace(`${path}: `, ''));
}

/** GGUF's value type codes, from the format's specification. */
const SPEC_TYPE_CODES: Record<string, number> = {
  uint8: 0, int8: 1, uint16: 2, int16: 3, uint32: 4, int32: 5, float32: 6,
  bool: 7, string: 8, array: 9, uint64: 10, int64: 11, float64: 12,
};

/** The type code written after a metadata key: the u32 that follows the key's length and bytes. */
function storedTypeCode(bytes: Buffer, key: string): number {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(key)));
  const at = bytes.indexOf(Buffer.concat([len, Buffer.from(key, 'utf8')]));
  expect(at).toBeGreaterThan(0);
  return bytes.readUInt32LE(at + 8 + Buffer.byteLength(key));
}

const sampleKv: GgufKv[] = [
  { key: 'general.architecture', type: 'string', value: 'llama' },
  { key: 'test.u8', type: 'uint8', value: 200 },
  { key: 'test.i8', type: 'int8', value: -5 },
  { key: 'test.u16', type: 'uint16', value: 65_000 },
  { key: 'test.i16', type: 'int16', value: -30_000 },
  { key: 'test.u32', type: 'uint32', value: 4_000_000_000 },
  { key: 'test.i32', type: 'int32', value: -2_000_000_000 },
  { key: 'test.f32', type: 'float32', value: 0.5 },
  { key: 'test.bool', type: 'bool', value: true },
  { key: 'test.u64', type: 'uint64', value: 2n ** 40n },
  { key: 'test.i64', type: 'int64', value: -(2n ** 40n) },
  { key: 'test.f64', type: 'float64', value: Math.PI },
  { key: 'test.utf8', type: 'string', value: 'héllo ✓' },
  { key: 'test.strings', type: 'array', itemType: 'string', value: ['a', '', 'ccc'] },
  { key: 'test.ints', type: 'array', itemType: 'int32', value: [1, -2, 3] },
  { key: 'test.empty', type: 'array', itemType: 'string', value: [] },
];
// 3 and 5 floats: 12 and 20 bytes, so both need padding to the next 32.
const sampleTensors: GgufTensor[] = [
  { name: 'a.weight', dims: [3], data: Float32Array.from([1, 2, 3]) },
  { name: 'b.weight', dims: [5, 1], data: Float32Array.from([-1, -2, -3, -4, -5]) },
];

describe('GGUF writer', () => {
  const bytes = encodeGguf(sampleKv, sampleTensors);

  it('writes the v3 header: magic, version, tensor count, metadata count', () => {
    expect(bytes.toString('latin1', 0, 4)).toBe('GGUF');
    expect(bytes.readUInt32LE(4)).toBe(3);
    expect(bytes.readBigUInt64LE(8)).toBe(2n);
    expect(bytes.readBigUInt64LE(16)).toBe(BigInt(sampleKv.length));
    // The first key follows at once: u64 length, then its bytes.
    expect(bytes.readBigUInt64LE(24)).toBe(BigInt('general.architecture'.length));
    expect(bytes.toString('utf8', 32, 32 + 20)).toBe('general.architecture');
    expect(bytes.readUInt32LE(52)).toBe(SPEC_TYPE_CODES.string);
  });

  it('writes metadata that reads back with the same values and types', async () => {
    const info = await readBack(bytes);
    expect(info.version).toBe(3);
    for (const e of sampleKv) {
      expect(meta(info, e.key)).toEqual(e.type === 'float32' ? Math.fround(e.value as number) : e.value);
      expect(storedTypeCode(bytes, e.key)).toBe(SPEC_TYPE_CODES[e.type]);
    }
  });

  it('writes tensor infos whose aligned offsets locate the data', async () => {
    const info = await readBack(bytes);
    const tensors = info.tensorInfo ?? [];
    expect(meta(info, 'general.alignment')).toBeUndefined(); // so the default, 32, applies
    expect(tensors.map((t) => [t.name, t.dimensions, t.ggmlType])).toEqual([
      ['a.weight', [3], 0],
      ['b.weight', [5, 1], 0],
    ]);
    const dataOffset = info.infoEndOffset!;
    expect(dataOffset % 32).toBe(0);
    expect(tensors.map((t) => t.offset)).toEqual([0, 32]);
    for (const [i, t] of tensors.entries()) {
      const start = Number(t.fileOffset);
      expect(start).toBe(dataOffset + Number(t.offset));
      const count = t.dimensions.reduce<number>((a, b) => a * Number(b), 1);
      const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + start + count * 4));
      expect([...floats]).toEqual([...sampleTensors[i]!.data]);
    }
    // Padding bytes are zero and the file ends on the alignment.
    expect(bytes.length % 32).toBe(0);
    expect([...bytes.subarray(dataOffset + 12, dataOffset + 32)].every((b) => b === 0)).toBe(true);
  });

  it('honours general.alignment', async () => {
    const info = await readBack(encodeGguf([{ key: 'general.alignment', type: 'uint32', value: 64 }], sampleTensors));
    expect(meta(info, 'general.alignment')).toBe(64);
    expect(info.infoEndOffset! % 64).toBe(0);
    expect((info.tensorInfo ?? []).map((t) => t.offset)).toEqual([0, 64]);
  });

  it('refuses duplicate keys, a bad alignment, data that does not fit the dims and mistyped values', () => {
    const kv: GgufKv = { key: 'x', type: 'uint32', value: 1 };
    expect(() => encodeGguf([kv, kv], [])).toThrow(/duplicate/);
    expect(() => encodeGguf([{ key: 'general.alignment', type: 'uint32', value: 12 }], [])).toThrow(/multiple of 8/);
    expect(() => encodeGguf([], [{ name: 't', dims: [2, 2], data: new Float32Array(3) }])).toThrow(/hold 4 values/);
    expect(() => encodeGguf([{ key: 'x', type: 'string', value: 3 }], [])).toThrow(TypeError);
  });
});

describe('GGUF reading', () => {
  it('refuses a file that is not GGUF, or that ends inside the header', async () => {
    await expect(validateLlamaGguf(await asFile(Buffer.from('GGML\x03\x00\x00\x00')))).rejects.toThrow(/not a GGUF file/);
    const bytes = encodeGguf(sampleKv, sampleTensors);
    const short = validateLlamaGguf(await asFile(bytes.subarray(0, 100)));
    await expect(short).rejects.toThrow(GgufError);
    await expect(short).rejects.toThrow(/file ends inside the GGUF header/);
  });

  it('reads a header larger than its first read from disk', async () => {
    const big = Array.from({ length: 60_000 }, (_, i) => `token-number-${i}`);
    const { kv, tensors } = buildTinyLlama();
    const bytes = encodeGguf([...kv, { key: 'big', type: 'array', itemType: 'string', value: big }], tensors);
    expect(bytes.length).toBeGreaterThan(1 << 20);
    const { info, fileSize } = await validateLlamaGguf(await asFile(bytes, 'big.gguf'));
    expect(fileSize).toBe(bytes.length);
    expect((meta(info, 'big') as string[]).length).toBe(60_000);
    expect(info.tensorInfo).toHaveLength(tensors.length);
  });
});

describe('tiny llama model', () => {
  it('is a 2-layer, 64-wide llama with a 258-token byte vocabulary, about half a megabyte', async () => {
    const { kv, tensors, parameterCount } = buildTinyLlama();
    const bytes = encodeGguf(kv, tensors);
    const info = await readBack(bytes);
    expect(meta(info, 'general.architecture')).toBe('llama');
    expect(meta(info, 'llama.block_count')).toBe(2);
    expect(meta(info, 'llama.embedding_length')).toBe(64);
    expect(meta(info, 'tokenizer.ggml.model')).toBe('gpt2');
    expect((meta(info, 'tokenizer.ggml.tokens') as string[]).length).toBe(BYTE_VOCAB_SIZE);
    expect(meta(info, 'tokenizer.ggml.bos_token_id')).toBe(BOS_TOKEN_ID);
    expect(meta(info, 'tokenizer.ggml.eos_token_id')).toBe(EOS_TOKEN_ID);
    expect(info.tensorInfo).toHaveLength(3 + 2 * 9);
    expect(parameterCount).toBeGreaterThan(100_000);
    expect(parameterCount * 4).toBeLessThan(600_000);
    expect(await problemsOf(bytes)).toEqual([]);
  });

  it('spells bytes the way GPT-2 byte-level BPE does', async () => {
    const { kv, tensors } = buildTinyLlama();
    const alphabet = (meta(await readBack(encodeGguf(kv, tensors)), 'tokenizer.ggml.tokens') as string[]).slice(0, 256);
    expect(new Set(alphabet).size).toBe(256);
    expect(alphabet[0x41]).toBe('A');
    expect(alphabet[0x20]).toBe('\u0120'); // space: "Ġ"
    expect(alphabet[0x0a]).toBe('\u010a'); // newline: "Ċ"
    expect(alphabet[0xff]).toBe('ÿ');
  });

  it('comes out byte for byte the same for a seed, and different for another seed', async () => {
    const dir = await tempDir();
    const a = await writeTinyLlama(join(dir, 'a.gguf'));
    const b = await writeTinyLlama(join(dir, 'b.gguf'));
    const c = await writeTinyLlama(join(dir, 'c.gguf'), { seed: 7 });
    expect(a.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(b.digest).toBe(a.digest);
    expect(c.digest).not.toBe(a.digest);
    expect(c.sizeBytes).toBe(a.sizeBytes);
    await expect(validateLlamaGguf(a.path)).resolves.toMatchObject({ fileSize: a.sizeBytes });
  });
});

describe('llama GGUF validator', () => {
  const without = (...keys: string[]): Buffer => {
    const { kv, tensors } = buildTinyLlama();
    return encodeGguf(kv.filter((e) => !keys.includes(e.key)), tensors);
  };

  it('refuses a file missing llama.attention.head_count before llama.cpp can abort on it', async () => {
    const path = join(await tempDir(), 'no-heads.gguf');
    await writeFile(path, without('llama.attention.head_count'));
    const err = await validateLlamaGguf(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GgufError);
    expect((err as GgufError).problems).toEqual([`${path}: missing key llama.attention.head_count`]);
  });

  it('names every missing required key at once', async () => {
    const problems = await problemsOf(without('llama.feed_forward_length', 'tokenizer.ggml.token_type', 'llama.context_length'));
    expect(problems).toEqual([
      'missing key tokenizer.ggml.token_type',
      'missing key llama.context_length',
      'missing key llama.feed_forward_length',
    ]);
  });

  it('refuses tensors of the wrong shape, missing tensors and a truncated file', async () => {
    const { kv, tensors } = buildTinyLlama();
    const bad = tensors
      .filter((t) => t.name !== 'blk.1.ffn_up.weight')
      .map((t) => (t.name === 'blk.0.attn_q.weight' ? { ...t, dims: [32, 128] } : t));
    expect(await problemsOf(encodeGguf(kv, bad))).toEqual([
      'tensor blk.0.attn_q.weight is 32x128, expected 64x64',
      'missing tensor blk.1.ffn_up.weight',
    ]);
    const whole = encodeGguf(kv, tensors);
    const path = join(await tempDir(), 'short.gguf');
    await writeFile(path, whole.subarray(0, whole.length - 4096));
    await expect(validateLlamaGguf(path)).rejects.toThrow(/output.weight runs past the end of the file/);
  });

  it('refuses other architectures and inconsistent head counts', async () => {
    const { kv, tensors } = buildTinyLlama();
    const edit = (key: string, value: GgufKv): GgufKv[] => kv.map((e) => (e.key === key ? value : e));
    expect(await problemsOf(encodeGguf(edit('general.architecture', { key: 'general.architecture', type: 'string', value: 'gpt2' }), tensors))).toContain(
      'general.architecture is gpt2, expected llama',
    );
    expect(await problemsOf(encodeGguf(edit('llama.attention.head_count', { key: 'llama.attention.head_count', type: 'uint32', value: 5 }), tensors))).toContain(
      'llama.embedding_length 64 is not a multiple of llama.attention.head_count 5',
    );
  });
});
