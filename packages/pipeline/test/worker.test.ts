import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type AttentionStrategy, DitfaError, ErrorCode, type PlanDocument, buildPlan } from '@ditfa/core';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PipelineEvent, type StepEvent, createPipeline } from '../src/index.js';
import { type GridModelConfig, type GridOptions, createGridModel } from '../src/testing/index.js';
import { type WorkerPipeline, createWorkerPipeline } from '../src/worker/index.js';
import { transferables } from '../src/worker/protocol.js';

/** The error a promise rejects with (a test failure when it resolves). */
async function rejection<E = DitfaError>(p: Promise<unknown>): Promise<E> {
  return p.then(
    () => {
      throw new Error('expected a rejection but the promise resolved');
    },
    (e: unknown) => e as E,
  );
}

// The worker thread runs the build (dist); these tests need it, as `turbo test` provides.
const built = existsSync(fileURLToPath(new URL('../dist/worker/thread.js', import.meta.url)));
const fixture = new URL('./fixtures/worker-models.mjs', import.meta.url);

const config: GridModelConfig = { blocks: 3, height: 4, width: 6, heads: 2, headDim: 4, sites: ['rows', 'cols'], seed: 5 };
const methods = (): AttentionStrategy[] => [...warsStrategies(), ...astStrategies(), ...ascStrategies()];
const strategyRefs = [
  { module: '@ditfa/strategy-wars', export: 'strategies' },
  { module: '@ditfa/strategy-ast', export: 'strategies' },
  { module: '@ditfa/strategy-asc', export: 'strategies' },
];
const request = { classLabels: [1, 4, 7], seed: 3, steps: 6, guidanceScale: 3, sampler: 'ddim' as const };

