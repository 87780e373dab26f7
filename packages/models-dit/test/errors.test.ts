import type { CheckpointTensor } from '@ditfa/checkpoint';
import { ErrorCode, tensor, zeros } from '@ditfa/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ditConfig, pixartConfig } from '../src/config.js';
import { ModelErrorCode } from '../src/errors.js';
import { loadModel } from '../src/load.js';
import type { TransformerModel } from '../src/model.js';
import { randomCheckpoint } from '../src/random.js';

const config = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 2, numHeads: 2, mlpRatio: 4, numClasses: 10, learnSigma: true });
const pixart = pixartConfig({ sampleSize: 8, patchSize: 2, inChannels: 4, hiddenSize: 32, depth: 1, numHeads: 2, mlpRatio: 2, captionChannels: 16, interpolationScale: 1, learnSigma: true });

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<{ code?: string; message: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected an error');
}

describe('coded errors', () => {
  let model: TransformerModel;
  beforeAll(async () => {
    model = await loadModel(randomCheckpoint(config, { seed: 3 }), { config, threads: 1 });
  });
  afterAll(() => model?.dispose());

  it('lists missing keys and every expected key', async () => {
    const ck = randomCheckpoint(config, { seed: 3 });
    ck.delete('blocks.1.mlp.fc2.bias');
    const e = await codeOf(loadModel(ck, { config }));
    expect(e.code).toBe(ModelErrorCode.Keys);
    expect(e.message).toContain('missing 1 key(s): blocks.1.mlp.fc2.bias');
    expect(e.message).toContain('Expected keys:');
    expect(e.message).toContain('blocks.{i}.attn.qkv.weight [96, 32]');
  });

  it('names unexpected keys', async () => {
    const ck = randomCheckpoint(config, { seed: 3 });
    ck.set('blocks.2.attn.qkv.weight', ck.get('blocks.1.attn.qkv.weight')!);
    const e = await codeOf(loadModel(ck, { config }));
    expect(e.code).toBe(ModelErrorCode.Keys);
    expect(e.message).toContain('unexpected 1 key(s): blocks.2.attn.qkv.weight');
  });

  it('refuses a checkpoint of no known layout, and one of the other family', async () => {
    const e = await codeOf(loadModel(new Map<string, CheckpointTensor>([['foo', { dtype: 'F32', shape: [1], bytes: new Uint8Array(4) }]]), { config }));
    expect(e.code).toBe(ModelErrorCode.Keys);
    expect(e.message).toMatch(/Expected a DiT checkpoint in the original layout \(keys x_embedder.proj.weight, y_embedder.embedding_table.weight\) or the diffusers layout/);
    const f = await codeOf(loadModel(randomCheckpoint(pixart, { captionTokens: 4 }), { config }));
    expect(f.code).toBe(ModelErrorCode.Keys);
    expect(f.message).toContain('keys are those of a pixart checkpoint');
  });

  it('reports shape and dtype mismatches', async () => {
    const wide = ditConfig({ ...config, hiddenSize: 64 });
    const e = await codeOf(loadModel(randomCheckpoint(config), { config: wide }));
    expect(e.code).toBe(ErrorCode.ShapeMismatch);
    expect(e.message).toContain('x_embedder.proj.weight: expected [64, 4, 2, 2] but received [32, 4, 2, 2]');
    const ck = randomCheckpoint(config);
    const t = ck.get('final_layer.linear.bias')!;
    ck.set('final_layer.linear.bias', { ...t, dtype: 'I32' });
    const d = await codeOf(loadModel(ck, { config }));
    expect(d.code).toBe(ModelErrorCode.Dtype);
    expect(d.message).toContain('final_layer.linear.bias is I32');
  });

  it('refuses a latent of the wrong size or channel count', async () => {
    const wrong = await codeOf(model.forward(zeros([1, 4, 6, 6]), 10, { classLabels: [1] }));
    expect(wrong.code).toBe(ErrorCode.ShapeMismatch);
    expect(wrong.message).toContain('Expected a 8×8 latent for this DiT but received 6×6');
    const ch = await codeOf(model.forward(zeros([1, 3, 8, 8]), 10, { classLabels: [1] }));
    expect(ch.message).toContain('Expected 4 latent channels');
    const bad = await codeOf(model.forward({ data: new Float64Array(256), shape: [1, 4, 8, 8] } as never, 10, { classLabels: [1] }));
    expect(bad.code).toBe(ErrorCode.InvalidArgument);
  });

  it('refuses bad labels, timesteps and batch mismatches', async () => {
    const x = zeros([2, 4, 8, 8]);
    expect((await codeOf(model.forward(x, 10, { classLabels: [1, 11] }))).message).toContain('Expected an integer in [0, 10] for classLabels[1] but received 11');
    expect((await codeOf(model.forward(x, [1, 2, 3], { classLabels: [1, 2] }))).code).toBe(ErrorCode.ShapeMismatch);
    expect((await codeOf(model.forward(x, 5, { classLabels: [1] }))).code).toBe(ErrorCode.ShapeMismatch);
    expect((await codeOf(model.forward(tensor(new Float32Array(3 * 256), [3, 4, 8, 8]), 5, { classLabels: [1, 2, 3] }, { cfg: { order: 'cond-first' } }))).code).toBe(ErrorCode.ShapeMismatch);
  });

  it('refuses an unknown method with the known ones listed', async () => {
    const e = await codeOf(model.forward(zeros([1, 4, 8, 8]), 5, { classLabels: [1] }, { methods: ['wars'] }));
    expect(e.code).toBe(ErrorCode.StrategyNotFound);
    expect(e.message).toContain('the pipeline has: full');
  });

  it('is unusable after dispose', async () => {
    const m = await loadModel(randomCheckpoint(config), { config, threads: 1 });
    await m.dispose();
    await m.dispose();
    expect((await codeOf(m.forward(zeros([1, 4, 8, 8]), 5, { classLabels: [1] }))).code).toBe(ModelErrorCode.Disposed);
  });

  it('PixArt: refuses captions of the wrong width and masks of the wrong length', async () => {
    const m = await loadModel(randomCheckpoint(pixart, { captionTokens: 4 }), { config: pixart, threads: 1 });
    try {
      const x = zeros([1, 4, 8, 12]);
      expect((await codeOf(m.forward(x, 5, { captions: zeros([1, 5, 8]) }))).message).toContain('Expected captions of shape [1, Lt, 16] but received [1, 5, 8]');
      expect((await codeOf(m.forward(x, 5, { captions: zeros([1, 5, 16]), mask: [1, 1] }))).message).toContain('Expected a caption mask of 1×5 = 5 values but received 2');
      const ok = await m.forward(x, 5, { captions: zeros([1, 5, 16]), mask: [1, 1, 0, 0, 0] });
      expect(ok.output.shape).toEqual([1, 8, 8, 12]);
    } finally {
      await m.dispose();
    }
  });
});
