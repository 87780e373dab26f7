import {
  type AttentionStrategy,
  ErrorCode,
  type PlanDocument,
  type PlanFingerprint,
  type Tensor,
  buildPlan,
  createReferenceBackend,
  planView,
  referenceAttention,
  sliceBatch,
  tensor,
} from '@ditfa/core';
import { createRng, createSampler, guide } from '@ditfa/samplers';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { type DenoiserModel, type PipelineEvent, createPipeline } from '../src/index.js';
import { type GridModelConfig, createGridModel } from '../src/testing/index.js';

const backend = createReferenceBackend();

interface Failure {
  readonly code: string;
  readonly message: string;
  readonly step?: number;
  readonly layer?: string;
}

/** The error a promise rejects with (a test failure when it resolves). */
async function failure(p: Promise<unknown>): Promise<Failure> {
  return p.then(
    () => {
      throw new Error('expected a rejection but the promise resolved');
    },
    (e: unknown) => e as Failure,
  );
}
const methods: AttentionStrategy[] = [...warsStrategies(), ...astStrategies(), ...ascStrategies()];
const twoSite: GridModelConfig = { blocks: 2, height: 4, width: 6, heads: 2, headDim: 4, sites: ['rows', 'cols'], seed: 7 };
const base = { seed: 11, steps: 5, guidanceScale: 3, sampler: 'ddim' as const, images: false };

/** A v2 plan document for `fingerprint` with `method(step, layer)`, its numbers filled in from the strategies' FLOP declarations. */
function planOf(fingerprint: PlanFingerprint, layersShape: ReturnType<ReturnType<typeof createPipeline>['layers']>, method: (step: number, layer: number) => string): PlanDocument {
  return buildPlan({
    fingerprint,
    layers: layersShape,
    strategies: methods,
    method: (s, layer) => (s === 0 ? 'full' : method(s, layer.index)),
    threshold: 0.1,
    candidates: ['ast', 'wars+asc', 'wars', 'full+asc'],
  });
}

/** Rows-then-columns: WA-RS along rows, AST along columns at odd steps, ASC variants elsewhere. */
const mixed = (step: number, layer: number): string => {
  const site = layer % 2 === 0 ? 'rows' : 'cols';
  if (site === 'rows') return step % 2 === 1 ? 'wars' : 'wars+asc';
  return step % 2 === 1 ? 'ast' : 'full+asc';
};

