import {
  InvalidArgumentError,
  defineStrategy,
  describeValue,
  expectInteger,
  runKernel,
  type AttentionLayer,
  type AttentionStrategy,
  type StrategyResult,
  type Tensor,
  type WindowSpec,
} from '@ditfa/core';
import { DILATED_KERNEL, dilatedPairs, type DilatedWindowArgs } from './kernel.js';

export interface DilatedOptions {
  /** Distance between two attended keys; default 2. */
  readonly dilation?: number;
  /**
   * Keys per side (in dilated steps). Default: the layer window's span divided by the dilation
   * (`ceil(w / dilation)` for a 1-D window of `w` tokens per side; `ceil(L / 8 / dilation)` for a 2-D
   * window or a layer without one), so it sees as far as the window with about `1/dilation` of its keys.
   */
  readonly radius?: number;
}

function radiusFor(window: WindowSpec | null, tokens: number, dilation: number, radius: number | undefined): number {
  if (radius !== undefined) return radius;
  return Math.ceil((window?.kind === '1d' ? window.size : tokens / 8) / dilation);
}

/** Self-attention: the dilated kernel attends keys among the query tokens. */
function selfAttention(layer: Pick<AttentionLayer, 'tokens' | 'kvTokens'>): boolean {
  return layer.kvTokens === undefined || layer.kvTokens === layer.tokens;
}

/**
 * Dilated window attention: query `i` attends keys `i + m·dilation`, `|m| <= radius`. It reads and
 * writes no cache (`caches` left empty), so it may run at any step; it applies to self-attention
 * layers. Its kernel lives in core's kernel table (`dilatedWindowAttention`); a backend without its
 * own implementation runs the `reference` one.
 */
export function dilated(options: DilatedOptions = {}): AttentionStrategy {
  const dilation = options.dilation === undefined ? 2 : expectInteger('dilation', options.dilation, 1);
  const radius = options.radius === undefined ? undefined : expectInteger('radius', options.radius, 0);
  return defineStrategy({
    name: 'dilated',
    description: `dilated window attention (every ${dilation}th key around each query); an example plugin`,
    appliesTo: (layer) => selfAttention(layer),
    needs: () => 'all',
    async run(ctx, inputs): Promise<StrategyResult> {
      if (!inputs) throw new InvalidArgumentError(`Expected q/k/v inputs for "${ctx.method}" but received ${describeValue(inputs)}`);
      const { rows, q, k, v } = inputs;
      const args: DilatedWindowArgs = { q, k, v, dilation, radius: radiusFor(ctx.window, q.shape[1] ?? 0, dilation, radius), compute: ctx.compute };
      const output = await runKernel<DilatedWindowArgs, Tensor>(ctx.backend, DILATED_KERNEL, args, 'reference');
      return { kind: 'attention', rows, output };
    },
    flops: (shape) => {
      if (!selfAttention(shape)) throw new InvalidArgumentError(`Expected a self-attention shape for "dilated" but received ${shape.tokens} query and ${shape.kvTokens} key tokens`);
      return 4 * shape.batch * dilatedPairs(shape.tokens, radiusFor(shape.window, shape.tokens, dilation, radius), dilation) * shape.channels;
    },
  });
}
