/**
 * GGUF v3, the file format llama.cpp loads: a writer, a reader and a validator.
 *
 * Layout (little-endian throughout):
 *
 *   header        "GGUF" u32 version=3, u64 tensor_count, u64 kv_count
 *   kv[]          string key, u32 value_type, value (arrays: u32 item_type, u64 count, items)
 *   tensor_info[] string name, u32 n_dims, u64 dims[n_dims] (innermost first), u32 ggml_type,
 *                 u64 offset (relative to the data section, a multiple of the alignment)
 *   padding       0x00 up to the alignment (`general.alignment`, default 32)
 *   data          each tensor's bytes, each padded to the alignment
 *
 * A string is a u64 byte length followed by UTF-8 bytes, no terminator.
 *
 * The validator exists because llama.cpp does not always fail politely: a llama-architecture
 * file without `llama.feed_forward_length` or `llama.attention.head_count` trips an assertion
 * that aborts the whole process. Every file is checked here before node-llama-cpp sees it.
 */
import { open } from 'node:fs/promises';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types and their on-disk codes. */
export const GGUF_VALUE_TYPES = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
} as const;

export type GgufValueType = keyof typeof GGUF_VALUE_TYPES;
export type GgufScalarType = Exclude<GgufValueType, 'array'>;
export type GgufScalar = number | bigint | boolean | string;
/** A value as read back: 64-bit integers come back as bigint, arrays may nest. */
export type GgufValue = GgufScalar | GgufValue[];

/** One metadata entry to write. Arrays hold scalars of one type. */
export type GgufKv =
  | { key: string; type: GgufScalarType; value: GgufScalar }
  | { key: string; type: 'array'; itemType: GgufScalarType; value: readonly GgufScalar[] };

/** ggml tensor types this writer emits (the reader accepts any code). */
export const GGML_TYPE_F32 = 0;

export interface GgufTensor {
  name: string;
  /** ggml order: dims[0] is the innermost (contiguous) dimension. */
  dims: readonly number[];
  data: Float32Array;
}

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  /** ggml type code (0 = F32, 1 = F16, ...). */
  type: number;
  /** Offset of the tensor's bytes from the start of the data section. */
  offset: number;
}

export interface GgufFileInfo {
  version: number;
  alignment: number;
  kv: Map<string, GgufValue>;
  /** Value type of each key, as stored. */
  kvTypes: Map<string, GgufValueType>;
  tensors: GgufTensorInfo[];
  /** Absolute file offset where the data section starts. */
  dataOffset: number;
}

/** A file that is not GGUF, is truncated, or would not load; `problems` lists every reason. */
export class GgufError extends Error {
  override readonly name = 'GgufError';
  readonly problems: string[];

  constructor(problems: string[], options?: { cause?: unknown }) {
    super(problems.join('; '), options);
    this.problems = problems;
  }
}

export function alignOffset(offset: number, alignment: number): number {
  return offset + ((alignment - (offset % alignment)) % alignment);
}

// ---------------------------------------------------------------------------------------------
// Writer

/** Growable little-endian byte sink. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }

  u8(v: number): void { this.reserve(1); this.buf.writeUInt8(v, this.length); this.length += 1; }
  i8(v: number): void { this.reserve(1); this.buf.writeInt8(v, this.length); this.length += 1; }
  u16(v: number): void { this.reserve(2); this.buf.writeUInt16LE(v, this.length); this.length += 2; }
  i16(v: number): void { this.reserve(2); this.buf.writeInt16LE(v, this.length); this.length += 2; }
  u32(v: number): void { this.reserve(4); this.buf.writeUInt32LE(v, this.length); this.length += 4; }
  i32(v: number): void { this.reserve(4); this.buf.writeInt32LE(v, this.length); this.length += 4; }
  f32(v: number): void { this.reserve(4); this.buf.writeFloatLE(v, this.length); this.length += 4; }
  f64(v: number): void { this.reserve(8); this.buf.writeDoubleLE(v, this.length); this.length += 8; }
  u64(v: number | bigint): void { this.reserve(8); this.buf.writeBigUInt64LE(BigInt(v), this.length); this.length += 8; }
  i64(v: number | bigint): void { this.reserve(8); this.buf.writeBigInt64LE(BigInt(v), this.length); this.length += 8; }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(b);
  }

  padTo(alignment: number): void {
    const target = alignOffset(this.length, alignment);
    this.reserve(target - this.length);
    this.buf.fill(0, this.length, target);
    this.length = target;
  }

  result(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeScalar(w: ByteWriter, type: GgufScalarType, value: GgufScalar, key: string): void {
  const expect = (ok: boolean): void => {
    if (!ok) throw new TypeError(`GGUF key ${key}: ${typeof value} is not a ${type}`);
  };
  switch (type) {
    case 'string':
      expect(typeof value === 'string');
      return w.string(value as string);
    case 'bool':
      expect(typeof value === 'boolean');
      return w.u8(value ? 1 : 0);
    case 'uint64':
    case 'int64':
      expect(typeof value === 'number' || typeof value === 'bigint');
      return type === 'uint64' ? w.u64(value as number | bigint) : w.i64(value as number | bigint);
    default:
      expect(typeof value === 'number');
  }
  const n = value as number;
  switch (type) {
    case 'uint8': return w.u8(n);
    case 'int8': return w.i8(n);
    case 'uint16': return w.u16(n);
    case 'int16': return w.i16(n);
    case 'uint32': return w.u32(n);
    case 'int32': return w.i32(n);
    case 'float32': return w.f32(n);
    case 'float64': return w.f64(n);
  }
}

/**
 * The bytes of a GGUF v3 file. Tensors are laid out in the order given; `general.alignment`
 * among the metadata sets the alignment (default 32).
 */
