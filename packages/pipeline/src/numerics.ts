import { DitfaError, ErrorCode } from '@ditfa/core';

/** Index of the first NaN or ±Inf in `data`, or −1. */
export function firstNonFinite(data: ArrayLike<number>): number {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    // v − v is NaN exactly for NaN and ±Inf.
    if (v - v !== 0) return i;
  }
  return -1;
}

export interface NumericalFaultInfo {
  /** Denoising step (0-based). */
  readonly step: number;
  /** Id of the first attention layer whose output (or the state after it) is not finite; `null` when the per-layer re-run did not find one. */
  readonly layer: string | null;
  /** What was not finite. */
  readonly where: string;
  readonly index: number;
  readonly value: number;
}

/**
 * A model output (or, in the per-layer re-run, an attention output or the state after a layer) holds
 * NaN or ±Inf. Carries the step and the first layer found, so a broken checkpoint or an unstable
 * method is named instead of passed on as all-NaN latents.
 */
export class NumericalFaultError extends DitfaError {
  readonly step: number;
  readonly layer: string | null;

  constructor(info: NumericalFaultInfo) {
    super(
      ErrorCode.NumericalFault,
      `Expected finite values but ${info.where} at step ${info.step}` +
        (info.layer === null ? '' : `, layer ${info.layer},`) +
        ` holds ${info.value} at element ${info.index}` +
        (info.layer === null ? ' (re-running the step layer by layer found no layer: the fault is outside the attention layers, e.g. the embedding or final layer)' : '') +
        '. Check the weights (a NaN in a checkpoint) and the inputs.',
    );
    this.step = info.step;
    this.layer = info.layer;
  }
}
