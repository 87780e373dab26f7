/**
 * A minimal protocol-buffers writer for the subset of `onnx.proto` ditfa needs (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto). Field numbers follow onnx/onnx.proto3.
 *
 * Messages are built as lists of byte chunks whose total length is known, so large tensors (weights)
 * are copied exactly once, into the final buffer.
 */

/** A protobuf message under construction: chunks and their total length. */
export class ProtoWriter {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  #push(bytes: Uint8Array): void {
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  #varint(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.#push(Uint8Array.from(out));
  }

  #tag(field: number, wire: number): void {
    this.#varint(BigInt((field << 3) | wire));
  }

  /** int32/int64/enum/bool field (varint; negative values as 10-byte two's complement). */
  int(field: number, value: number | bigint): this {
    this.#tag(field, 0);
    this.#varint(typeof value === 'bigint' ? value : BigInt(value));
    return this;
  }

  /** float field (fixed32). */
  float(field: number, value: number): this {
    this.#tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.#push(b);
    return this;
  }

  /** bytes field; the bytes are referenced, not copied, until {@link finish}. */
  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, 2);
    this.#varint(BigInt(value.length));
    this.#push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** Embedded message field. */
  message(field: number, value: ProtoWriter): this {
    this.#tag(field, 2);
    this.#varint(BigInt(value.length));
    for (const c of value.chunks) this.#push(c);
    return this;
  }

  /** Packed repeated int64 field. */
  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const inner = new ProtoWriter();
    for (const v of values) inner.#varint(typeof v === 'bigint' ? v : BigInt(v));
    this.#tag(field, 2);
    this.#varint(BigInt(inner.length));
    for (const c of inner.chunks) this.#push(c);
    return this;
  }

  /** Packed repeated float field. */
  packedFloats(field: number, values: readonly number[]): this {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    return this.bytes(field, b);
  }

  /** The encoded message in one buffer. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const c of this.chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  }
}

/** ONNX `TensorProto.DataType` values used here. */
export const OnnxDataType = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  bfloat16: 16,
} as const;
export type OnnxElementType = keyof typeof OnnxDataType;

/** ONNX `AttributeProto.AttributeType` values. */
export const OnnxAttributeType = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;
