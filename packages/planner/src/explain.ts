import type { PlanDocument } from '@ditfa/core';

/** One-letter codes of the built-in methods for text grids; plugins get `?` unless given. */
export const METHOD_LETTERS: Readonly<Record<string, string>> = Object.freeze({
  full: 'F',
  'full+asc': 'f',
  wars: 'W',
  'wars+asc': 'w',
  ast: 'A',
});

const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;

/**
 * A readable summary of a plan: what it was made for, the threshold, the attention-FLOPs fraction,
 * how often each method was chosen, and a block × step grid of method letters.
 */
export function explain(plan: PlanDocument, letters: Readonly<Record<string, string>> = METHOD_LETTERS): string {
  const fp = plan.fingerprint;
  const T = plan.steps.length;
  const N = plan.numBlocks;
  const counts = new Map<string, number>();
  for (const row of plan.steps) for (const e of row) counts.set(e.method, (counts.get(e.method) ?? 0) + 1);
  const window = fp.window.kind === '1d' ? `1-D, ${fp.window.size} tokens per side` : `2-D, radius ${fp.window.radius} on ${fp.window.rows}×${fp.window.cols}`;
  const latent = `${fp.latent.channels}×${fp.latent.frames ? `${fp.latent.frames}×` : ''}${fp.latent.height}×${fp.latent.width}`;
  const lines = [
    `Plan for ${fp.model.architecture} (${fp.model.weightsHash.slice(0, 19)}…)`,
    `  latent ${latent}, ${fp.steps} steps of ${fp.sampler}, guidance ${fp.guidance ?? 'off'} (${fp.cfgOrder}), window ${window}`,
    `  threshold δ = ${plan.threshold.delta}${plan.threshold.name ? ` (${plan.threshold.name})` : ''}; candidates ${plan.candidates.join(' > ')}`,
    `  attention FLOPs: ${pct(plan.totals.attentionFlopsFraction)} of the raw model` +
      (plan.totals.searchSeconds !== undefined ? `; search ${plan.totals.searchSeconds.toFixed(1)} s` : '') +
      (plan.totals.blockEvaluations !== undefined ? `, ${plan.totals.blockEvaluations} block evaluations` : ''),
    '  methods chosen:',
    ...[...counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([m, c]) => `    ${(letters[m] ?? '?').padEnd(2)}${m.padEnd(12)} ${String(c).padStart(5)}  (${pct(c / (T * N))})`),
    `  grid (rows: blocks 0..${N - 1}; columns: steps 0..${T - 1}):`,
  ];
  for (let b = 0; b < N; b++) {
    let row = '';
    for (let s = 0; s < T; s++) row += letters[plan.steps[s]?.[b]?.method ?? ''] ?? '?';
    lines.push(`    ${String(b).padStart(3)} ${row}`);
  }
  return `${lines.join('\n')}\n`;
}
