import {
  createReferenceBackend,
  layerAttentionFlops,
  layerShape,
  rawAttentionFlops,
  strategySet,
  type AttentionLayer,
  type PlanDocument,
  type PlanFingerprint,
  type PlanView,
  type StrategyLookup,
  type Tensor,
} from '@ditfa/core';
import { type Attend, type PipelineEvent, createPipeline } from '@ditfa/pipeline';
import { GridModel, type GridModelConfig, type GridState } from '@ditfa/pipeline/testing';
import { ast } from '@ditfa/strategy-ast';
import { describe, expect, it } from 'vitest';
import { REUSE_CACHE, strategies } from '../src/index.js';

// Two blocks of attention along grid rows, then columns: layers 0.rows, 0.cols, 1.rows, 1.cols.
const config: GridModelConfig = { blocks: 2, height: 4, width: 6, heads: 2, headDim: 4, sites: ['rows', 'cols'], seed: 5 };
const request = { classLabels: [2, 7], seed: 9, steps: 5, guidanceScale: 3, sampler: 'ddim' as const, images: false };
const backend = createReferenceBackend();

const K = 'attention-keep';
const R = 'attention-reuse';

/**
 * `methods[step][layer]` per layer, as columns: `0.rows` keeps at step 0 and reuses it at 1 and — past a
 * `full` step, which neither reads nor writes the kind — at 3; `0.cols` stays full; `1.rows` keeps at 2
 * and reuses at 3 and 4; `1.cols` keeps and reuses twice in turn.
 */
const byLayer = [
  [K, R, 'full', R, 'full'],
  ['full', 'full', 'full', 'full', 'full'],
  ['full', 'full', K, R, R],
  ['full', K, R, K, R],
];
const grid = (columns: readonly (readonly string[])[]): string[][] => columns[0]!.map((_, s) => columns.map((col) => col[s]!));

/** A version-2 plan for `methods[step][layer]`, its numbers from the strategies' declarations (as the planner fills them in). */
function planOf(fingerprint: PlanFingerprint, layers: readonly AttentionLayer[], lookup: StrategyLookup, methods: readonly (readonly string[])[]): PlanDocument {
  const T = fingerprint.steps;
  const view: PlanView = { numSteps: T, numLayers: layers.length, methodAt: (s, j) => methods[s]?.[j] };
  let flops = 0;
  let raw = 0;
  const steps = methods.map((row, s) =>
    row.map((method, j) => {
      const shape = layerShape(layers[j]!);
      const f = layerAttentionFlops(lookup.get(method)!, shape, { step: s, numSteps: T, layer: j, plan: view, strategies: lookup });
      flops += f;
      raw += rawAttentionFlops(shape);
      return { method, loss: null, flopsFraction: f / rawAttentionFlops(shape) };
    }),
  );
  const candidates = [...new Set(methods.flat().filter((m) => m !== 'full'))];
  return { format: 'ditfa-plan', version: 2, fingerprint, threshold: { delta: 0.1 }, candidates, steps, totals: { attentionFlopsFraction: flops / raw } };
}

interface Call {
  readonly output: Tensor;
  readonly qkv: number;
  readonly project: number;
}

/** The toy grid model with a spy on every attention layer's call: its projected output and the dense hooks it used, by step. */
class SpyModel extends GridModel {
  readonly calls: Call[][] = [];
  #step = -1;