describe.skipIf(!built)('the pipeline in a worker thread', () => {
  let worker: WorkerPipeline<GridOptions>;
  const events: PipelineEvent[] = [];
  const inThread = createPipeline(createGridModel(config), { strategies: methods() });
  let plan: PlanDocument;

  beforeAll(async () => {
    worker = await createWorkerPipeline<GridOptions>({
      module: fixture,
      export: 'gridModel',
      args: [config],
      strategies: strategyRefs,
      parentURL: import.meta.url,
      onEvent: (e) => events.push(e),
    });
    plan = buildPlan({
      fingerprint: inThread.fingerprint(request),
      layers: inThread.layers(request),
      strategies: inThread.strategies,
      method: (step, layer) => (step === 0 ? 'full' : step % 2 === 1 ? (layer.site === 'rows' ? 'wars+asc' : 'ast') : layer.block === 1 ? 'full+asc' : 'wars'),
    });
  });
  afterAll(() => worker?.dispose());

  it('knows the model, its fingerprint and layers as the in-thread pipeline does', async () => {
    expect(worker.model).toMatchObject({ architecture: inThread.model.architecture, weightsHash: inThread.model.weightsHash, cfgOrder: 'cond-first', prediction: 'eps', learnSigma: false, decodes: true });
    expect(await worker.fingerprint(request)).toEqual(inThread.fingerprint(request));
    expect(await worker.layers(request, 4)).toEqual(inThread.layers(request, 4));
  });

  it('generates bit for bit what the in-thread pipeline generates, raw and under a plan, progress and events included', async () => {
    for (const p of [undefined, plan]) {
      const progress: StepEvent[] = [];
      const here = await inThread.generate({ ...request, ...(p ? { plan: p } : {}) });
      const there = await worker.generate({ ...request, ...(p ? { plan: p } : {}), onProgress: (e) => progress.push(e) });
      expect(there.latents.shape).toEqual(here.latents.shape);
      expect(there.latents.data).toBeInstanceOf(Float32Array);
      expect(Buffer.from(there.latents.data.buffer).equals(Buffer.from(here.latents.data.buffer))).toBe(true);
      expect(Buffer.from(there.images!.data.buffer).equals(Buffer.from(here.images!.data.buffer))).toBe(true);
      expect(there.png!.map((b) => Buffer.from(b).toString('base64'))).toEqual(here.png!.map((b) => Buffer.from(b).toString('base64')));
      expect(there.attention).toEqual(here.attention);
      expect(there.cache).toEqual(here.cache);
      expect(progress.map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6]);
      if (p) expect(there.attention.fraction).toBe(p.totals.attentionFlopsFraction);
    }
    // the worker's registry is empty (registries are per thread): the reference backend, and the event says why
    const backend = events.find((e) => e.type === 'backend') as Extract<PipelineEvent, { type: 'backend' }>;
    expect(backend.name).toBe('reference');
    expect(backend.fallbackReason).toMatch(/No kernel backend is registered/);
    expect(events.filter((e) => e.type === 'step')).toHaveLength(12);
    expect(await worker.backend()).toEqual({ name: 'reference' });
  });

  it('runs concurrent generations independently', async () => {
    const [a, b] = await Promise.all([worker.generate({ ...request, plan }), worker.generate({ ...request, seed: 4 })]);
    const [a1, b1] = [await inThread.generate({ ...request, plan }), await inThread.generate({ ...request, seed: 4 })];
    expect(Array.from(a.latents.data)).toEqual(Array.from(a1.latents.data));
    expect(Array.from(b.latents.data)).toEqual(Array.from(b1.latents.data));
  });

  it('re-creates errors from the worker with their code, name, message and fields', async () => {
    const mismatch = await rejection<DitfaError & { mismatches: unknown[] }>(worker.generate({ ...request, steps: 5, plan }));
    expect(mismatch).toBeInstanceOf(DitfaError);
    expect(mismatch.code).toBe(ErrorCode.PlanMismatch);
    expect(mismatch.name).toBe('PlanMismatchError');
    expect(mismatch.message).toMatch(/steps: the plan was made for 6 but this run uses 5/);
    expect(mismatch.mismatches).toContainEqual({ field: 'steps', plan: 6, expected: 5 });
    expect(mismatch.stack).toMatch(/in the worker thread/);

    const bad = await rejection<DitfaError>(worker.generate({ ...request, seed: -1 }));
    expect(bad.code).toBe(ErrorCode.InvalidArgument);
    expect(bad.message).toBe('Expected a non-negative integer for seed but received -1 (number)');

    // what cannot cross is refused here, before the worker sees it
    const sampler = { create: () => null } as never;
    const clone = await rejection<DitfaError>(worker.generate({ ...request, sampler }));
    expect(clone.code).toBe(ErrorCode.InvalidArgument);
    expect(clone.message).toMatch(/plain data/);
  });

  it('calibrates in the worker with a plan search module, progress crossing', async () => {
    const progress: unknown[] = [];
    const other = await createWorkerPipeline<GridOptions>({ module: fixture, export: 'gridModel', args: [config], planner: { module: fixture, export: 'rawSearch' } });
    const p = await other.calibrate(request, { threshold: 0.05, onProgress: (e) => progress.push(e) }).finally(() => other.dispose());
    expect(p.fingerprint).toEqual(inThread.fingerprint(request));
    expect(p.totals.attentionFlopsFraction).toBe(1);
    expect(progress).toContainEqual({ type: 'step-done', step: 5, threshold: 0.05 });
  });
});

describe.skipIf(!built)('aborting a generation in a worker', () => {
  it('rejects with name AbortError and our code, within the attention layer in flight, even while the worker never yields', async () => {
    const counter = new SharedArrayBuffer(4);
    const layers = new Int32Array(counter);
    const pipe = await createWorkerPipeline<GridOptions>({ module: fixture, export: 'slowGridModel', args: [config, 20, counter] });
    try {
      const controller = new AbortController();
      const reason = new Error('stop');
      let atAbort = -1;
      const error = await rejection(
        pipe.generate({
          ...request,
          steps: 50,
          signal: controller.signal,
          onProgress: (e) => {
            if (e.step === 2) {
              controller.abort(reason);
              atAbort = Atomics.load(layers, 0);
            }
          },
        }),
      );
      const after = Atomics.load(layers, 0);
      expect(error).toBeInstanceOf(DitfaError);
      expect(error.name).toBe('AbortError');
      expect(error.code).toBe(ErrorCode.Aborted);
      expect(error.cause).toBe(reason);
      // 6 layers a step; the abort arrives while some layer of step 3 runs: that layer finishes, no other starts
      expect(atAbort).toBeGreaterThanOrEqual(2 * 6);
      expect(after - atAbort).toBeLessThanOrEqual(1);
      expect(after).toBeLessThan(50 * 6);
      // an already-aborted signal rejects without starting anything
      const before = Atomics.load(layers, 0);
      const early = await rejection<DitfaError>(pipe.generate({ ...request, signal: AbortSignal.abort() }));
      expect([early.name, early.code]).toEqual(['AbortError', ErrorCode.Aborted]);
      expect(Atomics.load(layers, 0)).toBe(before);
      // the worker is still usable
      expect((await pipe.generate({ ...request, steps: 1 })).latents.shape).toEqual([3, 4, 4, 6]);
    } finally {
      await pipe.dispose();
    }
  });
});

