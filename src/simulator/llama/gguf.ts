/**
 * GGUF v3, the file format llama.cpp loads: the writer behind the generated models. Files are
 * read back with node-llama-cpp's `readGgufFileInfo` (see gguf-validate.ts).
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
 */

const GGUF_MAGIC = 'GGUF';
const GGUF_VERSION = 3;
const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types and their on-disk codes. */
const GGUF_VALUE_TYPES = {
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

type GgufScalarType = Exclude<keyof typeof GGUF_VALUE_TYPES, 'array'>;
type GgufScalar = number | bigint | boolean | string;

/** One metadata entry to write. Arrays hold scalars of one type. */
export type GgufKv =
  | { key: string; type: GgufScalarType; value: GgufScalar }
  | { key: string; type: 'array'; itemType: GgufScalarType; value: readonly GgufScalar[] };

/** The one ggml tensor type this writer emits. */
const GGML_TYPE_F32 = 0;

export interface GgufTensor {
  name: string;
  /** ggml order: dims[0] is the innermost (contiguous) dimension. */
  dims: readonly number[];
  data: Float32Array;
}

function alignOffset(offset: number, alignment: number): number {
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
