import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { ErrorCode, tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { Judge, featureStats, frechetDistance, sqrtPsd, symmetricEigen, type FeatureStats } from '../src/index.js';

const stats = (mu: number[], sigma: number[]): FeatureStats => ({ dim: mu.length, mu: Float64Array.from(mu), sigma: Float64Array.from(sigma) });

describe('linear algebra', () => {
  it('diagonalises a symmetric matrix', () => {
    // [[2,1],[1,2]] has eigenvalues 1 and 3
    const { values } = symmetricEigen(Float64Array.of(2, 1, 1, 2), 2);
    expect([...values].sort()).toEqual([expect.closeTo(1, 12), expect.closeTo(3, 12)]);
  });

  it('takes square roots of PSD matrices, singular ones included', () => {
    const a = Float64Array.of(5, 4, 4, 5); // = R², R = [[2,1],[1,2]]
    const r = sqrtPsd(a, 2);
    [2, 1, 1, 2].forEach((v, i) => expect(r[i]).toBeCloseTo(v, 12));
    const singular = sqrtPsd(Float64Array.of(1, 1, 1, 1), 2); // rank 1: sqrt = A/√2
    [1, 1, 1, 1].forEach((v, i) => expect(singular[i]).toBeCloseTo(v / Math.SQRT2, 12));
  });
});

describe('Fréchet distance', () => {
  it('is zero between identical Gaussians', () => {
    const s = stats([1, 2], [2, 0.5, 0.5, 1]);
    expect(frechetDistance(s, s)).toBeCloseTo(0, 10);
  });

  it('matches the closed form for diagonal covariances', () => {
    // Σ (μ1−μ2)² + Σ (√s1 − √s2)²
    const a = stats([0, 1, 2], [4, 0, 0, 0, 9, 0, 0, 0, 1]);
    const b = stats([1, 1, 0], [1, 0, 0, 0, 4, 0, 0, 0, 0]);
    const expected = 1 + 0 + 4 + (2 - 1) ** 2 + (3 - 2) ** 2 + (1 - 0) ** 2;
    expect(frechetDistance(a, b)).toBeCloseTo(expected, 10);
  });

  it('handles covariances that do not commute', () => {
    // Σ1 = I: Tr((Σ1Σ2)^½) = Tr(Σ2^½) = 2 + 2 for Σ2 = [[5,4],[4,5]] (root [[2,1],[1,2]])
    const a = stats([0, 0], [1, 0, 0, 1]);
    const b = stats([0, 0], [5, 4, 4, 5]);
    expect(frechetDistance(a, b)).toBeCloseTo(2 + 10 - 2 * 4, 10);
    // Σ1 = [[2,0],[0,0.5]], Σ2 = [[1,1],[1,2]]: Σ1^½ Σ2 Σ1^½ = [[2,1],[1,1]], eigenvalues (3 ± √5)/2
    const c = stats([0, 0], [2, 0, 0, 0.5]);
    const d = stats([0, 0], [1, 1, 1, 2]);
    const traceRoot = Math.sqrt((3 + Math.sqrt(5)) / 2) + Math.sqrt((3 - Math.sqrt(5)) / 2);
    expect(frechetDistance(c, d)).toBeCloseTo(2.5 + 3 - 2 * traceRoot, 10);
  });

  it('computes unbiased statistics like numpy.cov', () => {
    const s = featureStats([1, 2, 3, 6, 5, 10], 3, 2);
    expect([...s.mu]).toEqual([3, 6]);
    // x: 1,3,5 → var 4; y: 2,6,10 → var 16; cov 8
    expect([...s.sigma]).toEqual([4, 8, 8, 16]);
    expect(() => featureStats([1, 2], 1, 2)).toThrow(expect.objectContaining({ code: ErrorCode.ShapeMismatch }));
  });
});

const root = fileURLToPath(new URL('../../../', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/fashion-test-500.safetensors', import.meta.url));
const classifier = `${root}models/fashion-classifier.onnx`;
const statsFile = `${root}models/fashion-classifier-stats.safetensors`;
const haveModel = existsSync(classifier) && existsSync(statsFile);

describe.skipIf(!haveModel)('the bundled Fashion-MNIST judge', () => {
  it('reproduces the Python side on 500 real test images (accuracy, features, Fréchet distance)', async () => {
    const file = readSafetensors(fixture);
    const meta = JSON.parse(file.metadata.info!);
    const raw = file.tensors.get('images')!;
    const images = tensor(Float32Array.from(raw.bytes, (v) => v / 127.5 - 1), [500, 1, 32, 32]);
    const labels = [...new BigInt64Array(file.tensors.get('labels')!.bytes.slice().buffer)].map(Number);
    const judge = await Judge.create({ classifier, stats: statsFile, threads: 1 });
    const { features } = await judge.classify(images);
    const expected = toFloat32(file.tensors.get('features')!);
    let worst = 0;
    for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(features[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)));
    expect(worst).toBeLessThan(1e-4);
    const scores = await judge.score(images, labels);
    expect(scores.accuracy).toBeCloseTo(meta.accuracy, 10);
    expect(scores.frechet).toBeCloseTo(meta.fd_vs_test, 3);
    expect(scores.perClassAccuracy).toHaveLength(10);
    await expect(judge.score(images, labels.slice(1))).rejects.toMatchObject({ code: ErrorCode.ShapeMismatch });
    await judge.dispose();
  });
});
