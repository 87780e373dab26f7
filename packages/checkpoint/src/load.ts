import { tensor, type Tensor } from '@ditfa/core';
import { asFloat32, toFloat32, type CheckpointTensor } from './dtype.js';
import { corrupt, unsupported } from './errors.js';
import { readSafetensorsFrom, type ReadOptions } from './safetensors.js';
import { openSource, type ByteSource } from './source.js';
import { readPytorchFrom } from './torch.js';

export type CheckpointFormat = 'safetensors' | 'pytorch';

export interface Checkpoint {
  readonly format: CheckpointFormat;
  readonly tensors: ReadonlyMap<string, CheckpointTensor>;
  /** safetensors `__metadata__` (empty for PyTorch files). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Non-tensor leaves skipped in a PyTorch file. */
  readonly ignored: readonly string[];
}

/** Detects the format from the first bytes: `PK\x03\x04`/`PK\x05\x06` → PyTorch zip, a `{` after the length → safetensors. */
export function detectFormat(src: ByteSource): CheckpointFormat {
  if (src.size < 9) throw corrupt(`Expected a checkpoint of at least 9 bytes but received ${src.size} bytes`);
  const head = src.read(0, 9, 'the file magic');
  if (head[0] === 0x50 && head[1] === 0x4b && ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6))) return 'pytorch';
  if (head[8] === 0x7b) return 'safetensors';
  if (head[0] === 0x80 && head[1] === 0x02) return 'pytorch';
  throw unsupported(
    `Expected a safetensors file ("{" at byte 8) or a PyTorch zip ("PK\\x03\\x04" at byte 0) but the first bytes are ${[...head].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`,
  );
}

/**
 * Loads a checkpoint from a path (read in pieces; the file is never held whole) or from bytes,
 * detecting the format from its magic bytes. Synchronous.
 */
export function loadCheckpoint(source: string | Uint8Array, options: ReadOptions = {}): Checkpoint {
  const src = openSource(source);
  try {
    const format = detectFormat(src);
    if (format === 'safetensors') {
      const file = readSafetensorsFrom(src, options);
      return { format, tensors: file.tensors, metadata: file.metadata, ignored: [] };
    }
    const file = readPytorchFrom(src, options);
    return { format, tensors: file.tensors, metadata: {}, ignored: file.ignored };
  } finally {
    src.close();
  }
}

/**
 * Decodes every float tensor to a core float32 {@link Tensor}. By default each is a copy; with
 * `share: true` aligned F32 tensors are views of the checkpoint's bytes ({@link asFloat32}).
 */
export function toFloat32Tensors(tensors: ReadonlyMap<string, CheckpointTensor>, options: { share?: boolean } = {}): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, t] of tensors) out.set(name, tensor(options.share ? asFloat32(t) : toFloat32(t), t.shape));
  return out;
}