describe('the pipeline on a two-site toy model (attention along rows, then columns, per block)', () => {
  it('states one layer per (block, site) in model order, with the CFG batch and window of each site', () => {
    const pipe = createPipeline(createGridModel(twoSite), { strategies: methods, backend });
    const layers = pipe.layers({ ...base, classLabels: [1, 2] }, 4);
    expect(layers.map((l) => l.id)).toEqual(['0.rows', '0.cols', '1.rows', '1.cols']);
    // rows: B·H rows of W tokens; cols: B·W rows of H tokens
    expect(layers.map((l) => [l.batch, l.tokens, l.window])).toEqual([
      [16, 6, { kind: '1d', size: 1 }],
      [24, 4, { kind: '1d', size: 1 }],
      [16, 6, { kind: '1d', size: 1 }],
      [24, 4, { kind: '1d', size: 1 }],
    ]);
    expect(pipe.fingerprint({ ...base }).layers).toEqual(layers.map((l) => ({ id: l.id, window: l.window })));
  });

  it('a raw generation equals a hand-written DDIM loop with CFG over reference attention', async () => {
    const model = createGridModel(twoSite);
    const pipe = createPipeline(model, { strategies: methods, backend });
    const r = await pipe.generate({ ...base, classLabels: [3, 5] });
    // Independent loop: the sampler, guidance and reference attention directly, no dispatcher.
    const sampler = createSampler({ kind: 'ddim', steps: base.steps });
    const rng = createRng(base.seed);
    let x = rng.randn([2, 4, 4, 6]);
    const { cond } = model.condition({ classLabels: [3, 5] }, true);
    for (let i = 0; i < base.steps; i++) {
      let state = await model.embed(tensor(new Float32Array([...x.data, ...x.data]), [4, 4, 4, 6]), sampler.timesteps[i]!, cond);
      state = await model.runLayers(state, 0, 4, async (_layer, hooks) => {
        const { q, k, v } = await hooks.qkv('all');
        return hooks.project(referenceAttention(q, k, v), 'all');
      });
      const out = await model.output(state);
      x = sampler.step(guide(out, { order: 'cond-first', scale: base.guidanceScale }), i, x);
    }
    expect(Array.from(r.latents.data)).toEqual(Array.from(x.data));
    expect(r.attention.fraction).toBe(1);
    expect(r.sampler).toBe('ddim');
  });

  it('runs a planned generation with per-site methods: no fallbacks, FLOPs as planned, close to raw', async () => {
    const pipe = createPipeline(createGridModel(twoSite), { strategies: methods, backend });
    const options = { ...base, classLabels: [1, 4] };
    const plan = planOf(pipe.fingerprint(options), pipe.layers(options, 4), mixed);
    const events: PipelineEvent[] = [];
    const planned = await createPipeline(createGridModel(twoSite), { strategies: methods, backend, onEvent: (e) => events.push(e) }).generate({ ...options, plan });
    const raw = await pipe.generate(options);
    expect(events.filter((e) => e.type === 'fallback' || e.type === 'cache-refused')).toEqual([]);
    expect(planned.attention.fallbacks).toBe(0);
    expect(planned.attention.fraction).toBeCloseTo(plan.totals.attentionFlopsFraction, 12);
    expect(planned.attention.fraction).toBeLessThan(0.6);
    // Both sites kept caches (residuals along rows, projected outputs along columns).
    expect(planned.cache.peakBytes).toBeGreaterThan(0);
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < raw.latents.data.length; i++) {
      diff = Math.max(diff, Math.abs(raw.latents.data[i]! - planned.latents.data[i]!));
      scale = Math.max(scale, Math.abs(raw.latents.data[i]!));
    }
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.5 * scale);
  });

  it('keeps caches per layer: AST on one site reuses that site’s own output, not the other site’s', async () => {
    // Only 0.cols reuses (AST at steps 2..4); a cache keyed by block would hand it 0.rows' output.
    const pipe = createPipeline(createGridModel(twoSite), { strategies: methods, backend });
    const options = { ...base, classLabels: [2, 9] };
    const layers = pipe.layers(options, 4);
    const plan = planOf(pipe.fingerprint(options), layers, (s, j) => (j === 1 && s >= 2 ? 'ast' : 'full'));
    const seen = new Map<string, Tensor>();
    const spy = await pipe.generate({ ...options, plan });
    // Re-run with a dispatcher-level spy: the projected output of 0.cols at step 1 must be returned at steps 2..4.
    const model = createGridModel(twoSite);
    const view = planView(plan);
    const spyPipe = createPipeline(
      {
        ...model,
        latent: (o) => model.latent(o as never),
        condition: (o, c) => model.condition(o as never, c),
        attentionLayers: (l, b, c) => model.attentionLayers(l, b, c),
        embed: (x, t, c) => model.embed(x, t, c),
        output: (st) => model.output(st),
        dispose: () => model.dispose(),
        runLayers: (st, from, to, attend) =>
          model.runLayers(st, from, to, async (i, hooks) => {
            const out = await attend(i, hooks);
            seen.set(`${stepOf()}:${layers[i]!.id}`, out);
            return out;
          }),
        architecture: model.architecture,
        weightsHash: model.weightsHash,
        cfgOrder: model.cfgOrder,
        prediction: model.prediction,
        learnSigma: model.learnSigma,
      },
      { strategies: methods, backend, onEvent: (e) => e.type === 'step' && (step = e.step) },
    );
    let step = 0;
    const stepOf = (): number => step;
    const again = await spyPipe.generate({ ...options, plan });
    expect(Array.from(again.latents.data)).toEqual(Array.from(spy.latents.data));
    expect(view.methodAt(2, 1)).toBe('ast');
    for (const s of [2, 3, 4]) expect(Array.from(seen.get(`${s}:0.cols`)!.data)).toEqual(Array.from(seen.get('1:0.cols')!.data));
    expect(Array.from(seen.get('2:0.rows')!.data)).not.toEqual(Array.from(seen.get('1:0.rows')!.data));
    expect(seen.get('2:0.rows')).not.toBe(seen.get('1:0.rows'));
    expect(seen.get('1:0.cols')!.shape).toEqual([24, 4, 8]);
  });

  it('gives each sample of a batch what it gets alone (planned, with CFG and ASC)', async () => {
    const pipe = createPipeline(createGridModel(twoSite), { strategies: methods, backend });
    const noiseOf = (seed: number): Tensor => createRng(seed).randn([1, 4, 4, 6]);
    const a = noiseOf(1);
    const b = noiseOf(2);
    const both = tensor(new Float32Array([...a.data, ...b.data]), [2, 4, 4, 6]);
    const planFor = (n: number): PlanDocument => {
      const o = { ...base, classLabels: new Array<number>(n).fill(0) };
      return planOf(pipe.fingerprint(o), pipe.layers(o, 2 * n), mixed);
    };
    const together = await pipe.generate({ ...base, classLabels: [3, 7], noise: both, plan: planFor(2) });
    const first = await pipe.generate({ ...base, classLabels: [3], noise: a, plan: planFor(1) });
    const second = await pipe.generate({ ...base, classLabels: [7], noise: b, plan: planFor(1) });
    expect(Array.from(sliceBatch(together.latents, 0, 1).data)).toEqual(Array.from(first.latents.data));
    expect(Array.from(sliceBatch(together.latents, 1, 2).data)).toEqual(Array.from(second.latents.data));
  });

  it('two concurrent generate() calls on one pipeline equal the same calls made one after the other', async () => {
    const pipe = createPipeline(createGridModel(twoSite), { strategies: methods, backend });
    const o1 = { ...base, classLabels: [1, 2], seed: 5 };
    const o2 = { ...base, classLabels: [8, 0], seed: 6 };
    const p1 = { ...o1, plan: planOf(pipe.fingerprint(o1), pipe.layers(o1, 4), mixed) };
    const p2 = { ...o2, plan: planOf(pipe.fingerprint(o2), pipe.layers(o2, 4), (s, j) => (j % 2 === 0 ? 'ast' : 'wars')) };
    const s1 = await pipe.generate(p1);
    const s2 = await pipe.generate(p2);
    const [c1, c2] = await Promise.all([pipe.generate(p1), pipe.generate(p2)]);
    expect(Array.from(c1.latents.data)).toEqual(Array.from(s1.latents.data));
    expect(Array.from(c2.latents.data)).toEqual(Array.from(s2.latents.data));
    expect(c1.cache.peakBytes).toBe(s1.cache.peakBytes);
  });
});

