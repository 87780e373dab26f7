import { writeFile } from 'node:fs/promises';
import { explain, planHeatmapPng } from '@ditfa/planner';
import { readPlan } from '../io.js';
import type { Output } from '../output.js';

export interface PlanShowOptions {
  readonly png?: string;
  readonly cell?: number;
  readonly methods?: readonly string[];
}

/** `ditfa plan show plan.json [--png heatmap.png]`: the summary and the Figure-5-style heatmap. */
export async function planShow(file: string, options: PlanShowOptions, out: Output): Promise<void> {
  const plan = await readPlan(file, options.methods ? { methods: options.methods } : {});
  if (options.png) await writeFile(options.png, planHeatmapPng(plan, options.cell ? { cell: options.cell } : {}));
  const counts: Record<string, number> = {};
  for (const row of plan.steps) for (const e of row) counts[e.method] = (counts[e.method] ?? 0) + 1;
  out.result(
    {
      file,
      fingerprint: plan.fingerprint,
      threshold: plan.threshold,
      candidates: plan.candidates,
      steps: plan.steps.length,
      layers: plan.fingerprint.layers.map((l) => l.id),
      methods: counts,
      totals: plan.totals,
      ...(options.png ? { heatmap: options.png } : {}),
    },
    () => explain(plan) + (options.png ? `heatmap written to ${options.png}\n` : ''),
  );
}
