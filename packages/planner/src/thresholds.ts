import { InvalidArgumentError, describeValue } from '@ditfa/core';

/** The paper's standard thresholds: D1..D6 = δ 0.025, 0.05, …, 0.15. */
export const THRESHOLDS = Object.freeze({ D1: 0.025, D2: 0.05, D3: 0.075, D4: 0.1, D5: 0.125, D6: 0.15 } as const);
export type ThresholdName = keyof typeof THRESHOLDS;

/** Resolves `'D3'`, `'0.05'` or `0.05` to `{ delta, name? }`. */
export function resolveThreshold(value: ThresholdName | number | string): { delta: number; name?: ThresholdName } {
  if (typeof value === 'string' && value.toUpperCase() in THRESHOLDS) {
    const name = value.toUpperCase() as ThresholdName;
    return { delta: THRESHOLDS[name], name };
  }
  const delta = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  if (!Number.isFinite(delta) || delta < 0) {
    throw new InvalidArgumentError(`Expected a threshold D1..D6 or a non-negative number but received ${describeValue(value)}`);
  }
  const name = (Object.keys(THRESHOLDS) as ThresholdName[]).find((k) => THRESHOLDS[k] === delta);
  return name ? { delta, name } : { delta };
}