describe('plans', () => {
  it('refuses a plan for another layer layout, naming the layers that differ', async () => {
    const one = createPipeline(createGridModel({ ...twoSite, sites: ['self'] }), { strategies: methods, backend });
    const two = createPipeline(createGridModel(twoSite), { strategies: methods, backend });
    const o = { ...base, classLabels: [1] };
    const plan = planOf(two.fingerprint(o), two.layers(o, 2), mixed);
    const err = await failure(one.generate({ ...o, plan }));
    expect(err.code).toBe(ErrorCode.PlanMismatch);
    expect(err.message).toContain('layers (count)');
    const swapped = createPipeline(createGridModel({ ...twoSite, sites: ['cols', 'rows'] }), { strategies: methods, backend });
    const err2 = await failure(swapped.generate({ ...o, plan }));
    expect(err2.code).toBe(ErrorCode.PlanMismatch);
    expect(err2.message).toContain('layers[0].id');
  });

  it('loads a version-1 plan as self layers and runs it exactly like its version-2 form', async () => {
    const pipe = createPipeline(createGridModel({ ...twoSite, sites: ['self'] }), { strategies: methods, backend });
    const o = { ...base, classLabels: [4, 5] };
    const v2 = planOf(pipe.fingerprint(o), pipe.layers(o, 4), (s, j) => (j === 0 ? 'wars' : 'ast'));
    const { layers, ...fingerprint } = v2.fingerprint;
    const v1 = {
      ...v2,
      version: 1,
      fingerprint: { ...fingerprint, window: layers[0]!.window },
      numBlocks: layers.length,
    } as unknown as PlanDocument;
    const a = await pipe.generate({ ...o, plan: v2 });
    const b = await pipe.generate({ ...o, plan: v1 });
    expect(Array.from(b.latents.data)).toEqual(Array.from(a.latents.data));
    expect(b.attention).toEqual(a.attention);
  });

  it('refuses a plan whose step 0 reads a cache, and an unknown method, with coded errors', async () => {
    const pipe = createPipeline(createGridModel(twoSite), { strategies: methods, backend });
    const o = { ...base, classLabels: [1] };
    const plan = planOf(pipe.fingerprint(o), pipe.layers(o, 2), mixed);
    const bad0 = { ...plan, steps: [plan.steps[0]!.map((e, j) => (j === 0 ? { ...e, method: 'ast' } : e)), ...plan.steps.slice(1)] };
    expect((await failure(pipe.generate({ ...o, plan: bad0 }))).code).toBe(ErrorCode.PlanInvalid);
    const unknown = { ...plan, steps: plan.steps.map((row) => row.map((e) => ({ ...e, method: 'nope' }))) };
    expect((await failure(pipe.generate({ ...o, plan: unknown }))).code).toBe(ErrorCode.PlanInvalid);
  });
});

