import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  GGUF_VALUE_TYPES,
  GgufError,
  encodeGguf,
  parseGguf,
  readGgufFile,
  type GgufKv,
  type GgufTensor,
} from '../../src/simulator/llama/gguf.js';
import { llamaProblems, validateLlamaGguf } from '../../src/simulator/llama/gguf-validate.js';
import {
  BOS_TOKEN_ID,
  BYTE_VOCAB_SIZE,
  EOS_TOKEN_ID,
  buildTinyLlama,
  byteLevelAlphabet,
  writeTinyLlama,
} from '../../src/simulator/llama/tiny-model.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'orion-gguf-test-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

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
    expect(bytes.readUInt32LE(52)).toBe(GGUF_VALUE_TYPES.string);
  });

  it('writes metadata that reads back with the same values and types', () => {
    const info = parseGguf(bytes);
    expect(info.version).toBe(3);
    for (const e of sampleKv) {
      expect(info.kv.get(e.key)).toEqual(e.type === 'float32' ? Math.fround(e.value as number) : e.value);
      expect(info.kvTypes.get(e.key)).toBe(e.type);
    }
  });

  it('writes tensor infos whose aligned offsets locate the data', () => {
    const info = parseGguf(bytes);
    expect(info.alignment).toBe(32);
    expect(info.tensors.map((t) => [t.name, t.dims, t.type])).toEqual([
      ['a.weight', [3], 0],
      ['b.weight', [5, 1], 0],
    ]);
    expect(info.dataOffset % 32).toBe(0);
    expect(info.tensors.map((t) => t.offset)).toEqual([0, 32]);
    for (const [i, t] of info.tensors.entries()) {
      const start = info.dataOffset + t.offset;
      const floats = new Float32Array(bytes.buffer.slice(bytes.byteOffset + start, bytes.byteOffset + start + t.dims.reduce((a, b) => a * b) * 4));
      expect([...floats]).toEqual([...sampleTensors[i]!.data]);
    }
    // Padding bytes are zero and the file ends on the alignment.
    expect(bytes.length % 32).toBe(0);
    expect([...bytes.subarray(info.dataOffset + 12, info.dataOffset + 32)].every((b) => b === 0)).toBe(true);
  });

  it('honours general.alignment', () => {
    const b = encodeGguf([{ key: 'general.alignment', type: 'uint32', value: 64 }], sampleTensors);
    const info = parseGguf(b);
    expect(info.alignment).toBe(64);
    expect(info.dataOffset % 64).toBe(0);
    expect(info.tensors.map((t) => t.offset)).toEqual([0, 64]);
  });

  it('refuses duplicate keys, a bad alignment, data that does not fit the dims and mistyped values', () => {
    const kv: GgufKv = { key: 'x', type: 'uint32', value: 1 };
    expect(() => encodeGguf([kv, kv], [])).toThrow(/duplicate/);
    expect(() => encodeGguf([{ key: 'general.alignment', type: 'uint32', value: 12 }], [])).toThrow(/multiple of 8/);
    expect(() => encodeGguf([], [{ name: 't', dims: [2, 2], data: new Float32Array(3) }])).toThrow(/hold 4 values/);
    expect(() => encodeGguf([{ key: 'x', type: 'string', value: 3 }], [])).toThrow(TypeError);
  });
});

describe('GGUF reader', () => {
  it('refuses a file that is not GGUF, or that ends inside the header', () => {
    expect(() => parseGguf(Buffer.from('GGML\x03\x00\x00\x00'))).toThrow(/not a GGUF file/);
    const bytes = encodeGguf(sampleKv, sampleTensors);
    expect(() => parseGguf(bytes.subarray(0, 100))).toThrow(GgufError);
  });

  it('reads a header larger than its first read from disk', async () => {
    const big = Array.from({ length: 60_000 }, (_, i) => `token-number-${i}`);
    const bytes = encodeGguf([{ key: 'big', type: 'array', itemType: 'string', value: big }], sampleTensors);
    expect(bytes.length).toBeGreaterThan(1 << 20);
    const path = join(await tempDir(), 'big.gguf');
    await writeFile(path, bytes);
    const { info, fileSize } = await readGgufFile(path);
    expect(fileSize).toBe(bytes.length);
    expect((info.kv.get('big') as string[]).length).toBe(60_000);
    expect(info.tensors).toHaveLength(2);
  });
});

describe('tiny llama model', () => {
  it('is a 2-layer, 64-wide llama with a 258-token byte vocabulary, about half a megabyte', () => {
    const { kv, tensors, parameterCount } = buildTinyLlama();
    const info = parseGguf(encodeGguf(kv, tensors));
    expect(info.kv.get('general.architecture')).toBe('llama');
    expect(info.kv.get('llama.block_count')).toBe(2);
    expect(info.kv.get('llama.embedding_length')).toBe(64);
    expect(info.kv.get('tokenizer.ggml.model')).toBe('gpt2');
    expect((info.kv.get('tokenizer.ggml.tokens') as string[]).length).toBe(BYTE_VOCAB_SIZE);
    expect(info.kv.get('tokenizer.ggml.bos_token_id')).toBe(BOS_TOKEN_ID);
    expect(info.kv.get('tokenizer.ggml.eos_token_id')).toBe(EOS_TOKEN_ID);
    expect(info.tensors).toHaveLength(3 + 2 * 9);
    expect(parameterCount).toBeGreaterThan(100_000);
    expect(parameterCount * 4).toBeLessThan(600_000);
    expect(llamaProblems(info)).toEqual([]);
  });

  it('spells bytes the way GPT-2 byte-level BPE does', () => {
    const alphabet = byteLevelAlphabet();
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

  it('names every missing required key at once', () => {
    const problems = llamaProblems(parseGguf(without('llama.feed_forward_length', 'tokenizer.ggml.token_type', 'llama.context_length')));
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
    expect(llamaProblems(parseGguf(encodeGguf(kv, bad)))).toEqual([
      'tensor blk.0.attn_q.weight is 32x128, expected 64x64',
      'missing tensor blk.1.ffn_up.weight',
    ]);
    const whole = encodeGguf(kv, tensors);
    const path = join(await tempDir(), 'short.gguf');
    await writeFile(path, whole.subarray(0, whole.length - 4096));
    await expect(validateLlamaGguf(path)).rejects.toThrow(/output.weight runs past the end of the file/);
  });

  it('refuses other architectures and inconsistent head counts', () => {
    const { kv, tensors } = buildTinyLlama();
    const edit = (key: string, value: GgufKv): GgufKv[] => kv.map((e) => (e.key === key ? value : e));
    expect(llamaProblems(parseGguf(encodeGguf(edit('general.architecture', { key: 'general.architecture', type: 'string', value: 'gpt2' }), tensors)))).toContain(
      'general.architecture is gpt2, expected llama',
    );
    expect(llamaProblems(parseGguf(encodeGguf(edit('llama.attention.head_count', { key: 'llama.attention.head_count', type: 'uint32', value: 5 }), tensors)))).toContain(
      'llama.embedding_length 64 is not a multiple of llama.attention.head_count 5',
    );
  });
});