describe.skipIf(!built)('worker errors', () => {
  it('a numerical fault in the worker arrives with its code, step and layer', async () => {
    const pipe = await createWorkerPipeline<GridOptions>({ module: fixture, export: 'nanGridModel', args: [config, 1] });
    try {
      const error = await rejection<DitfaError & { step: number; layer: string }>(pipe.generate(request));
      expect(error.code).toBe(ErrorCode.NumericalFault);
      expect(error.name).toBe('NumericalFaultError');
      // the same fault as in-thread: the NaN MLP of block 1 runs after its last site, cols
      const nan = createGridModel({ ...config, tamper: (b, name, w) => (b === 1 && name === 'wm' ? w.fill(Number.NaN) : undefined) });
      const here = await rejection<DitfaError & { step: number; layer: string }>(createPipeline(nan).generate(request));
      expect([error.step, error.layer, error.message]).toEqual([here.step, here.layer, here.message]);
      expect(error.layer).toBe('1.cols');
    } finally {
      await pipe.dispose();
    }
  });

  it('a factory that fails rejects createWorkerPipeline with its error: coded ones with their code, others still reject', async () => {
    const refused = await rejection<DitfaError>(createWorkerPipeline({ module: fixture, export: 'refuses' }));
    expect(refused).toBeInstanceOf(DitfaError);
    expect([refused.code, refused.name, refused.message]).toEqual([ErrorCode.InvalidArgument, 'InvalidArgumentError', 'Expected a checkpoint folder but received none (test)']);
    const broken = await rejection<Error>(createWorkerPipeline({ module: fixture, export: 'breaks' }));
    expect(broken).toBeInstanceOf(Error);
    expect(broken).not.toBeInstanceOf(DitfaError);
    expect(broken.name).toBe('TypeError');
    const notFn = await rejection<DitfaError>(createWorkerPipeline({ module: fixture, export: 'notAFunction' }));
    expect(notFn.code).toBe(ErrorCode.InvalidArgument);
    expect(notFn.message).toMatch(/export a function named "notAFunction"/);
    const missing = await rejection<DitfaError>(createWorkerPipeline({ module: '@ditfa/no-such-package' }));
    expect(missing.code).toBe(ErrorCode.InvalidArgument);
    expect(missing.message).toMatch(/cannot be resolved/);
  });

  it('refuses calls after dispose with a coded error', async () => {
    const pipe = await createWorkerPipeline<GridOptions>({ module: fixture, export: 'gridModel', args: [config] });
    await pipe.dispose();
    await pipe.dispose();
    await expect(pipe.generate(request)).rejects.toMatchObject({ code: 'ERR_DITFA_DISPOSED' });
  });
});

describe('transfer lists', () => {
  it('move the buffers a result owns whole, once each, and copy views into a shared buffer', () => {
    const latents = new Float32Array(8);
    const pooled = Buffer.from('a small pooled buffer');
    const shared = new Float32Array(new SharedArrayBuffer(16));
    const owned = new Uint8Array(3);
    const list = transferables({ latents: { data: latents, shape: [8] }, again: latents, png: [owned, pooled], shared, n: 1 });
    expect(list).toEqual([latents.buffer, owned.buffer]);
  });
});
