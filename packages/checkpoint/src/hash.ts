import { createHash } from 'node:crypto';
import type { Tensor } from '@ditfa/core';
import { fromFloat32, type CheckpointTensor } from './dtype.js';

/**
 * A content hash of a set of weights for plan fingerprints: `sha256:<hex>` over the tensors sorted by
 * name, each contributing its name, dtype, shape and raw bytes (length-prefixed, so no two different
 * sets can serialise alike). Core float32 tensors hash as F32, so the same weights loaded from a
 * `.bin` and from a `.safetensors` give the same hash; an F16 copy of them does not.
 */
export function weightsHash(
  tensors: ReadonlyMap<string, CheckpointTensor | Tensor> | Iterable<readonly [string, CheckpointTensor | Tensor]>,
): string {
  const list = [...tensors].map(([name, t]) => [name, asCheckpointTensor(t)] as const);
  list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const hash = createHash('sha256');
  const u64 = (v: number): Uint8Array => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    return b;
  };
  const text = (s: string): void => {
    const b = new TextEncoder().encode(s);
    hash.update(u64(b.length));
    hash.update(b);
  };
  hash.update(u64(list.length));
  for (const [name, t] of list) {
    text(name);
    text(t.dtype);
    hash.update(u64(t.shape.length));
    for (const s of t.shape) hash.update(u64(s));
    hash.update(u64(t.bytes.byteLength));
    hash.update(t.bytes);
  }
  return `sha256:${hash.digest('hex')}`;
}

function asCheckpointTensor(t: CheckpointTensor | Tensor): CheckpointTensor {
  return 'bytes' in t ? t : fromFloat32(t.data, t.shape);
}
