import { InvalidArgumentError, ShapeMismatchError, type CfgOrder, type Tensor, describeValue, tensor } from '@ditfa/core';

/**
 * Classifier-free guidance as the official DiT `forward_with_cfg` does it: on a CFG batch output
 * `[2N, C, H, W]`, channels `0…channels−1` of both halves become `uncond + s·(cond − uncond)`; the
 * remaining channels (DiT: ε channel 3 and the variance values) stay each half's own output.
 * With `channels` = the ε channel count it is plain (diffusers) guidance on ε.
 */
export function applyGuidance(output: Tensor, scale: number, options: { order: CfgOrder; channels: number }): Tensor {
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new InvalidArgumentError(`Expected a finite guidance scale but received ${describeValue(scale)}`);
  if (output.shape.length !== 4 || (output.shape[0]! % 2) !== 0) {
    throw new ShapeMismatchError(`Expected a CFG batch output [2N, C, H, W] but received [${output.shape.join(', ')}]`);
  }
  const [B, C, H, W] = output.shape as [number, number, number, number];
  if (!Number.isInteger(options.channels) || options.channels < 1 || options.channels > C) {
    throw new InvalidArgumentError(`Expected 1 <= guided channels <= ${C} but received ${describeValue(options.channels)}`);
  }
  const half = B / 2;
  const condStart = options.order === 'cond-first' ? 0 : half;
  const uncondStart = half - condStart;
  const plane = H * W;
  const out = new Float32Array(output.data);
  for (let n = 0; n < half; n++) {
    for (let c = 0; c < options.channels; c++) {
      const co = ((condStart + n) * C + c) * plane;
      const uo = ((uncondStart + n) * C + c) * plane;
      for (let i = 0; i < plane; i++) {
        const u = output.data[uo + i]!;
        const g = u + scale * (output.data[co + i]! - u);
        out[co + i] = g;
        out[uo + i] = g;
      }
    }
  }
  return tensor(out, output.shape);
}