describe('numerical faults', () => {
  it('a NaN weight in one block’s MLP gives a coded error naming the step and the layer', async () => {
    const model = createGridModel({ ...twoSite, tamper: (block, name, w) => block === 1 && name === 'wm' && (w[3] = Number.NaN) });
    const pipe = createPipeline(model, { strategies: methods, backend });
    const err = await failure(pipe.generate({ ...base, classLabels: [1] }));
    expect(err.code).toBe(ErrorCode.NumericalFault);
    expect(err.step).toBe(0);
    // The MLP of block 1 runs after its last site (cols): the state after layer 1.cols is the first non-finite one.
    expect(err.layer).toBe('1.cols');
    expect(err.message).toContain('step 0, layer 1.cols');
  });

  it('an Inf in an attention projection is found at the attention output of its layer', async () => {
    const model = createGridModel({ ...twoSite, tamper: (block, name, w) => block === 0 && name === 'wv' && (w.fill(Number.POSITIVE_INFINITY, 0, 2)) });
    const err = await failure(createPipeline(model, { strategies: methods, backend }).generate({ ...base, classLabels: [1] }));
    expect(err.code).toBe(ErrorCode.NumericalFault);
    expect(err.layer).toBe('0.rows');
  });
});

describe('options and errors', () => {
  it('a strategy that reads a cache nobody writes is refused when the pipeline is made', () => {
    const reader = { ...astStrategies()[0]!, name: 'lonely', caches: { reads: ['nobody'], writes: [], observes: [] } } as AttentionStrategy;
    expect(() => createPipeline(createGridModel(twoSite), { strategies: [reader] })).toThrow(/reads the cache kind "nobody"/);
  });

  it('refuses a sampler for another prediction type, and an aborted generation rejects', async () => {
    const pipe = createPipeline(createGridModel(twoSite), { strategies: methods, backend });
    const err = await failure(pipe.generate({ ...base, classLabels: [1], sampler: 'rflow' }));
    expect(err.code).toBe(ErrorCode.InvalidArgument);
    expect(err.message).toContain('velocity');
    const ac = new AbortController();
    ac.abort();
    expect((await failure(pipe.generate({ ...base, classLabels: [1], signal: ac.signal }))).code).toBe(ErrorCode.Aborted);
  });

  it('decodes images when the model can, with one PNG per sample', async () => {
    const r = await createPipeline(createGridModel(twoSite), { strategies: methods, backend }).generate({ ...base, classLabels: [1, 2], images: true });
    expect(r.images!.shape).toEqual([2, 1, 4, 6]);
    expect(r.png).toHaveLength(2);
  });
});

