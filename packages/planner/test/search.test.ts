import { AbortedError, ErrorCode, type CalibrationTarget, type PlanDocument, type Tensor, parsePlan, serializePlan, strategySet, validatePlan } from '@ditfa/core';
import { type GenerateOptionsBase, createPipeline } from '@ditfa/pipeline';
import { type GridModelConfig, type GridOptions, type GridState, createGridModel } from '@ditfa/pipeline/testing';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CANDIDATES, THRESHOLDS, explain, resolveThreshold, searchPlan, type PlannerEvent, type SearchState } from '../src/index.js';

const all = () => [...warsStrategies(), ...astStrategies(), ...ascStrategies()];
const lookup = () => strategySet(all());
const methods = (plan: PlanDocument) => plan.steps.map((row) => row.map((e) => e.method));

interface ToyOptions {
  readonly blocks?: number;
  readonly steps?: number;
  readonly sites?: GridModelConfig['sites'];
}

/**
 * A calibration target from `@ditfa/pipeline` on its toy grid model (3 blocks of self-attention over a
 * 4×4 grid by default, 8 DDIM steps, CFG 4 on 2 samples), counting the layer evaluations the search
 * asks for and recording the model output of every committed step.
 */
function toy(o: ToyOptions = {}) {
  const config: GridModelConfig = { blocks: o.blocks ?? 3, height: 4, width: 4, heads: 2, headDim: 4, sites: o.sites ?? ['self'], seed: 3 };
  const pipe = createPipeline(createGridModel(config), { strategies: all() });
  const request: GridOptions & GenerateOptionsBase = { classLabels: [1, 2], seed: 4, steps: o.steps ?? 8, guidanceScale: 4, sampler: 'ddim', images: false };
  const inner = pipe.calibrationTarget(request);
  const counted = { layerRuns: 0, outputs: [] as Tensor[] };
  const target: CalibrationTarget<GridState> & { latents(): Tensor | null } = {
    ...inner,
    runLayers: (h, from, to, run) => {
      counted.layerRuns += to - from;
      return inner.runLayers(h, from, to, run);
    },
    advance: (step, output) => {
      counted.outputs.push(output);
      return inner.advance(step, output);
    },
  };
  return Object.assign(target, { pipe, request, counted });
}

/** Generates under a plan with the pipeline (as a user would) and returns the final sample. */
async function generate(t: ReturnType<typeof toy>, plan: PlanDocument): Promise<Float32Array> {
  return (await t.pipe.generate({ ...t.request, plan })).latents.data;
}

