import type { PlannerEvent } from '@ditfa/planner';
import { planHeatmapPng, renderPlanHeatmap, searchPlan } from '@ditfa/planner';
import { asc } from '@ditfa/strategy-asc';
import { ast } from '@ditfa/strategy-ast';
import { wars } from '@ditfa/strategy-wars';
import { decodePng } from '@ditfa/image';
import { describe, expect, it } from 'vitest';
import { createPipeline, loadModel, randomCheckpoint } from '../src/index.js';
import { maxRelError } from './fixtures.js';
import { captions, tiny } from './helpers.js';

describe('the planner on an Open-Sora model (every site calibrated)', () => {
  for (const version of ['stdit3', 'stdit2'] as const) {
    it(`${version}: searchPlan tries every applicable method on spatial, temporal and cross layers; the plan reproduces the calibration run`, async () => {
      const config = tiny(version);
      const model = await loadModel(randomCheckpoint(config, { seed: 12 }), { config, threads: 1 });
      const pipe = createPipeline(model, { strategies: [wars(), ast(), ...asc()] });
      try {
        const options = { captions: captions(2), mask: [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1], frames: 17, height: 48, width: 64, seed: 3, steps: 4, guidanceScale: 7, sampler: version === 'stdit3' ? ('rflow' as const) : ('iddpm' as const) };
        const target = pipe.calibrationTarget(options);
        const events: PlannerEvent[] = [];
        // every site named, cross-attention included (the default searches the self-attention sites only)
        const everySite = [...new Set(target.layers.map((l) => l.site))];
        const plan = await searchPlan(target, { threshold: 'D6', sites: everySite, onProgress: (e) => events.push(e) });
        expect(plan.sites).toBeUndefined();
        const ids = plan.fingerprint.layers.map((l) => l.id);
        expect(ids).toEqual(version === 'stdit3' ? ['0.spatial', '0.spatial-cross', '0.temporal', '0.temporal-cross', '1.spatial', '1.spatial-cross', '1.temporal', '1.temporal-cross'] : ['0.spatial', '0.temporal', '0.cross', '1.spatial', '1.temporal', '1.cross']);
        // candidates per site: window methods only where the layer has a window (spatial by default)
        const tried = new Map<string, Set<string>>();
        for (const e of events) if (e.type === 'candidate') tried.set(ids[e.layer]!, new Set([...(tried.get(ids[e.layer]!) ?? []), e.method]));
        expect(tried.size).toBe(ids.length);
        for (const [id, methods] of tried) {
          const allowed = id.endsWith('spatial') ? ['ast', 'wars+asc', 'wars', 'full+asc'] : ['ast', 'full+asc'];
          expect([...methods].every((m) => allowed.includes(m)), id).toBe(true);
          // at least the first candidate (AST) was measured on every layer
          expect(methods.has('ast'), id).toBe(true);
        }
        expect(plan.totals.attentionFlopsFraction).toBeLessThanOrEqual(1);
        // the heatmap has a row per layer: spatial, temporal and cross rows, labelled with their ids
        const cell = 10;
        const canvas = renderPlanHeatmap(plan, { cell });
        expect(canvas.height).toBeGreaterThan(ids.length * cell);
        expect(decodePng(planHeatmapPng(plan)).width).toBe(canvas.width);
        // a generation under the plan with the same options reproduces the calibration generation
        const calibrated = target.latents()!;
        const replay = await pipe.generate({ ...options, plan, images: false });
        expect(maxRelError(replay.latents.data, calibrated.data)).toBe(0);
        expect(replay.attention.fraction).toBeCloseTo(plan.totals.attentionFlopsFraction, 12);
        // by default the cross-attention layers stay at full attention (the paper compresses self-attention only)
        const self = await searchPlan(pipe.calibrationTarget(options), { threshold: 'D6' });
        expect(self.sites).toEqual(['spatial', 'temporal']);
        const crossLayers = ids.flatMap((id, i) => (id.endsWith('cross') ? [i] : []));
        expect(crossLayers.length).toBe(version === 'stdit3' ? 4 : 2);
        expect(self.steps.every((row) => crossLayers.every((i) => row[i]!.method === 'full'))).toBe(true);
        expect(self.steps.slice(1).some((row) => row.some((e) => e.method !== 'full'))).toBe(true);
      } finally {
        await pipe.dispose();
      }
    }, 180_000);
  }
});
