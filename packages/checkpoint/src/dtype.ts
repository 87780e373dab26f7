import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { unsupported } from './errors.js';

/** Element types a checkpoint tensor can hold (safetensors spelling). */
export type DType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each {@link DType}. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

export function isDType(value: unknown): value is DType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, value);
}

/**
 * A tensor as stored in a checkpoint: its element type, its shape and its raw little-endian,
 * row-major (C order) bytes. `bytes` may be a view into a larger buffer; treat it as read-only.
 */
export interface CheckpointTensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Exact IEEE binary16 → binary32 conversion of one 16-bit pattern (subnormals, ±0, ±inf, NaN). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let f16Table: Float32Array | undefined;
function f16Lookup(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToF32(h);
  }
  return f16Table;
}

/**
 * Decodes a float tensor's bytes to a new Float32Array (always a copy). F16 and BF16 widen exactly;
 * F64 rounds to nearest float32. Integer and bool tensors are rejected: they are not weights.
 */
export function toFloat32(t: CheckpointTensor): Float32Array {
  const n = t.bytes.byteLength / DTYPE_SIZE[t.dtype];
  const { bytes } = t;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (t.dtype) {
    case 'F32':
      if (LITTLE_ENDIAN) {
        new Uint8Array(out.buffer).set(bytes);
      } else {
        for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      }
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    case 'F16': {
      const table = f16Lookup();
      for (let i = 0; i < n; i++) out[i] = table[view.getUint16(2 * i, true)]!;
      return out;
    }
    case 'BF16': {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    default:
      throw unsupported(`Expected a float tensor (F64, F32, F16 or BF16) to decode to float32 but received dtype ${t.dtype}`);
  }
}

/**
 * Like {@link toFloat32} but returns a view sharing the checkpoint's memory when the tensor is F32 and
 * its bytes are 4-byte aligned (always the case for tensors read from a file path), so that a
 * multi-gigabyte checkpoint is not held twice. Never mutate the result; other dtypes are decoded.
 */
export function asFloat32(t: CheckpointTensor): Float32Array {
  if (t.dtype === 'F32' && LITTLE_ENDIAN && t.bytes.byteOffset % 4 === 0) {
    return new Float32Array(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength / 4);
  }
  return toFloat32(t);
}

/** Wraps float32 data as a checkpoint tensor (F32, little-endian bytes). */
export function fromFloat32(data: Float32Array, shape: readonly number[]): CheckpointTensor {
  if (!(data instanceof Float32Array)) {
    throw new InvalidArgumentError(`Expected a Float32Array but received ${describeValue(data)}`);
  }
  let n = 1;
  for (const s of shape) n *= s;
  if (n !== data.length) {
    throw new InvalidArgumentError(`Expected ${n} elements for shape [${shape.join(', ')}] but received ${data.length}`);
  }
  let bytes: Uint8Array;
  if (LITTLE_ENDIAN) {
    bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } else {
    bytes = new Uint8Array(data.length * 4);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < data.length; i++) view.setFloat32(4 * i, data[i]!, true);
  }
  return { dtype: 'F32', shape: Object.freeze([...shape]), bytes };
}
