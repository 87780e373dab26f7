import { ShapeMismatchError } from '@ditfa/core';
import { matmul, sqrtPsd, symmetricEigen } from './linalg.js';

/** Mean and covariance of a set of feature vectors. */
export interface FeatureStats {
  readonly dim: number;
  readonly mu: Float64Array;
  /** `dim × dim`, row-major, unbiased (`N − 1`), like `numpy.cov`. */
  readonly sigma: Float64Array;
}

/** Statistics of `n` feature rows of length `dim` (row-major). */
export function featureStats(features: ArrayLike<number>, n: number, dim: number): FeatureStats {
  if (features.length !== n * dim) throw new ShapeMismatchError(`Expected ${n}×${dim} = ${n * dim} feature values but received ${features.length}`);
  if (n < 2) throw new ShapeMismatchError(`Expected at least 2 feature rows for a covariance but received ${n}`);
  const mu = new Float64Array(dim);
  for (let r = 0; r < n; r++) for (let d = 0; d < dim; d++) mu[d]! += features[r * dim + d]!;
  for (let d = 0; d < dim; d++) mu[d]! /= n;
  const sigma = new Float64Array(dim * dim);
  const centred = new Float64Array(dim);
  for (let r = 0; r < n; r++) {
    for (let d = 0; d < dim; d++) centred[d] = features[r * dim + d]! - mu[d]!;
    for (let i = 0; i < dim; i++) {
      const ci = centred[i]!;
      if (ci === 0) continue;
      for (let j = i; j < dim; j++) sigma[i * dim + j]! += ci * centred[j]!;
    }
  }
  for (let i = 0; i < dim; i++)
    for (let j = i; j < dim; j++) {
      const s = sigma[i * dim + j]! / (n - 1);
      sigma[i * dim + j] = s;
      sigma[j * dim + i] = s;
    }
  return { dim, mu, sigma };
}

/**
 * Fréchet distance between two Gaussians: `|μ1 − μ2|² + Tr(Σ1 + Σ2 − 2·(Σ1Σ2)^½)`. The trace of the
 * square root is computed as `Σ √λ` over the eigenvalues of the symmetric `Σ1^½ Σ2 Σ1^½`, which has the
 * same spectrum as `Σ1Σ2` and stays exact for singular covariances.
 */
export function frechetDistance(a: FeatureStats, b: FeatureStats): number {
  if (a.dim !== b.dim) throw new ShapeMismatchError(`Expected statistics of the same dimension but received ${a.dim} and ${b.dim}`);
  const n = a.dim;
  let meanTerm = 0;
  for (let i = 0; i < n; i++) meanTerm += (a.mu[i]! - b.mu[i]!) ** 2;
  let trace = 0;
  for (let i = 0; i < n; i++) trace += a.sigma[i * n + i]! + b.sigma[i * n + i]!;
  const root = sqrtPsd(a.sigma, n);
  const m = matmul(matmul(root, b.sigma, n), root, n);
  // symmetrise against rounding before the eigen-decomposition
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) {
      const s = (m[i * n + j]! + m[j * n + i]!) / 2;
      m[i * n + j] = s;
      m[j * n + i] = s;
    }
  const { values } = symmetricEigen(m, n);
  let traceRoot = 0;
  for (const v of values) traceRoot += Math.sqrt(Math.max(v, 0));
  return meanTerm + trace - 2 * traceRoot;
}
