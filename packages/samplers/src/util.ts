import { InvalidArgumentError, ShapeMismatchError, describeValue, type Tensor } from '@ditfa/core';

export const f = Math.fround;

export function checkSample(name: string, x: Tensor): void {
  if (!x || !(x.data instanceof Float32Array) || !Array.isArray(x.shape)) {
    throw new InvalidArgumentError(`Expected ${name} to be a float32 tensor but received ${describeValue(x)}`);
  }
}

export function expectSameShape(name: string, t: Tensor, x: Tensor): void {
  checkSample(name, t);
  if (t.shape.length !== x.shape.length || t.shape.some((s, k) => s !== x.shape[k])) {
    throw new ShapeMismatchError(`Expected ${name} of shape [${x.shape.join(', ')}] (the sample's) but received [${t.shape.join(', ')}]`);
  }
}

/** Checks that step `i` is the one expected next and in range. */
export function checkStepIndex(i: unknown, expected: number, steps: number): number {
  if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= steps) {
    throw new InvalidArgumentError(`Expected a step index in [0, ${steps - 1}] but received ${describeValue(i)}`);
  }
  if (i !== expected) {
    throw new InvalidArgumentError(`Expected step ${expected} next (steps run in order; call reset() to start over) but received step ${i}`);
  }
  return i;
}
