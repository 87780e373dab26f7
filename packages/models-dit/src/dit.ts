import { InvalidArgumentError, describeValue, expectInteger } from '@ditfa/core';
import type { GenerateOptionsBase, LatentSpec } from '@ditfa/pipeline';
import { TransformerAdapter } from './adapter.js';
import type { DitConfig } from './config.js';
import type { DitCondition } from './model.js';

export interface DitGenerateOptions extends GenerateOptionsBase {
  /** One class per sample; the batch size is their count. */
  readonly classLabels: readonly number[];
}

/**
 * DiT as a pipeline adapter: class-conditional, a square latent of the config's input size, the null
 * class (`numClasses`) for the unconditional CFG half, conditional half first (`cond-first`).
 */
export class DitAdapter extends TransformerAdapter<DitGenerateOptions> {
  latent(): LatentSpec {
    const c = this.transformer.config as DitConfig;
    return { channels: c.inChannels, height: c.inputSize, width: c.inputSize };
  }

  condition(options: DitGenerateOptions, cfg: boolean): { cond: DitCondition; n: number } {
    const c = this.transformer.config as DitConfig;
    const labels = options.classLabels;
    if (!Array.isArray(labels) || labels.length === 0) throw new InvalidArgumentError(`Expected a non-empty array of class labels but received ${describeValue(labels)}`);
    labels.forEach((l, i) => expectInteger(`classLabels[${i}]`, l, 0, c.numClasses - 1));
    const n = labels.length;
    if (!cfg) return { n, cond: { classLabels: [...labels] } };
    const nulls = new Array<number>(n).fill(c.numClasses);
    return { n, cond: { classLabels: this.cfgOrder === 'cond-first' ? [...labels, ...nulls] : [...nulls, ...labels] } };
  }
}