describe("an adapter's given latent entries", () => {
  const options = { ...base, classLabels: [1, 2] };

  it('are written into the starting latents and after every step; the adapter is told the shape and the sampler kind', async () => {
    const model = createGridModel(twoSite);
    const pipe = createPipeline(model, { strategies: methods, backend });
    const raw = await pipe.generate(options);
    const shape = raw.latents.shape;
    const values = tensor(Float32Array.from({ length: raw.latents.data.length }, (_, i) => (i % 7) / 7 - 0.5), shape);
    const mask = Uint8Array.from({ length: values.data.length }, (_, i) => (i % 3 === 0 ? 1 : 0));
    const asked: [readonly number[], string][] = [];
    const withGiven: DenoiserModel<unknown, unknown, typeof options> = model as never;
    withGiven.given = (_o, s, kind) => (asked.push([[...s], kind]), { values, mask });
    const r = await createPipeline(withGiven, { strategies: methods, backend }).generate(options);
    expect(asked).toEqual([[shape, 'ddim']]);
    for (let i = 0; i < mask.length; i++) if (mask[i]) expect(r.latents.data[i]).toBe(values.data[i]);
    // the other entries were generated, and the given ones changed them (the model saw them)
    const free = Array.from(mask.keys()).filter((i) => !mask[i]);
    expect(free.some((i) => r.latents.data[i] !== raw.latents.data[i])).toBe(true);
    expect(free.every((i) => Number.isFinite(r.latents.data[i]!))).toBe(true);
  });

  it('of the wrong shape or with a bad mask are refused with a coded error before any step', async () => {
    const model = createGridModel(twoSite);
    const raw = await createPipeline(model, { strategies: methods, backend }).generate({ ...options, steps: 1 });
    const n = raw.latents.data.length;
    const withGiven: DenoiserModel<unknown, unknown, typeof options> = model as never;
    const bad: Array<[unknown, string]> = [
      [{ values: tensor(new Float32Array(n), [n]), mask: new Uint8Array(n) }, 'given latents of shape'],
      [{ values: tensor(new Float32Array(n), raw.latents.shape), mask: new Uint8Array(n - 1) }, 'mask of'],
      [{ values: tensor(new Float32Array(n), raw.latents.shape), mask: new Array(n).fill(0) }, 'mask of'],
    ];
    for (const [given, text] of bad) {
      withGiven.given = () => given as never;
      let stepped = 0;
      const err = await failure(createPipeline(withGiven, { strategies: methods, backend }).generate({ ...options, onProgress: () => void (stepped += 1) }));
      expect(err.code).toBe(ErrorCode.ShapeMismatch);
      expect(err.message).toContain(text);
      expect(stepped).toBe(0);
    }
    // a given entry that is not finite (one that is not given may be anything)
    const values = new Float32Array(n).fill(Number.NaN);
    values[0] = 0.5;
    const mask = new Uint8Array(n);
    mask[0] = 1;
    withGiven.given = () => ({ values: tensor(values, raw.latents.shape), mask });
    expect((await createPipeline(withGiven, { strategies: methods, backend }).generate({ ...options, steps: 1 })).latents.data[0]).toBe(0.5);
    mask[1] = 1;
    const err = await failure(createPipeline(withGiven, { strategies: methods, backend }).generate(options));
    expect(err.code).toBe(ErrorCode.InvalidArgument);
    expect(err.message).toContain('entry 1');
  });
});
