import { InvalidArgumentError, ShapeMismatchError, describeValue, expectFinite, tensor, type CfgOrder, type Tensor } from '@ditfa/core';

export interface GuidanceOptions {
  /** Which half of the batch holds the conditional rows (DiT, OpenSora: `cond-first`; diffusers PixArt: `cond-second`). */
  readonly order: CfgOrder;
  /** Guidance scale s: `uncond + s·(cond − uncond)`. */
  readonly scale: number;
  /**
   * How many leading channels to guide, or `'all'`. DiT's original `forward_with_cfg` guides only
   * channels 0–2 ("for exact reproducibility reasons") and keeps channel 3 and the variance channels
   * raw; diffusers guides all of them. Default `'all'`.
   */
  readonly channels?: number | 'all';
}

function split(out: Tensor, options: GuidanceOptions): { B: number; row: number; guided: number; condStart: number; uncondStart: number } {
  if (!out || !(out.data instanceof Float32Array)) throw new InvalidArgumentError(`Expected a float32 model output but received ${describeValue(out)}`);
  if (options.order !== 'cond-first' && options.order !== 'cond-second') {
    throw new InvalidArgumentError(`Expected order "cond-first" or "cond-second" but received ${describeValue(options.order)}`);
  }
  expectFinite('scale', options.scale);
  const B2 = out.shape[0];
  const C = out.shape[1];
  if (B2 === undefined || C === undefined || B2 % 2 !== 0 || B2 === 0) {
    throw new ShapeMismatchError(`Expected a model output [2B, C, ...] with an even, non-zero batch but received [${out.shape.join(', ')}]`);
  }
  const channels = options.channels ?? 'all';
  if (channels !== 'all' && (!Number.isInteger(channels) || channels < 0 || channels > C)) {
    throw new InvalidArgumentError(`Expected channels to be 'all' or an integer in [0, ${C}] but received ${describeValue(channels)}`);
  }
  const B = B2 / 2;
  const row = out.data.length / B2;
  const guided = (channels === 'all' ? C : channels) * (row / C);
  const condStart = options.order === 'cond-first' ? 0 : B;
  return { B, row, guided, condStart, uncondStart: B - condStart };
}

/**
 * Classifier-free guidance on a doubled batch `[2B, C, ...]`; returns the guided half `[B, C, ...]`:
 * guided channels `uncond + s·(cond − uncond)` (float32, in that operation order), the other
 * channels from the conditional rows (as DiT's first half keeps them).
 */
export function guide(out: Tensor, options: GuidanceOptions): Tensor {
  const { B, row, guided, condStart, uncondStart } = split(out, options);
  const s = Math.fround(options.scale);
  const d = out.data;
  const res = new Float32Array(B * row);
  for (let b = 0; b < B; b++) {
    const c0 = (condStart + b) * row;
    const u0 = (uncondStart + b) * row;
    for (let k = 0; k < row; k++) {
      res[b * row + k] = k < guided ? Math.fround(d[u0 + k]! + Math.fround(s * Math.fround(d[c0 + k]! - d[u0 + k]!))) : d[c0 + k]!;
    }
  }
  return tensor(res, [B, ...out.shape.slice(1)]);
}

/**
 * DiT's `forward_with_cfg` output layout: the doubled batch with the guided channels written into
 * both halves and every other channel left as each half's own output.
 */
export function guideBatch(out: Tensor, options: GuidanceOptions): Tensor {
  const { B, row, guided } = split(out, options);
  const half = guide(out, { ...options, channels: 'all' });
  const res = new Float32Array(out.data);
  for (let h = 0; h < 2; h++) {
    for (let b = 0; b < B; b++) res.set(half.data.subarray(b * row, b * row + guided), (h * B + b) * row);
  }
  return tensor(res, out.shape);
}

/** Splits a learned-sigma output `[B, 2C, ...]` into ε `[B, C, ...]` and the variance values (copies). */
export function splitLearnedSigma(out: Tensor): { eps: Tensor; variance: Tensor } {
  const B = out.shape[0];
  const C2 = out.shape[1];
  if (B === undefined || C2 === undefined || C2 % 2 !== 0) {
    throw new ShapeMismatchError(`Expected a learned-sigma output [B, 2C, ...] with an even channel count but received [${out.shape.join(', ')}]`);
  }
  const row = B === 0 ? 0 : out.data.length / B;
  const half = row / 2;
  const eps = new Float32Array(B * half);
  const variance = new Float32Array(B * half);
  for (let b = 0; b < B; b++) {
    eps.set(out.data.subarray(b * row, b * row + half), b * half);
    variance.set(out.data.subarray(b * row + half, (b + 1) * row), b * half);
  }
  const shape = [B, C2 / 2, ...out.shape.slice(2)];
  return { eps: tensor(eps, shape), variance: tensor(variance, shape) };
}