describe('greedy plan search (Algorithm 1)', () => {
  it('δ = 0 gives full attention everywhere', async () => {
    const plan = await searchPlan(toy(), { threshold: 0 });
    expect(methods(plan).flat().every((m) => m === 'full')).toBe(true);
    expect(plan.totals.attentionFlopsFraction).toBe(1);
    expect(() => validatePlan(plan, { methods: lookup() })).not.toThrow();
  });

  it('a huge δ gives the most compressive candidate everywhere after step 0', async () => {
    const plan = await searchPlan(toy(), { threshold: 1e9 });
    const m = methods(plan);
    expect(m[0]!.every((x) => x === 'full')).toBe(true);
    expect(m.slice(1).flat().every((x) => x === 'ast')).toBe(true);
    // only step 0 computes attention
    expect(plan.totals.attentionFlopsFraction).toBeCloseTo(1 / plan.steps.length, 12);
  });

  it('orders candidates by the FLOP model, most compressive first, whatever order they are given in', async () => {
    const plan = await searchPlan(toy({ steps: 2 }), { threshold: 0, candidates: ['full+asc', 'wars', 'ast', 'wars+asc'] });
    expect(plan.candidates).toEqual(['ast', 'wars+asc', 'wars', 'full+asc']);
    expect(DEFAULT_CANDIDATES).toEqual(['ast', 'wars+asc', 'wars', 'full+asc']);
  });

  it('never increases the attention-FLOPs fraction as δ grows', async () => {
    const deltas = [0, ...Object.values(THRESHOLDS), 0.3, 0.6];
    const fractions: number[] = [];
    for (const d of deltas) fractions.push((await searchPlan(toy(), { threshold: d })).totals.attentionFlopsFraction);
    for (let i = 1; i < fractions.length; i++) expect(fractions[i]!).toBeLessThanOrEqual(fractions[i - 1]! + 1e-12);
    // the thresholds in between pick a real mix, not just the two extremes
    expect(new Set(fractions.map((f) => f.toFixed(6))).size).toBeGreaterThan(2);
  });

  it('prefix reuse finds the identical plan with fewer layer evaluations', async () => {
    for (const threshold of ['D2', 'D4', 'D6'] as const) {
      const naiveTarget = toy({ blocks: 4 });
      const prefixTarget = toy({ blocks: 4 });
      const naive = await searchPlan(naiveTarget, { threshold, mode: 'naive' });
      const prefix = await searchPlan(prefixTarget, { threshold, mode: 'prefix' });
      expect(methods(prefix)).toEqual(methods(naive));
      expect(prefix.steps.map((r) => r.map((e) => e.loss))).toEqual(naive.steps.map((r) => r.map((e) => e.loss)));
      // the calibration generation itself is the same, step for step
      expect(prefixTarget.counted.outputs.map((o) => [...o.data])).toEqual(naiveTarget.counted.outputs.map((o) => [...o.data]));
      expect(naive.totals.layerEvaluations).toBe(naiveTarget.counted.layerRuns);
      expect(prefix.totals.layerEvaluations).toBe(prefixTarget.counted.layerRuns);
      expect(prefix.totals.layerEvaluations!).toBeLessThan(naive.totals.layerEvaluations!);
    }
  });

  it('a saved plan reloads and reproduces the same generation bit for bit', async () => {
    const plan = await searchPlan(toy(), { threshold: 'D4' });
    const reloaded = parsePlan(serializePlan(plan), { methods: lookup() });
    const a = await generate(toy(), plan);
    const b = await generate(toy(), reloaded);
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    // the generation under the plan is the calibration generation itself (same inputs, same methods)
    const calibrated = toy();
    await searchPlan(calibrated, { threshold: 'D4' });
    expect(Buffer.from(a.buffer).equals(Buffer.from(calibrated.latents()!.data.buffer))).toBe(true);
    // and the plan changes the result (it is not the raw model)
    const raw = await generate(toy(), await searchPlan(toy(), { threshold: 0 }));
    expect(Buffer.from(raw.buffer).equals(Buffer.from(a.buffer))).toBe(false);
  });

  it('a plan for another fingerprint is refused', async () => {
    const plan = await searchPlan(toy({ steps: 3 }), { threshold: 'D2' });
    await expect(generate(toy({ steps: 4 }), plan)).rejects.toMatchObject({ code: ErrorCode.PlanMismatch });
    await expect(generate(toy({ steps: 3, blocks: 2 }), plan)).rejects.toThrow(/model\.architecture/);
    await expect(generate(toy({ steps: 3, sites: ['rows', 'cols'] }), plan)).rejects.toThrow(/layers \(count\)/);
  });

  it('reports progress and can be aborted, saved and resumed to the same plan', async () => {
    const events: PlannerEvent[] = [];
    const full = await searchPlan(toy(), { threshold: 'D3', onProgress: (e) => events.push(e) });
    expect(events.filter((e) => e.type === 'step-done')).toHaveLength(8);
    const candidates = events.filter((e) => e.type === 'candidate');
    expect(candidates.length).toBeGreaterThan(0);
    expect(candidates.every((e) => e.type === 'candidate' && e.accepted === e.loss < e.limit)).toBe(true);

    const controller = new AbortController();
    let saved: SearchState | undefined;
    const stop = searchPlan(toy(), {
      threshold: 'D3',
      signal: controller.signal,
      onCheckpoint: (s) => {
        saved = JSON.parse(JSON.stringify(s));
        if (s.decided.length === 4) controller.abort(new Error('user stopped'));
      },
    });
    await expect(stop).rejects.toBeInstanceOf(AbortedError);
    expect(saved?.decided).toHaveLength(4);
    const resumed = await searchPlan(toy(), { threshold: 'D3', resume: saved! });
    expect(methods(resumed)).toEqual(methods(full));
    expect(resumed.totals.attentionFlopsFraction).toBe(full.totals.attentionFlopsFraction);
    await expect(searchPlan(toy(), { threshold: 'D5', resume: saved! })).rejects.toMatchObject({ code: 'ERR_DITFA_PLAN_RESUME_MISMATCH' });
    await expect(searchPlan(toy({ steps: 9 }), { threshold: 'D3', resume: saved! })).rejects.toThrow(/steps/);
  });

  it('rejects bad options with coded errors', async () => {
    await expect(searchPlan(toy(), { threshold: -1 })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(searchPlan(toy(), { threshold: 'D9' })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(searchPlan(toy(), { threshold: 'D1', candidates: ['magic'] })).rejects.toMatchObject({ code: ErrorCode.StrategyNotFound });
    await expect(searchPlan(toy(), { threshold: 'D1', candidates: ['full'] })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(searchPlan(toy(), { threshold: 'D1', candidates: [] })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(searchPlan(toy(), { threshold: 'D1', candidates: ['ast', 'wars', 'ast'] })).rejects.toMatchObject({
      code: ErrorCode.InvalidArgument,
      message: expect.stringMatching(/"ast" more than once/),
    });
    await expect(searchPlan(toy(), { threshold: 'D1', sites: ['cross'] })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringMatching(/sites of this model \(self\)/) });
    await expect(searchPlan(toy(), { threshold: 'D1', sites: [] })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(searchPlan(toy(), { threshold: 'D1', sites: ['self', 'self'] })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    await expect(searchPlan(toy(), { threshold: 'D1', lossOn: 'guided' as never })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument });
    const { prediction: _dropped, ...noPrediction } = toy();
    await expect(searchPlan(noPrediction, { threshold: 'D1', lossOn: 'prediction' })).rejects.toMatchObject({ code: ErrorCode.InvalidArgument, message: expect.stringMatching(/prediction\(\)/) });
    expect(resolveThreshold('d3')).toEqual({ delta: 0.075, name: 'D3' });
    expect(resolveThreshold('0.05')).toEqual({ delta: 0.05, name: 'D2' });
    expect(resolveThreshold(0.07)).toEqual({ delta: 0.07 });
  });

  it('explains a plan in words and a grid', async () => {
    const plan = await searchPlan(toy(), { threshold: 1e9 });
    const text = explain(plan);
    expect(text).toContain('threshold δ = 1000000000');
    expect(text).toContain(`attention FLOPs: ${(100 / 8).toFixed(1)} % of the raw model`);
    expect(text).toMatch(/\n {4}0\.self FAAAAAAA\n/);
    expect(text).toContain('self: 1-D, 4 tokens per side');
    expect(text).toContain('loss on the model output; searched every site');
    expect(explain({ ...plan, lossOn: 'prediction', sites: ['self'] })).toContain('loss on the guided prediction; searched sites self (others full)');
  });
});

describe('heatmap', () => {
  it('renders one coloured cell per (layer, step) with a legend, as a decodable PNG', async () => {
    const { decodePng, textWidth } = await import('@ditfa/image');
    const { planHeatmapPng, renderPlanHeatmap, METHOD_COLOURS } = await import('../src/index.js');
    const plan = await searchPlan(toy(), { threshold: 'D4' });
    const canvas = renderPlanHeatmap(plan, { cell: 10 });
    const png = decodePng(planHeatmapPng(plan, { cell: 10 }));
    expect([png.width, png.height]).toEqual([canvas.width, canvas.height]);
    // the cell of (layer b, step s) has its method's colour at its top-left pixel; the grid starts right of the widest layer id
    const left = Math.max(34, 6 + textWidth('0.self'));
    for (let b = 0; b < plan.fingerprint.layers.length; b++)
      for (let s = 0; s < plan.steps.length; s++) {
        const o = ((22 + b * 10) * png.width + left + s * 10) * 4;
        const hex = METHOD_COLOURS[plan.steps[s]![b]!.method]!;
        expect([...png.data.subarray(o, o + 3)]).toEqual([1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
      }
  });
});

describe('calibration over several attention sites per block', () => {
  it('decides every (step, layer) of a rows-then-columns model; the plan runs as calibrated', async () => {
    const t = toy({ blocks: 2, steps: 6, sites: ['rows', 'cols'] });
    const events: PlannerEvent[] = [];
    const plan = await searchPlan(t, { threshold: 'D4', onProgress: (e) => events.push(e) });
    expect(plan.fingerprint.layers.map((l) => l.id)).toEqual(['0.rows', '0.cols', '1.rows', '1.cols']);
    expect(plan.steps.every((row) => row.length === 4)).toBe(true);
    // limits grow along the layers in model order: (i+1)/N·δ
    const limits = events.filter((e) => e.type === 'candidate' && e.step === 1).map((e) => (e.type === 'candidate' ? [e.layer, e.limit] : []));
    for (const [layer, limit] of limits) expect(limit).toBeCloseTo(((layer! + 1) / 4) * 0.1, 12);
    // both sites get compressed somewhere, and the plan reproduces the calibration generation
    const chosen = methods(plan);
    expect(chosen.slice(1).some((row) => row[0] !== 'full')).toBe(true);
    expect(chosen.slice(1).some((row) => row[1] !== 'full')).toBe(true);
    const generated = await generate(toy({ blocks: 2, steps: 6, sites: ['rows', 'cols'] }), plan);
    expect(Buffer.from(generated.buffer).equals(Buffer.from(t.latents()!.data.buffer))).toBe(true);
    expect(explain(plan)).toMatch(/\n {4}1\.cols F/);
  });
});

/** MRAE as METHOD.md defines it, written out here independently of core's. */
function mrae(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.min(10, Math.abs(a[i]! - b[i]!) / (Math.max(Math.abs(a[i]!), Math.abs(b[i]!)) + 1e-6));
  return sum / a.length;
}

/** CFG by hand on a cond-first batch `[cond | uncond]`: `u + s·(c − u)`. */
function guideByHand(out: Tensor, scale: number): Float32Array {
  const half = out.data.length / 2;
  const g = new Float32Array(half);
  for (let i = 0; i < half; i++) g[i] = out.data[half + i]! + scale * (out.data[i]! - out.data[half + i]!);
  return g;
}

describe('search options beyond the paper', () => {
  it('lossOn "prediction" measures every candidate on the guided prediction the sampler uses', async () => {
    const t = toy({ steps: 4 });
    const outputs: Tensor[] = [];
    const recording = { ...t, output: async (h: GridState, step: number) => { const o = await t.output(h, step); outputs.push(o); return o; } };
    const checked: number[] = [];
    let reference: Tensor | null = null;
    const plan = await searchPlan(recording, {
      threshold: 'D3',
      lossOn: 'prediction',
      onProgress: (e) => {
        // the first output of a searched step is its all-full reference; each candidate's follows it
        if (e.type === 'step-start') reference = null;
        if (e.type === 'candidate') {
          const ref = reference ?? outputs[outputs.length - 2]!;
          reference = ref;
          const guidedLoss = mrae(guideByHand(ref, 4), guideByHand(outputs[outputs.length - 1]!, 4));
          expect(e.loss).toBeCloseTo(guidedLoss, 6);
          checked.push(e.loss - mrae(ref.data, outputs[outputs.length - 1]!.data));
        }
      },
    });
    expect(checked.length).toBeGreaterThan(4);
    // guidance amplifies the difference of the halves: the guided loss is not the output loss
    expect(checked.some((d) => Math.abs(d) > 1e-4)).toBe(true);
    expect(plan.lossOn).toBe('prediction');
    expect(() => validatePlan(parsePlan(serializePlan(plan)), { methods: lookup() })).not.toThrow();
    // the plan replays the calibration generation exactly
    const generated = await generate(toy({ steps: 4 }), plan);
    expect(Buffer.from(generated.buffer).equals(Buffer.from(t.latents()!.data.buffer))).toBe(true);
    // a saved search cannot resume with the other loss
    let saved: SearchState | undefined;
    await searchPlan(toy({ steps: 4 }), { threshold: 'D3', lossOn: 'prediction', onCheckpoint: (s) => (saved ??= JSON.parse(JSON.stringify(s))) });
    expect(saved?.lossOn).toBe('prediction');
    await expect(searchPlan(toy({ steps: 4 }), { threshold: 'D3', resume: saved! })).rejects.toThrow(/lossOn/);
  });

  it('sites limits the search to the named sites; the others stay at full attention', async () => {
    const t = toy({ blocks: 2, steps: 6, sites: ['rows', 'cols'] });
    const plan = await searchPlan(t, { threshold: 1e9, sites: ['cols'] });
    const chosen = methods(plan);
    expect(chosen.flatMap((row) => [row[0], row[2]]).every((m) => m === 'full')).toBe(true);
    expect(chosen.slice(1).every((row) => row[1] === 'ast' && row[3] === 'ast')).toBe(true);
    expect(plan.sites).toEqual(['cols']);
    expect(() => validatePlan(parsePlan(serializePlan(plan)), { methods: lookup() })).not.toThrow();
    expect(() => parsePlan(serializePlan({ ...plan, sites: [3] as never }))).toThrow(/sites/);
    expect(() => parsePlan(serializePlan({ ...plan, lossOn: 'latent' as never }))).toThrow(/lossOn/);
    // by default only self-attention sites are searched: mark the cols layers as cross-attention (7 keys)
    const crossy = toy({ blocks: 2, steps: 6, sites: ['rows', 'cols'] });
    const marked = { ...crossy, layers: crossy.layers.map((l) => (l.site === 'cols' ? { ...l, kvTokens: 7 } : l)) };
    const self = await searchPlan(marked, { threshold: 1e9 });
    expect(self.sites).toEqual(['rows']);
    expect(methods(self).every((row) => row[1] === 'full' && row[3] === 'full')).toBe(true);
    expect(methods(self).slice(1).every((row) => row[0] === 'ast' && row[2] === 'ast')).toBe(true);
    const everywhere = await searchPlan({ ...marked }, { threshold: 1e9, sites: ['rows', 'cols'] });
    expect(everywhere.sites).toBeUndefined();
    expect(methods(everywhere).slice(1).every((row) => row.every((m) => m === 'ast'))).toBe(true);
    // on a model with self-attention only, the default searches every site and records none
    expect((await searchPlan(toy({ steps: 3 }), { threshold: 'D2' })).sites).toBeUndefined();
    // given in another order, the sites are stored in model order
    const again = await searchPlan(toy({ blocks: 1, steps: 3, sites: ['self', 'rows', 'cols'] }), { threshold: 'D2', sites: ['cols', 'self'] });
    expect(again.sites).toEqual(['self', 'cols']);
  });
});
