import type { PlanDocument } from '@ditfa/core';
import { Canvas, encodePng, hexColor, textWidth, type Rgb } from '@ditfa/image';

/** Colours of the built-in methods (plugins get colours from {@link EXTRA_COLOURS} in order). */
export const METHOD_COLOURS: Readonly<Record<string, string>> = Object.freeze({
  full: '#d9d9d9',
  'full+asc': '#9ecae1',
  wars: '#fdae6b',
  'wars+asc': '#e6550d',
  ast: '#31a354',
});
const EXTRA_COLOURS = ['#756bb1', '#e7ba52', '#843c39', '#17becf', '#bcbd22'];

export interface HeatmapOptions {
  /** Pixels per cell (default 10). */
  readonly cell?: number;
  readonly colours?: Readonly<Record<string, string>>;
}

/**
 * The plan as a layer × step heatmap like the paper's Figure 5: one row per attention layer in model
 * order (labelled with its id, `3.self`, `0.spatial`, `0.temporal`, …; layer 0 at the top), one column
 * per denoising step, one colour per method, with a legend and the totals.
 */
export function renderPlanHeatmap(plan: PlanDocument, options: HeatmapOptions = {}): Canvas {
  const cell = options.cell ?? 10;
  const T = plan.steps.length;
  const layers = plan.fingerprint.layers;
  const N = layers.length;
  const labelEvery = N <= 40 ? 1 : 5;
  const used = [...new Set(plan.steps.flat().map((e) => e.method))];
  const order = [...Object.keys(METHOD_COLOURS), ...used.filter((m) => !(m in METHOD_COLOURS)).sort()].filter((m) => used.includes(m));
  let extra = 0;
  const colour = new Map<string, Rgb>();
  for (const m of order) colour.set(m, hexColor(options.colours?.[m] ?? METHOD_COLOURS[m] ?? EXTRA_COLOURS[extra++ % EXTRA_COLOURS.length]!));

  const left = Math.max(34, 6 + Math.max(...layers.map((l) => textWidth(l.id))));
  const top = 22;
  const gridW = T * cell;
  const gridH = N * cell;
  const title = `${plan.threshold.name ?? `delta ${plan.threshold.delta}`}: attention flops ${(100 * plan.totals.attentionFlopsFraction).toFixed(1)}%`;
  const legendRows = order.length;
  const width = Math.max(left + gridW + 8, left + textWidth(title) + 8, left + 14 + Math.max(...order.map((m) => textWidth(m))) + 8);
  const height = top + gridH + 18 + legendRows * 12 + 6;
  const canvas = new Canvas(width, height);
  canvas.text(left, 4, title);
  canvas.text(2, top - 9, 'layer');
  canvas.text(left, top + gridH + 4, 'step 0');
  const lastLabel = `${T - 1}`;
  canvas.text(left + gridW - textWidth(lastLabel), top + gridH + 4, lastLabel);
  for (let b = 0; b < N; b++) {
    if (b % labelEvery === 0) {
      const label = layers[b]!.id;
      if (cell >= 8) canvas.text(left - 3 - textWidth(label), top + b * cell + Math.max(0, (cell - 7) >> 1), label);
    }
    for (let s = 0; s < T; s++) canvas.fillRect(left + s * cell, top + b * cell, cell - (cell > 4 ? 1 : 0), cell - (cell > 4 ? 1 : 0), colour.get(plan.steps[s]![b]!.method)!);
  }
  order.forEach((m, i) => {
    const y = top + gridH + 16 + i * 12;
    canvas.fillRect(left, y, 10, 9, colour.get(m)!);
    canvas.text(left + 14, y + 1, m);
  });
  return canvas;
}

/** {@link renderPlanHeatmap} encoded as PNG bytes. */
export function planHeatmapPng(plan: PlanDocument, options?: HeatmapOptions): Buffer {
  return encodePng(renderPlanHeatmap(plan, options));
}
