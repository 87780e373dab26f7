import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors, toFloat32 } from '@ditfa/checkpoint';
import { ErrorCode, tensor } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { BUNDLED_JUDGES, createJudges, findJudges, scoreAll } from '../src/index.js';

const models = fileURLToPath(new URL('../../../models/', import.meta.url));
const fixture = fileURLToPath(new URL('./fixtures/fashion-test-500.safetensors', import.meta.url));
const haveBoth = BUNDLED_JUDGES.every((j) => existsSync(join(models, j.classifier)) && existsSync(join(models, j.stats)));

/** The 500 real Fashion-MNIST test images of the fixture (50 per class), in the judges' input space. */
function realImages() {
  const file = readSafetensors(fixture);
  const raw = file.tensors.get('images')!;
  const images = tensor(Float32Array.from(raw.bytes, (v) => v / 127.5 - 1), [500, 1, 32, 32]);
  const labels = [...new BigInt64Array(file.tensors.get('labels')!.bytes.slice().buffer)].map(Number);
  return { file, images, labels, meta: JSON.parse(file.metadata.info!) };
}

describe('finding the bundled judges', () => {
  it('finds J1 and J2 beside the bundled model, in report order, and nothing in an empty folder', () => {
    expect(BUNDLED_JUDGES.map((j) => j.name)).toEqual(['J1', 'J2']);
    expect(findJudges([mkdtempSync(join(tmpdir(), 'ditfa-no-judges-'))])).toEqual([]);
    if (!haveBoth) return;
    const found = findJudges([mkdtempSync(join(tmpdir(), 'ditfa-no-judges-')), models]);
    expect(found.map((j) => j.name)).toEqual(['J1', 'J2']);
    expect(found[1]!.classifier).toBe(join(models, 'fashion-judge2.onnx'));
  });
});

describe.skipIf(!haveBoth)('the second judge (J2)', () => {
  it('classifies 500 real test images at ≥ 85 % and reproduces the Python side (logits, accuracy, Fréchet)', async () => {
    const { file, images, labels, meta } = realImages();
    const [j1, j2] = await createJudges(findJudges([models]), { threads: 1 });
    try {
      expect(j2!.name).toBe('J2');
      const scores = await j2!.score(images, labels);
      expect(scores.judge).toBe('J2');
      expect(scores.accuracy).toBeGreaterThanOrEqual(0.85); // an independent expectation: J2 reads real images
      expect(scores.accuracy).toBeCloseTo(meta.j2.accuracy, 10);
      expect(scores.frechet).toBeCloseTo(meta.j2.fd_vs_test, 3);
      const { logits } = await j2!.classify(images);
      const expected = toFloat32(file.tensors.get('j2_logits')!);
      let worst = 0;
      for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(logits[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)));
      expect(worst).toBeLessThan(1e-4);
      // the judges carry the reference statistics of real test images, train images and real clips' frames
      for (const j of [j1!, j2!]) expect(j.references).toEqual(expect.arrayContaining(['test', 'train', 'frames']));
      expect(j2!.info.test_accuracy).toBeGreaterThanOrEqual(0.9);
      await expect(j2!.score(images, labels, { reference: 'nope' })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    } finally {
      await Promise.all([j1!.dispose(), j2!.dispose()]);
    }
  });

  it('is a different model from J1: other feature size, other outputs on the same images', async () => {
    const { images, labels } = realImages();
    const judges = await createJudges(findJudges([models]), { threads: 1 });
    try {
      const [a, b] = await Promise.all(judges.map((j) => j.classify(images)));
      expect(a!.dim).toBe(128);
      expect(b!.dim).toBe(96);
      let far = 0;
      for (let i = 0; i < a!.logits.length; i++) far = Math.max(far, Math.abs(a!.logits[i]! - b!.logits[i]!));
      expect(far).toBeGreaterThan(1);
      const scores = await scoreAll(judges, images, labels);
      expect(scores.map((s) => s.judge)).toEqual(['J1', 'J2']);
      expect(scores.map((s) => s.reference)).toEqual(['test', 'test']);
      expect(scores[0]!.frechet).not.toBeCloseTo(scores[1]!.frechet, 3);
    } finally {
      await Promise.all(judges.map((j) => j.dispose()));
    }
  });
});