export function encodeGguf(kv: readonly GgufKv[], tensors: readonly GgufTensor[]): Buffer {
  const alignEntry = kv.find((e) => e.key === 'general.alignment');
  const alignment = alignEntry && alignEntry.type !== 'array' ? Number(alignEntry.value) : GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) {
    throw new RangeError(`general.alignment must be a positive multiple of 8, got ${alignment}`);
  }
  const seen = new Set<string>();
  for (const e of kv) {
    if (seen.has(e.key)) throw new RangeError(`duplicate GGUF key ${e.key}`);
    seen.add(e.key);
  }

  const w = new ByteWriter();
  w.bytes(Buffer.from(GGUF_MAGIC, 'ascii'));
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(kv.length);

  for (const e of kv) {
    w.string(e.key);
    w.u32(GGUF_VALUE_TYPES[e.type]);
    if (e.type === 'array') {
      w.u32(GGUF_VALUE_TYPES[e.itemType]);
      w.u64(e.value.length);
      for (const item of e.value) writeScalar(w, e.itemType, item, e.key);
    } else {
      writeScalar(w, e.type, e.value, e.key);
    }
  }

  let offset = 0;
  for (const t of tensors) {
    const elements = t.dims.reduce((a, b) => a * b, 1);
    if (elements !== t.data.length) {
      throw new RangeError(`tensor ${t.name}: dims ${t.dims.join('x')} hold ${elements} values, data has ${t.data.length}`);
    }
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GGML_TYPE_F32);
    w.u64(offset);
    offset = alignOffset(offset + t.data.byteLength, alignment);
  }

  w.padTo(alignment);
  for (const t of tensors) {
    // Float32Array memory is platform-endian; GGUF here is little-endian, as is every host we run on.
    w.bytes(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    w.padTo(alignment);
  }
  return w.result();
}

// ---------------------------------------------------------------------------------------------
// Reader

/** Thrown when the buffer ends before the structure does (the caller may read more and retry). */
class NeedMoreBytes extends Error {}

class ByteReader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new NeedMoreBytes();
  }

  u8(): number { this.need(1); return this.buf.readUInt8(this.pos++); }
  u32(): number { this.need(4); const v = this.buf.readUInt32LE(this.pos); this.pos += 4; return v; }
  u64(): bigint { this.need(8); const v = this.buf.readBigUInt64LE(this.pos); this.pos += 8; return v; }

  /** A u64 that must fit a JS number (counts, lengths, dims, offsets). */
  count(what: string): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError([`${what} ${v} is too large`]);
    return Number(v);
  }

  string(what: string): string {
    const len = this.count(`${what} length`);
    this.need(len);
    const s = this.buf.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    return s;
  }

  value(type: number, key: string, depth = 0): GgufValue {
    const b = this.buf;
    switch (type) {
      case 0: return this.u8();
      case 1: this.need(1); return b.readInt8(this.pos++);
      case 2: { this.need(2); const v = b.readUInt16LE(this.pos); this.pos += 2; return v; }
      case 3: { this.need(2); const v = b.readInt16LE(this.pos); this.pos += 2; return v; }
      case 4: return this.u32();
      case 5: { this.need(4); const v = b.readInt32LE(this.pos); this.pos += 4; return v; }
      case 6: { this.need(4); const v = b.readFloatLE(this.pos); this.pos += 4; return v; }
      case 7: {
        const v = this.u8();
        if (v > 1) throw new GgufError([`key ${key}: bool byte ${v} is neither 0 nor 1`]);
        return v === 1;
      }
      case 8: return this.string(`key ${key} value`);
      case 9: {
        if (depth > 4) throw new GgufError([`key ${key}: arrays nested too deeply`]);
        const itemType = this.u32();
        const n = this.count(`key ${key} array length`);
        const out: GgufValue[] = [];
        for (let i = 0; i < n; i++) out.push(this.value(itemType, key, depth + 1));
        return out;
      }
      case 10: return this.u64();
      case 11: { this.need(8); const v = b.readBigInt64LE(this.pos); this.pos += 8; return v; }
      case 12: { this.need(8); const v = b.readDoubleLE(this.pos); this.pos += 8; return v; }
      default:
        throw new GgufError([`key ${key}: unknown value type ${type}`]);
    }
  }
}

