import { InvalidArgumentError, ShapeMismatchError, describeValue } from './errors.js';
import type { AttentionOptions, KernelBackend } from './kernel-backend.js';
import { type Tensor, allocateFloats, attentionDims, numel, sameShape, tensor } from './tensor.js';
import { validateAttentionInputs, validateOut } from './validate-attention.js';

/**
 * Attention whose keys are masked per batch row: row `b` attends to its first `keyLengths[b]` keys
 * only. This is cross-attention over captions of different lengths (Open-Sora's and PixArt's
 * block-diagonal mask over each sample's valid caption tokens, once the valid tokens are moved to the
 * front of each row — attention over a set of keys does not depend on their order).
 *
 * It is built on a backend's plain {@link KernelBackend.attention}: rows of equal length are grouped
 * and each group runs once over its valid prefix, so every backend supports it unchanged and exactly
 * (the masked keys contribute nothing, as an `−∞` bias would). Rows of one group that are not
 * contiguous, and keys shorter than `Lkv`, are gathered into copies first.
 */

/** Checks per-row key lengths against `[B, Lkv]` and returns them as an array. */
export function validateKeyLengths(keyLengths: unknown, B: number, Lkv: number): number[] {
  if (!keyLengths || typeof keyLengths !== 'object' || typeof (keyLengths as ArrayLike<number>).length !== 'number') {
    throw new InvalidArgumentError(`Expected keyLengths to be an array of ${B} key counts but received ${describeValue(keyLengths)}`);
  }
  const lengths = Array.from(keyLengths as ArrayLike<number>);
  if (lengths.length !== B) throw new ShapeMismatchError(`Expected ${B} key lengths (one per batch row) but received ${lengths.length}`);
  lengths.forEach((n, i) => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > Lkv) {
      throw new InvalidArgumentError(`Expected keyLengths[${i}] to be an integer in [1, ${Lkv}] but received ${describeValue(n)}`);
    }
  });
  return lengths;
}

/** Rows `rows` of `t` (batch-first) as one tensor: a view when they are contiguous and whole, else a copy of the first `keep` tokens of each. */
function gatherRows(t: Tensor, rows: readonly number[], keep: number): Tensor {
  const [, L, ...rest] = t.shape as [number, number, ...number[]];
  const token = numel(rest);
  const contiguous = rows.every((r, i) => r === rows[0]! + i);
  if (contiguous && keep === L) {
    const row = L * token;
    return { data: t.data.subarray(rows[0]! * row, (rows[0]! + rows.length) * row), shape: Object.freeze([rows.length, L, ...rest]) };
  }
  const out = new Float32Array(rows.length * keep * token);
  rows.forEach((r, i) => out.set(t.data.subarray(r * L * token, (r * L + keep) * token), i * keep * token));
  return tensor(out, [rows.length, keep, ...rest]);
}

/**
 * `softmax(q·kᵀ·scale)·v` where row `b` sees keys `0 … keyLengths[b]−1` only (`q [B, Lq, H, D]`,
 * `k`/`v` `[B, Lkv, H, D]`), computed with `backend.attention` once per distinct length.
 */
export async function attentionWithKeyLengths(
  backend: KernelBackend,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  keyLengths: ArrayLike<number>,
  options: AttentionOptions = {},
): Promise<Tensor> {
  const dims = validateAttentionInputs(q, k, v, options);
  const lengths = validateKeyLengths(keyLengths, dims.B, dims.Lkv);
  validateOut('out', options.out, q.shape);
  const { out: given, ...rest } = options;
  const inner: AttentionOptions = { ...rest, scale: dims.scale };
  if (lengths.every((n) => n === dims.Lkv)) return backend.attention(q, k, v, options);
  const groups = new Map<number, number[]>();
  lengths.forEach((n, b) => groups.set(n, [...(groups.get(n) ?? []), b]));
  // Every row belongs to one group, so every element of `out` is written.
  const out = given?.data ?? allocateFloats(q.data.length, backend.allocate?.bind(backend));
  const row = dims.Lq * dims.H * dims.D;
  for (const [n, rows] of groups) {
    const o = await backend.attention(gatherRows(q, rows, dims.Lq), gatherRows(k, rows, n), gatherRows(v, rows, n), inner);
    rows.forEach((r, i) => out.set(o.data.subarray(i * row, (i + 1) * row), r * row));
  }
  return tensor(out, q.shape);
}

/** Start row of `view` inside `base` when `view` is `base` or a view of some of its batch rows (same memory); −1 otherwise. */
function rowOffset(view: Tensor, base: Tensor): number {
  if (view === base) return 0;
  if (!view || !(view.data instanceof Float32Array) || view.data.buffer !== base.data.buffer) return -1;
  if (view.shape.length !== base.shape.length || !sameShape(view.shape.slice(1), base.shape.slice(1))) return -1;
  const row = numel(base.shape.slice(1));
  const delta = (view.data.byteOffset - base.data.byteOffset) / Float32Array.BYTES_PER_ELEMENT;
  if (row === 0 || delta < 0 || delta % row !== 0) return -1;
  const start = delta / row;
  return start + (view.shape[0] ?? 0) <= (base.shape[0] ?? 0) ? start : -1;
}

/**
 * A backend for one call of a layer whose keys are masked per row (see {@link QkvTensors.keyLengths}):
 * `attention` on `k`/`v` — or on a view of some of their batch rows, such as the conditional CFG half —
 * applies each row's key length ({@link attentionWithKeyLengths}); keys it cannot place among those rows
 * and the window kernels (no window method applies to masked keys) are refused with a coded error, so a
 * strategy can never silently attend to masked keys.
 */
export function keyLengthsBackend(backend: KernelBackend, k: Tensor, v: Tensor, keyLengths: readonly number[], layer: string): KernelBackend {
  const refuse = (kernel: string) => async (): Promise<never> => {
    throw new InvalidArgumentError(`Expected no ${kernel} call on layer ${layer}, whose keys are masked per row (window methods do not apply to it), but a strategy made one`);
  };
  return {
    name: backend.name,
    capabilities: () => backend.capabilities(),
    attention: async (q2, k2, v2, options) => {
      const start = rowOffset(k2, k);
      if (start < 0 || rowOffset(v2, v) !== start) {
        throw new InvalidArgumentError(
          `Expected attention on layer ${layer} to use the keys and values its model gave (or a view of some of their rows), because they are masked per row, but received other tensors of shape [${k2?.shape?.join(', ')}]`,
        );
      }
      const { B } = attentionDims('k', k2);
      return attentionWithKeyLengths(backend, q2, k2, v2, keyLengths.slice(start, start + B), options);
    },
    windowAttention: refuse('windowAttention'),
    fullWithResidual: refuse('fullWithResidual'),
    windowWithResidual: refuse('windowWithResidual'),
    ...(backend.allocate ? { allocate: backend.allocate.bind(backend) } : {}),
  };
}