  override async embed(...args: Parameters<GridModel['embed']>): Promise<GridState> {
    this.#step += 1;
    this.calls[this.#step] = [];
    return super.embed(...args);
  }

  override async runLayers(state: GridState, from: number, to: number, attend: Attend): Promise<GridState> {
    const step = this.#step;
    return super.runLayers(state, from, to, async (layer, hooks) => {
      let qkv = 0;
      let project = 0;
      const output = await attend(layer, {
        qkv: (rows) => ((qkv += 1), hooks.qkv(rows)),
        project: (attention, rows, into) => ((project += 1), hooks.project(attention, rows, into)),
      });
      this.calls[step]![layer] = { output, qkv, project };
      return output;
    });
  }
}

describe('attention-keep / attention-reuse in a planned generation through @ditfa/pipeline', () => {
  it('runs the plan as planned: no fallbacks, the plan’s FLOPs, a cache that lives from keep to last reuse', async () => {
    const events: PipelineEvent[] = [];
    const model = new SpyModel(config);
    const pipe = createPipeline(model, { strategies: strategies(), backend, onEvent: (e) => events.push(e) });
    const layers = pipe.layers(request, 4);
    expect(layers.map((l) => l.id)).toEqual(['0.rows', '0.cols', '1.rows', '1.cols']);
    const methods = grid(byLayer);
    const plan = planOf(pipe.fingerprint(request), layers, pipe.strategies, methods);
    const r = await pipe.generate({ ...request, plan });

    expect(events.filter((e) => e.type === 'fallback' || e.type === 'cache-refused')).toEqual([]);
    expect(r.attention.fallbacks).toBe(0);
    expect(r.attention.fraction).toBe(plan.totals.attentionFlopsFraction);
    // computed calls: 3 + 3 of 5 steps on the row layers, 5 + 3 on the column layers; reuses cost nothing
    const [rowsRaw, colsRaw] = [layers[0]!, layers[1]!].map((l) => rawAttentionFlops(layerShape(l))) as [number, number];
    expect(r.attention.flops).toBe(6 * rowsRaw + 8 * colsRaw);
    expect(r.attention.rawFlops).toBe(10 * rowsRaw + 10 * colsRaw);
    expect(r.cache.peakBytes).toBeGreaterThan(0);
    // every kept output had its last reader by the end
    expect(r.cache).toMatchObject({ entries: 0, currentBytes: 0 });
    expect(r.latents.data.every(Number.isFinite)).toBe(true);

    // Independently of the strategies: what the layers returned at each step.
    const calls = model.calls;
    expect(calls).toHaveLength(5);
    for (let s = 0; s < 5; s++) {
      for (let j = 0; j < 4; j++) {
        const m = methods[s]![j]!;
        // a reuse step skips q/k/v but re-projects the kept attention output once; the others compute both
        expect([calls[s]![j]!.qkv, calls[s]![j]!.project], `${s}:${j} ${m}`).toEqual(m === R ? [0, 1] : [1, 1]);
      }
    }
    const out = (s: number, j: number): number[] => Array.from(calls[s]![j]!.output.data);
    // the projection is the same linear map at every step, so a re-projected kept output is the keeping step's output
    expect(out(1, 0)).toEqual(out(0, 0));
    expect(out(3, 0)).toEqual(out(0, 0)); // past the full step 2, which computed something else
    expect(out(2, 0)).not.toEqual(out(0, 0));
    expect(out(3, 2)).toEqual(out(2, 2));
    expect(out(4, 2)).toEqual(out(2, 2));
    expect(out(2, 3)).toEqual(out(1, 3));
    expect(out(4, 3)).toEqual(out(3, 3));
    expect(out(4, 3)).not.toEqual(out(2, 3));
    // a full layer computes afresh every step
    expect(out(1, 1)).not.toEqual(out(0, 1));
    expect(calls[1]![0]!.output.shape).toEqual([16, 6, 8]);
  });

  it('gives exactly what AST gives where every reuse follows its keep directly (projected output vs re-projected attention)', async () => {
    // `full` for `attention-keep` and `ast` for `attention-reuse`: AST returns the projected output of the
    // layer's last computed step, which here is always the keeping step.
    const contiguous = grid([
      [K, R, R, 'full', 'full'],
      ['full', K, R, K, R],
      ['full', 'full', K, R, R],
      [K, R, 'full', K, R],
    ]);
    const astForm = contiguous.map((row) => row.map((m) => (m === K ? 'full' : m === R ? 'ast' : m)));
    const reusePipe = createPipeline(new GridModel(config), { strategies: strategies(), backend });
    const astPipe = createPipeline(new GridModel(config), { strategies: [ast()], backend });
    const layers = reusePipe.layers(request, 4);
    const a = await reusePipe.generate({ ...request, plan: planOf(reusePipe.fingerprint(request), layers, reusePipe.strategies, contiguous) });
    const b = await astPipe.generate({ ...request, plan: planOf(astPipe.fingerprint(request), layers, astPipe.strategies, astForm) });
    expect(Array.from(a.latents.data)).toEqual(Array.from(b.latents.data));
    expect(a.attention).toEqual(b.attention);
    // the same bytes kept: [rows, L, H, D] before the projection, [rows, L, C] after it, C = H·D
    expect(a.cache.peakBytes).toBe(b.cache.peakBytes);
    // and not the raw run
    const raw = await reusePipe.generate(request);
    expect(Array.from(a.latents.data)).not.toEqual(Array.from(raw.latents.data));
  });

  it('falls back to full attention, counted as such, when the budget refuses every kept output', async () => {
    const events: PipelineEvent[] = [];
    const pipe = createPipeline(new GridModel(config), { strategies: strategies(), backend, cacheBudgetBytes: 0, onEvent: (e) => events.push(e) });
    const methods = grid(byLayer);
    const plan = planOf(pipe.fingerprint(request), pipe.layers(request, 4), pipe.strategies, methods);
    const r = await pipe.generate({ ...request, plan });
    const reuses = methods.flat().filter((m) => m === R).length;
    const fallbacks = events.filter((e) => e.type === 'fallback');
    expect(fallbacks).toHaveLength(reuses);
    expect(fallbacks.every((e) => e.method === R && e.to === 'full')).toBe(true);
    expect(events.some((e) => e.type === 'cache-refused' && e.kind === REUSE_CACHE)).toBe(true);
    expect(r.attention).toMatchObject({ fallbacks: reuses, fraction: 1 });
    expect(r.cache.peakBytes).toBe(0);
    // which is the raw model
    const raw = await createPipeline(new GridModel(config), { strategies: strategies(), backend }).generate(request);
    expect(Array.from(r.latents.data)).toEqual(Array.from(raw.latents.data));
    expect(strategySet([...strategies()]).names()).toEqual([K, R]);
  });
});
