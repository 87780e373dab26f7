import { crc32, inflateRawSync } from 'node:zlib';
import { corrupt, unsupported } from './errors.js';
import type { ByteSource } from './source.js';

/** One file of a zip archive (from the central directory). */
export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc: number;
  readonly localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const ZIP64_EOCD = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

function u16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}
function u64(b: Uint8Array, o: number): number {
  const v = u32(b, o) + u32(b, o + 4) * 2 ** 32;
  if (!Number.isSafeInteger(v)) throw corrupt(`Expected a zip64 size below 2^53 but received ${v}`);
  return v;
}

/**
 * Lists the entries of a zip archive from its central directory (zip64 aware). Only what PyTorch
 * writes is needed, but any stored or deflated archive without encryption or multiple disks reads.
 */
export function readZipDirectory(src: ByteSource): ZipEntry[] {
  const tailLen = Math.min(src.size, 22 + 0xffff);
  const tail = src.read(src.size - tailLen, tailLen, 'the zip end-of-central-directory record');
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (u32(tail, i) === EOCD && i + 22 + u16(tail, i + 20) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw corrupt('Expected a zip end-of-central-directory record near the end of the file but found none: the archive is truncated or not a zip');
  let count = u16(tail, eocd + 10);
  let cdSize = u32(tail, eocd + 12);
  let cdOffset = u32(tail, eocd + 16);
  if (u16(tail, eocd + 4) !== 0 || u16(tail, eocd + 6) !== 0) throw unsupported('Expected a single-disk zip archive but received a multi-disk one');
  const eocdAt = src.size - tailLen + eocd;
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    if (eocdAt < 20) throw corrupt('Expected a zip64 end-of-central-directory locator before the end record but the file is too short');
    const loc = src.read(eocdAt - 20, 20, 'the zip64 locator');
    if (u32(loc, 0) !== ZIP64_LOCATOR) throw corrupt('Expected a zip64 end-of-central-directory locator before the end record but found none');
    const rec = src.read(u64(loc, 8), 56, 'the zip64 end-of-central-directory record');
    if (u32(rec, 0) !== ZIP64_EOCD) throw corrupt('Expected a zip64 end-of-central-directory record at the offset the locator gives but found none');
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
  }
  const cd = src.read(cdOffset, cdSize, 'the zip central directory');
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > cd.length || u32(cd, p) !== CENTRAL) throw corrupt(`Expected central directory entry ${k} of ${count} at offset ${cdOffset + p} but found none`);
    const flags = u16(cd, p + 8);
    const method = u16(cd, p + 10);
    const crc = u32(cd, p + 16);
    let compressedSize = u32(cd, p + 20);
    let size = u32(cd, p + 24);
    const nameLen = u16(cd, p + 28);
    const extraLen = u16(cd, p + 30);
    const commentLen = u16(cd, p + 32);
    let localHeaderOffset = u32(cd, p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) throw corrupt(`Expected central directory entry ${k} to fit in the directory but it runs past its end`);
    const name = new TextDecoder().decode(cd.subarray(p + 46, p + 46 + nameLen));
    if (flags & 1) throw unsupported(`Expected unencrypted zip entries but "${name}" is encrypted`);
    const extra = cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen);
    for (let q = 0; q + 4 <= extra.length; ) {
      const id = u16(extra, q);
      const len = u16(extra, q + 2);
      if (id === 1) {
        let r = q + 4;
        if (size === 0xffffffff) (size = u64(extra, r)), (r += 8);
        if (compressedSize === 0xffffffff) (compressedSize = u64(extra, r)), (r += 8);
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = u64(extra, r);
      }
      q += 4 + len;
    }
    entries.push({ name, method, compressedSize, size, crc, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** The uncompressed bytes of one entry, checked against its size and CRC-32. */
export function readZipEntry(src: ByteSource, entry: ZipEntry): Uint8Array {
  const local = src.read(entry.localHeaderOffset, 30, `the local header of zip entry "${entry.name}"`);
  if (u32(local, 0) !== LOCAL) throw corrupt(`Expected a local file header for zip entry "${entry.name}" at offset ${entry.localHeaderOffset} but found none`);
  const dataStart = entry.localHeaderOffset + 30 + u16(local, 26) + u16(local, 28);
  const raw = src.read(dataStart, entry.compressedSize, `the data of zip entry "${entry.name}"`);
  let data: Uint8Array;
  if (entry.method === 0) {
    data = raw;
  } else if (entry.method === 8) {
    try {
      // bounded by the declared size, so a crafted entry cannot inflate without limit
      data = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
    } catch (cause) {
      throw corrupt(`Expected valid deflate data of ${entry.size} bytes in zip entry "${entry.name}" but inflating failed`, { cause });
    }
  } else {
    throw unsupported(`Expected zip entry "${entry.name}" to be stored (0) or deflated (8) but its method is ${entry.method}`);
  }
  if (data.length !== entry.size) throw corrupt(`Expected ${entry.size} bytes in zip entry "${entry.name}" but received ${data.length}`);
  const got = crc32(data) >>> 0;
  if (got !== entry.crc) {
    throw corrupt(`Expected CRC-32 ${entry.crc.toString(16)} for zip entry "${entry.name}" but computed ${got.toString(16)}: the data is corrupt`);
  }
  return data;
}
