import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '@ditfa/checkpoint';
import { parsePlan } from '@ditfa/core';
import { decodePng } from '@ditfa/image';
import { ditConfig, randomCheckpoint } from '@ditfa/models-dit';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../src/index.js';
import { cli } from './cli-helper.js';


/**
 * A small pixel-space DiT shaped like the bundled one (1×32×32, 10 classes, learned sigma) with random
 * weights: the command line's mechanics, files and numbers, in seconds.
 */
const dir = mkdtempSync(join(tmpdir(), 'ditfa-e2e-'));
const modelDir = join(dir, 'model');
beforeAll(() => {
  const config = ditConfig({ inputSize: 32, patchSize: 4, inChannels: 1, hiddenSize: 32, depth: 3, numHeads: 2, mlpRatio: 2, numClasses: 10, learnSigma: true });
  const tensors = randomCheckpoint(config, { seed: 7 });
  mkdirSync(modelDir, { recursive: true });
  writeFileSync(join(modelDir, 'weights.safetensors'), writeSafetensors(tensors));
  writeFileSync(
    join(modelDir, 'config.json'),
    JSON.stringify({ input_size: 32, patch_size: 4, in_channels: 1, hidden_size: 32, depth: 3, num_heads: 2, mlp_ratio: 2, num_classes: 10, learn_sigma: true }),
  );
});

