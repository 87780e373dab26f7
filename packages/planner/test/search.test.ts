import { AbortedError, ErrorCode, checkPlanFingerprint, fullStrategy, parsePlan, planView, serializePlan, strategySet, validatePlan, type PlanDocument } from '@ditfa/core';
import { strategies as astStrategies } from '@ditfa/strategy-ast';
import { strategies as ascStrategies } from '@ditfa/strategy-asc';
import { strategies as warsStrategies } from '@ditfa/strategy-wars';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CANDIDATES, THRESHOLDS, explain, resolveThreshold, searchPlan, type PlannerEvent, type SearchState } from '../src/index.js';
import { ToyTarget } from './toy-target.js';

const lookup = () => strategySet([fullStrategy(), ...warsStrategies(), ...astStrategies(), ...ascStrategies()]);
const toy = (o: Partial<ConstructorParameters<typeof ToyTarget>[0]> = {}) => new ToyTarget({ strategies: lookup(), ...o });
const methods = (plan: PlanDocument) => plan.steps.map((row) => row.map((e) => e.method));

/** Runs a generation on the toy under a plan (the way a pipeline would) and returns the final sample. */
async function generate(target: ToyTarget, plan: PlanDocument): Promise<Float32Array> {
  checkPlanFingerprint(plan, target.fingerprint);
  const { cache } = await target.begin();
  const view = planView(plan);
  for (let step = 0; step < target.numSteps; step++) {
    const h = await target.runBlocks(await target.embed(step), 0, target.numBlocks, { step, methodFor: (b) => view.methodAt(step, b)!, plan: view, cache });
    await target.advance(step, await target.output(h));
  }
  return target.sample();
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

  it('prefix reuse finds the identical plan with fewer block evaluations', async () => {
    for (const threshold of ['D2', 'D4', 'D6'] as const) {
      const naiveTarget = toy({ blocks: 4 });
      const prefixTarget = toy({ blocks: 4 });
      const naive = await searchPlan(naiveTarget, { threshold, mode: 'naive' });
      const prefix = await searchPlan(prefixTarget, { threshold, mode: 'prefix' });
      expect(methods(prefix)).toEqual(methods(naive));
      expect(prefix.steps.map((r) => r.map((e) => e.loss))).toEqual(naive.steps.map((r) => r.map((e) => e.loss)));
      // the calibration generation itself is the same, step for step
      expect(prefixTarget.outputs.map((o) => [...o.data])).toEqual(naiveTarget.outputs.map((o) => [...o.data]));
      const counted = (t: ToyTarget) => t.blockRuns.reduce((a, b) => a + b, 0);
      expect(naive.totals.blockEvaluations).toBe(counted(naiveTarget));
      expect(prefix.totals.blockEvaluations).toBe(counted(prefixTarget));
      expect(prefix.totals.blockEvaluations!).toBeLessThan(naive.totals.blockEvaluations!);
    }
  });

  it('a saved plan reloads and reproduces the same generation bit for bit', async () => {
    const plan = await searchPlan(toy(), { threshold: 'D4' });
    const reloaded = parsePlan(serializePlan(plan), { methods: lookup() });
    const a = await generate(toy(), plan);
    const b = await generate(toy(), reloaded);
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    // and the plan changes the result (it is not the raw model)
    const raw = await generate(toy(), await searchPlan(toy(), { threshold: 0 }));
    expect(Buffer.from(raw.buffer).equals(Buffer.from(a.buffer))).toBe(false);
  });

  it('a plan for another fingerprint is refused', async () => {
    const plan = await searchPlan(toy({ steps: 3 }), { threshold: 'D2' });
    await expect(generate(toy({ steps: 4 }), plan)).rejects.toMatchObject({ code: ErrorCode.PlanMismatch });
    await expect(generate(toy({ steps: 3, blocks: 2 }), plan)).rejects.toThrow(/model\.architecture/);
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
    expect(resolveThreshold('d3')).toEqual({ delta: 0.075, name: 'D3' });
    expect(resolveThreshold('0.05')).toEqual({ delta: 0.05, name: 'D2' });
    expect(resolveThreshold(0.07)).toEqual({ delta: 0.07 });
  });

  it('explains a plan in words and a grid', async () => {
    const plan = await searchPlan(toy(), { threshold: 1e9 });
    const text = explain(plan);
    expect(text).toContain('threshold δ = 1000000000');
    expect(text).toContain(`attention FLOPs: ${(100 / 8).toFixed(1)} % of the raw model`);
    expect(text).toMatch(/\n {4} {2}0 FAAAAAAA\n/);
  });
});

describe('heatmap', () => {
  it('renders one coloured cell per (block, step) with a legend, as a decodable PNG', async () => {
    const { decodePng } = await import('@ditfa/image');
    const { planHeatmapPng, renderPlanHeatmap, METHOD_COLOURS } = await import('../src/index.js');
    const plan = await searchPlan(toy(), { threshold: 'D4' });
    const canvas = renderPlanHeatmap(plan, { cell: 10 });
    const png = decodePng(planHeatmapPng(plan, { cell: 10 }));
    expect([png.width, png.height]).toEqual([canvas.width, canvas.height]);
    // the cell of (block b, step s) has its method's colour at its top-left pixel
    for (let b = 0; b < plan.numBlocks; b++)
      for (let s = 0; s < plan.steps.length; s++) {
        const o = ((22 + b * 10) * png.width + 34 + s * 10) * 4;
        const hex = METHOD_COLOURS[plan.steps[s]![b]!.method]!;
        expect([...png.data.subarray(o, o + 3)]).toEqual([1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
      }
  });
});
