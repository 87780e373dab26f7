import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { DTYPE_SIZE, isDType, type CheckpointTensor, type DType } from './dtype.js';
import { corrupt } from './errors.js';
import { openSource, type ByteSource } from './source.js';

/** The largest header accepted, as in the reference implementation (100 MB). */
export const SAFETENSORS_MAX_HEADER = 100_000_000;

/** One validated header entry; `begin`/`end` are offsets into the data section (after the header). */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  /** Entries in file order (ascending `begin`). */
  readonly entries: readonly SafetensorsEntry[];
  readonly metadata: Readonly<Record<string, string>>;
  /** File offset of the data section: 8 + header length. */
  readonly dataStart: number;
}

export interface ReadOptions {
  /** Only tensors whose name passes are read (the header is still validated in full). */
  readonly filter?: (name: string) => boolean;
}

export interface SafetensorsFile {
  readonly tensors: ReadonlyMap<string, CheckpointTensor>;
  readonly metadata: Readonly<Record<string, string>>;
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Reads and validates the header: every field is checked against the file size before any data is read. */
export function readSafetensorsHeader(src: ByteSource): SafetensorsHeader {
  if (src.size < 8) throw corrupt(`Expected a safetensors file of at least 8 bytes (the header length) but received ${src.size} bytes`);
  const lenBytes = src.read(0, 8, 'the header length');
  const view = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(SAFETENSORS_MAX_HEADER)) {
    throw corrupt(`Expected a safetensors header of at most ${SAFETENSORS_MAX_HEADER} bytes but the length field says ${n64}`);
  }
  const n = Number(n64);
  if (8 + n > src.size) {
    throw corrupt(`Expected the ${n}-byte safetensors header to fit in the ${src.size}-byte file but it needs ${8 + n} bytes: the file is truncated or not safetensors`);
  }
  const headerBytes = src.read(8, n, 'the header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (cause) {
    throw corrupt('Expected the safetensors header to be UTF-8 JSON but it is not valid UTF-8', { cause });
  }
  if (!text.startsWith('{')) throw corrupt(`Expected the safetensors header to start with "{" but received ${describeValue(text.slice(0, 16))}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw corrupt('Expected the safetensors header to be well-formed JSON but parsing failed', { cause });
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw corrupt(`Expected the safetensors header to be a JSON object but received ${describeValue(json)}`);
  }
  const dataStart = 8 + n;
  const dataSize = src.size - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
        throw corrupt(`Expected "__metadata__" to be a string map but received ${describeValue(raw)}`);
      }
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') throw corrupt(`Expected "__metadata__.${k}" to be a string but received ${describeValue(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw corrupt(`Expected tensor "${name}" to be an object {dtype, shape, data_offsets} but received ${describeValue(raw)}`);
    }
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (!isDType(dtype)) {
      throw corrupt(`Expected tensor "${name}" to have a dtype among ${Object.keys(DTYPE_SIZE).join(', ')} but received ${describeValue(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw corrupt(`Expected tensor "${name}" to have a shape of non-negative integers but received ${describeValue(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
      throw corrupt(`Expected tensor "${name}" to have data_offsets [begin, end] of non-negative integers but received ${describeValue(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw corrupt(`Expected begin <= end in the data_offsets of tensor "${name}" but received [${begin}, ${end}]`);
    if (end > dataSize) {
      throw corrupt(`Expected the data_offsets of tensor "${name}" to end within the ${dataSize}-byte data section but received [${begin}, ${end}]`);
    }
    let numel = 1;
    for (const s of shape as number[]) numel *= s;
    const expected = numel * DTYPE_SIZE[dtype];
    if (!Number.isSafeInteger(expected) || expected !== end - begin) {
      throw corrupt(
        `Expected tensor "${name}" (${dtype} [${(shape as number[]).join(', ')}]) to take ${expected} bytes but its data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    entries.push({ name, dtype, shape: Object.freeze([...(shape as number[])]), begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous = '(start of data)';
  for (const e of entries) {
    if (e.begin < cursor) throw corrupt(`Expected tensor "${e.name}" (bytes ${e.begin}..${e.end}) not to overlap "${previous}" (ending at ${cursor}) but it does`);
    if (e.begin > cursor) throw corrupt(`Expected tensor "${e.name}" to start at byte ${cursor} right after "${previous}" but it starts at ${e.begin}: the data section has a hole`);
    cursor = e.end;
    previous = e.name;
  }
  if (cursor !== dataSize) {
    throw corrupt(`Expected the tensors to cover the ${dataSize}-byte data section exactly but they end at byte ${cursor}`);
  }
  return { entries, metadata, dataStart };
}

/** Reads the tensors of an open source. */
export function readSafetensorsFrom(src: ByteSource, options: ReadOptions = {}): SafetensorsFile {
  const header = readSafetensorsHeader(src);
  const tensors = new Map<string, CheckpointTensor>();
  for (const e of header.entries) {
    if (options.filter && !options.filter(e.name)) continue;
    const bytes = src.read(header.dataStart + e.begin, e.end - e.begin, `the data of tensor "${e.name}"`);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, bytes });
  }
  return { tensors, metadata: header.metadata };
}

/**
 * Reads a safetensors file (path: header first, then one positioned read per tensor) or buffer
 * (tensors are views into it). Throws `ERR_DITFA_CHECKPOINT_CORRUPT` for any inconsistent field.
 */
export function readSafetensors(source: string | Uint8Array, options: ReadOptions = {}): SafetensorsFile {
  const src = openSource(source);
  try {
    return readSafetensorsFrom(src, options);
  } finally {
    src.close();
  }
}

/**
 * Serialises tensors as safetensors bytes: entries in the given order, each tensor's bytes copied as
 * they are, the header padded with spaces so that the data starts at a multiple of 8.
 */
export function writeSafetensors(
  tensors: ReadonlyMap<string, CheckpointTensor> | Iterable<readonly [string, CheckpointTensor]>,
  metadata: Readonly<Record<string, string>> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new InvalidArgumentError(`Expected metadata "${k}" to be a string but received ${describeValue(v)}`);
    }
    header.__metadata__ = metadata;
  }
  const list: [string, CheckpointTensor][] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__' || Object.prototype.hasOwnProperty.call(header, name)) {
      throw new InvalidArgumentError(`Expected unique tensor names other than "__metadata__" but received ${describeValue(name)} twice or reserved`);
    }
    if (!isDType(t.dtype)) throw new InvalidArgumentError(`Expected a known dtype for tensor "${name}" but received ${describeValue(t.dtype)}`);
    let numel = 1;
    for (const s of t.shape) {
      if (!isNonNegativeInteger(s)) throw new InvalidArgumentError(`Expected non-negative integer dimensions for tensor "${name}" but received ${describeValue(t.shape)}`);
      numel *= s;
    }
    if (numel * DTYPE_SIZE[t.dtype] !== t.bytes.byteLength) {
      throw new InvalidArgumentError(
        `Expected ${numel * DTYPE_SIZE[t.dtype]} bytes for tensor "${name}" (${t.dtype} [${t.shape.join(', ')}]) but received ${t.bytes.byteLength}`,
      );
    }
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + t.bytes.byteLength] };
    offset += t.bytes.byteLength;
    list.push([name, t]);
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let at = 8 + padded;
  for (const [, t] of list) {
    out.set(t.bytes, at);
    at += t.bytes.byteLength;
  }
  return out;
}