const TYPE_NAMES = Object.fromEntries(Object.entries(GGUF_VALUE_TYPES).map(([k, v]) => [v, k])) as Record<
  number,
  GgufValueType
>;

/**
 * Parse the header, metadata and tensor infos of a GGUF file (not the tensor data). Throws a
 * GgufError for anything that is not a well-formed GGUF v2/v3 header.
 */
export function parseGguf(buf: Buffer): GgufFileInfo {
  try {
    return parseOrNeedMore(buf);
  } catch (err) {
    if (err instanceof NeedMoreBytes) throw new GgufError(['file ends inside the GGUF header']);
    throw err;
  }
}

function parseOrNeedMore(buf: Buffer): GgufFileInfo {
  const r = new ByteReader(buf);
  if (buf.length >= 4 && buf.toString('latin1', 0, 4) !== GGUF_MAGIC) {
    throw new GgufError([`not a GGUF file (magic ${JSON.stringify(buf.toString('latin1', 0, 4))})`]);
  }
  r.pos = 4;
  const version = r.u32();
  if (version !== 2 && version !== 3) throw new GgufError([`unsupported GGUF version ${version}`]);
  const tensorCount = r.count('tensor count');
  const kvCount = r.count('metadata count');

  const kv = new Map<string, GgufValue>();
  const kvTypes = new Map<string, GgufValueType>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string('key');
    const type = r.u32();
    const name = TYPE_NAMES[type];
    if (!name) throw new GgufError([`key ${key}: unknown value type ${type}`]);
    kv.set(key, r.value(type, key));
    kvTypes.set(key, name);
  }

  const alignValue = kv.get('general.alignment');
  const alignment = alignValue === undefined ? GGUF_DEFAULT_ALIGNMENT : Number(alignValue);
  if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) {
    throw new GgufError([`general.alignment ${String(alignValue)} is not a positive multiple of 8`]);
  }

  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string('tensor name');
    const nDims = r.u32();
    if (nDims > 8) throw new GgufError([`tensor ${name}: ${nDims} dimensions`]);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.count(`tensor ${name} dimension`));
    const type = r.u32();
    const offset = r.count(`tensor ${name} offset`);
    tensors.push({ name, dims, type, offset });
  }
  return { version, alignment, kv, kvTypes, tensors, dataOffset: alignOffset(r.pos, alignment) };
}

/**
 * Read a GGUF file's header from disk without reading its tensor data: starts with 1 MiB and
 * reads more only while the metadata (a large vocabulary, say) runs past it.
 */
export async function readGgufFile(path: string, maxHeaderBytes = 256 * 1024 * 1024): Promise<{
  info: GgufFileInfo;
  fileSize: number;
}> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    let chunk = Math.min(size, 1 << 20);
    for (;;) {
      const buf = Buffer.alloc(chunk);
      const { bytesRead } = await fh.read(buf, 0, chunk, 0);
      try {
        return { info: parseOrNeedMore(buf.subarray(0, bytesRead)), fileSize: size };
      } catch (err) {
        if (!(err instanceof NeedMoreBytes)) throw err;
        if (chunk >= size || chunk >= maxHeaderBytes) {
          throw new GgufError([`${path}: file ends inside the GGUF header`]);
        }
        chunk = Math.min(size, chunk * 4, maxHeaderBytes);
      }
    }
  } finally {
    await fh.close();
  }
}
