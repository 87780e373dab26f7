import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { InvalidArgumentError, describeValue } from '@ditfa/core';
import { CheckpointError, CheckpointErrorCode, corrupt } from './errors.js';

/**
 * Random access to the bytes of a checkpoint: an in-memory buffer or an open file. Readers ask for the
 * ranges they need, so a multi-gigabyte file is never loaded as one buffer.
 */
export interface ByteSource {
  readonly size: number;
  /** `length` bytes from `offset`; throws a corrupt-checkpoint error naming `what` when the range passes the end. */
  read(offset: number, length: number, what?: string): Uint8Array;
  close(): void;
}

function checkRange(size: number, offset: number, length: number, what: string): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw corrupt(`Expected ${what} (bytes ${offset}..${offset + length}) to lie inside the ${size}-byte file but it does not: the file is truncated or its offsets are wrong`);
  }
}

/** A source over bytes in memory; reads are views (no copy). */
export function bufferSource(bytes: Uint8Array): ByteSource {
  if (!(bytes instanceof Uint8Array)) {
    throw new InvalidArgumentError(`Expected a Uint8Array or a file path but received ${describeValue(bytes)}`);
  }
  return {
    size: bytes.byteLength,
    read(offset, length, what = 'a range') {
      checkRange(bytes.byteLength, offset, length, what);
      return bytes.subarray(offset, offset + length);
    },
    close() {},
  };
}

/** A source over a file, read with positioned `fs.readSync` calls; each read returns a fresh buffer. */
export function fileSource(path: string): ByteSource {
  if (typeof path !== 'string' || path.length === 0) {
    throw new InvalidArgumentError(`Expected a non-empty file path but received ${describeValue(path)}`);
  }
  let fd: number;
  let size: number;
  try {
    fd = openSync(path, 'r');
    size = fstatSync(fd).size;
  } catch (cause) {
    throw new CheckpointError(CheckpointErrorCode.Io, `Expected a readable checkpoint file at ${path} but opening it failed`, { cause });
  }
  let closed = false;
  return {
    size,
    read(offset, length, what = 'a range') {
      checkRange(size, offset, length, what);
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        let got: number;
        try {
          got = readSync(fd, out, done, Math.min(length - done, 1 << 30), offset + done);
        } catch (cause) {
          throw new CheckpointError(CheckpointErrorCode.Io, `Reading ${length} bytes at offset ${offset} of ${path} failed`, { cause });
        }
        if (got === 0) throw corrupt(`Expected ${length} bytes at offset ${offset} of ${path} but the file ended after ${done}`);
        done += got;
      }
      return out;
    },
    close() {
      if (!closed) {
        closed = true;
        closeSync(fd);
      }
    },
  };
}

/** Opens a path or wraps bytes. */
export function openSource(source: string | Uint8Array): ByteSource {
  return typeof source === 'string' ? fileSource(source) : bufferSource(source);
}
