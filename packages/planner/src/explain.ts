import type { PlanDocument, WindowSpec } from '@ditfa/core';

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
 * how often each method was chosen, and a layer × step grid of method letters (one row per attention layer).
 */
export function explain(plan: PlanDocument, letters: Readonly<Record<string, string>> = METHOD_LETTERS): string {
  const fp = plan.fingerprint;
  const T = plan.steps.length;
  const layers = fp.layers;
  const N = layers.length;
  const counts = new Map<string, number>();
  for (const row of plan.steps) for (const e of row) counts.set(e.method, (counts.get(e.method) ?? 0) + 1);
  const latent = `${fp.latent.channels}×${fp.latent.frames ? `${fp.latent.frames}×` : ''}${fp.latent.height}×${fp.latent.width}`;
  const lines = [
    `Plan for ${fp.model.architecture} (${fp.model.weightsHash.slice(0, 19)}…)`,
    `  latent ${latent}, ${fp.steps} steps of ${fp.sampler}, guidance ${fp.guidance ?? 'off'} (${fp.cfgOrder}), ${N} attention layers`,
    `  threshold δ = ${plan.threshold.delta}${plan.threshold.name ? ` (${plan.threshold.name})` : ''}; candidates ${plan.candidates.join(' > ')}` +
      `; loss on the ${plan.lossOn === 'prediction' ? 'guided prediction' : 'model output'}; searched ${plan.sites ? `sites ${plan.sites.join(', ')} (others full)` : 'every site'}`,
    `  attention FLOPs: ${pct(plan.totals.attentionFlopsFraction)} of the raw model` +
      (plan.totals.searchSeconds !== undefined ? `; search ${plan.totals.searchSeconds.toFixed(1)} s` : '') +
      (plan.totals.layerEvaluations !== undefined ? `, ${plan.totals.layerEvaluations} layer evaluations` : ''),
    '  methods chosen:',
    ...[...counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([m, c]) => `    ${(letters[m] ?? '?').padEnd(2)}${m.padEnd(12)} ${String(c).padStart(5)}  (${pct(c / (T * N))})`),
    '  windows:',
    ...windowLines(layers),
    `  grid (rows: attention layers in model order; columns: steps 0..${T - 1}):`,
  ];
  const width = Math.max(...layers.map((l) => l.id.length));
  for (let j = 0; j < N; j++) {
    let row = '';
    for (let s = 0; s < T; s++) row += letters[plan.steps[s]?.[j]?.method ?? ''] ?? '?';
    lines.push(`    ${layers[j]!.id.padStart(width)} ${row}`);
  }
  return `${lines.join('\n')}\n`;
}

function describeWindow(w: WindowSpec | null): string {
  if (w === null) return 'none';
  return w.kind === '1d' ? `1-D, ${w.size} tokens per side` : `2-D, radius ${w.radius} on ${w.rows}×${w.cols}`;
}

/** One line per distinct window, naming the sites that use it (`self: 1-D, 32 tokens per side`). */
function windowLines(layers: PlanDocument['fingerprint']['layers']): string[] {
  const bySite = new Map<string, Set<string>>();
  for (const l of layers) {
    const site = l.id.slice(l.id.indexOf('.') + 1);
    const w = describeWindow(l.window);
    if (!bySite.has(site)) bySite.set(site, new Set());
    bySite.get(site)!.add(w);
  }
  return [...bySite.entries()].map(([site, ws]) => `    ${site}: ${[...ws].join('; ')}`);
}