describe('ditfa end to end on a small model', { timeout: 180_000 }, () => {
  const plan = join(dir, 'plan.json');

  it('calibrates a plan, shows it, generates with it and benchmarks it', async () => {
    const cal = await cli('--json', 'calibrate', '--model', modelDir, '--threshold', 'D6', '--steps', '4', '--calib', '2', '--out', plan);
    expect(cal.code, cal.err).toBe(ExitCode.Ok);
    const doc = parsePlan(readFileSync(plan, 'utf8'));
    expect(doc.steps).toHaveLength(4);
    expect(doc.fingerprint.layers.map((l) => l.id)).toEqual(['0.self', '1.self', '2.self']);
    expect(JSON.parse(cal.out).totals.attentionFlopsFraction).toBe(doc.totals.attentionFlopsFraction);

    const png = join(dir, 'plan.png');
    expect((await cli('plan', 'show', plan, '--png', png)).code).toBe(0);
    expect(decodePng(readFileSync(png)).width).toBeGreaterThan(0);

    const grid = join(dir, 'grid.png');
    const gen = await cli('--json', 'generate', '--model', modelDir, '--plan', plan, '--class', '1', '2', '--batch', '3', '--steps', '4', '--out', grid);
    expect(gen.code, gen.err).toBe(0);
    const img = decodePng(readFileSync(grid));
    // 3 samples of 32×32 upscaled 2× in one row with 2 px padding
    expect([img.width, img.height]).toEqual([3 * 64 + 4 * 2, 64 + 2 * 2]);
    expect(JSON.parse(gen.out).samples).toBe(3);

    const b = await cli('--json', 'bench', '--model', modelDir, '--plan', plan, '--batch', '4');
    expect(b.code, b.err).toBe(0);
    const r = JSON.parse(b.out);
    expect(r.raw.attentionFlopsFraction).toBe(1);
    // counted from what ran (the pipeline) and predicted by the planner: the same when nothing fell back
    expect(r.planned.attentionFlopsFraction).toBe(doc.totals.attentionFlopsFraction);
    expect(r.planned.fallbacks).toBe(0);
    expect(r.raw.seconds).toBeGreaterThan(0);
    expect(r.planned.psnrVsRaw).toBeGreaterThan(0);
    expect(r.raw.quality.map((q: { judge: string }) => q.judge)).toEqual(['J1', 'J2']);
    expect(r.raw.quality[0].samples).toBe(4);
    expect(r.raw.quality[1].accuracy).toBeGreaterThanOrEqual(0);
  });

  it('a larger δ never costs more attention FLOPs', async () => {
    const fractions: number[] = [];
    for (const threshold of ['0', 'D1', 'D6', '1000']) {
      const file = join(dir, `plan-${threshold}.json`);
      expect((await cli('calibrate', '--model', modelDir, '--threshold', threshold, '--steps', '3', '--calib', '2', '--out', file)).code).toBe(0);
      fractions.push(parsePlan(readFileSync(file, 'utf8')).totals.attentionFlopsFraction);
    }
    for (let i = 1; i < fractions.length; i++) expect(fractions[i]!).toBeLessThanOrEqual(fractions[i - 1]!);
    expect(fractions[0]).toBe(1);
    expect(fractions[3]).toBeCloseTo(1 / 3, 12);
  });

  it('runs the demo and writes its report, grids and heatmaps', async () => {
    const out = join(dir, 'demo');
    const r = await cli('--json', 'demo', '--model', modelDir, '--no-video', '--levels', 'D1', 'D6', '--steps', '3', '--samples', '4', '--calib', '2', '--out', out);
    expect(r.code, r.err).toBe(0);
    const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
    expect(report.rows.map((row: { level: string }) => row.level)).toEqual(['raw', 'D1', 'D6']);
    expect(report.rows[2].measure.attentionFlopsFraction).toBeLessThanOrEqual(report.rows[1].measure.attentionFlopsFraction);
    expect(report.rows.slice(1).every((row: { planSource: string }) => row.planSource === 'calibrated')).toBe(true);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain('| raw |');
    for (const f of ['raw.png', 'D1.png', 'D6.png', 'D1-plan.png', 'D6-plan.png']) expect(decodePng(readFileSync(join(out, f))).width).toBeGreaterThan(0);
    // a second run reuses the cached plans
    const again = await cli('--json', 'demo', '--model', modelDir, '--no-video', '--levels', 'D6', '--steps', '3', '--samples', '4', '--out', out);
    expect(JSON.parse(again.out).rows[1].planSource).toBe('cached');
  });

  it('searches only the candidate methods and sites it is given, with the loss where it is asked', async () => {
    const file = join(dir, 'plan-candidates.json');
    const cal = await cli('--json', 'calibrate', '--model', modelDir, '--threshold', 'D6', '--steps', '3', '--calib', '2', '--candidates', 'wars', 'ast', '--sites', 'self', '--loss-on', 'prediction', '--out', file);
    expect(cal.code, cal.err).toBe(ExitCode.Ok);
    const doc = parsePlan(readFileSync(file, 'utf8'));
    expect(doc.lossOn).toBe('prediction');
    expect(doc.sites).toBeUndefined(); // 'self' is every site of a DiT: nothing to record
    expect(doc.candidates).toEqual(['ast', 'wars']); // most compressive first
    const used = new Set(doc.steps.flat().map((e) => e.method));
    expect([...used].every((m) => ['full', 'ast', 'wars'].includes(m))).toBe(true);
    expect(used.has('ast')).toBe(true); // D6 on a small model compresses somewhere
  });

  it('fails clearly on bad paths, bad values and plans made for something else', async () => {
    const missing = await cli('generate', '--model', join(dir, 'nope'), '--class', '1', '--out', join(dir, 'x.png'));
    expect(missing.code).toBe(ExitCode.Input);
    expect(missing.err).toContain('does not exist');
    const mismatch = await cli('generate', '--model', modelDir, '--plan', plan, '--class', '1', '--steps', '5', '--out', join(dir, 'x.png'));
    expect(mismatch.code).toBe(ExitCode.PlanMismatch);
    expect(mismatch.err).toContain('steps: the plan was made for 4 but this run uses 5');
    const badClass = await cli('generate', '--model', modelDir, '--class', '12', '--out', join(dir, 'x.png'));
    expect(badClass.code).toBe(ExitCode.Usage);
    expect((await cli('calibrate', '--model', modelDir, '--threshold', 'D9', '--out', join(dir, 'p.json'))).code).toBe(ExitCode.Usage);
    const magic = await cli('calibrate', '--model', modelDir, '--threshold', 'D1', '--steps', '2', '--candidates', 'ast', 'magic', '--out', join(dir, 'p.json'));
    expect(magic.code).toBe(ExitCode.Usage);
    expect(magic.err).toMatch(/Unknown candidate method "magic": this model's pipeline has .*wars/);
    const twice = await cli('calibrate', '--model', modelDir, '--threshold', 'D1', '--steps', '2', '--candidates', 'ast', 'ast', '--out', join(dir, 'p.json'));
    expect(twice.code).toBe(ExitCode.Usage);
    expect(twice.err).toContain('"ast" more than once');
    const site = await cli('calibrate', '--model', modelDir, '--threshold', 'D1', '--steps', '2', '--sites', 'temporal', '--out', join(dir, 'p.json'));
    expect(site.code).toBe(ExitCode.Usage);
    expect(site.err).toContain('sites of this model (self)');
    expect((await cli('calibrate', '--model', modelDir, '--threshold', 'D1', '--loss-on', 'latent', '--out', join(dir, 'p.json'))).code).toBe(ExitCode.Usage);
    expect(existsSync(join(dir, 'p.json'))).toBe(false);
    expect((await cli('generate', '--class', 'x', '--out', join(dir, 'x.png'))).code).toBe(ExitCode.Usage);
    expect(existsSync(join(dir, 'x.png'))).toBe(false);
  });
});
