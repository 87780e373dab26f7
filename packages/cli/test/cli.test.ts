import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PLAN_VERSION, serializePlan, type PlanDocument } from '@ditfa/core';
import { decodePng } from '@ditfa/image';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../src/index.js';
import { cli } from './cli-helper.js';


const e = (method: string, loss: number | null, flopsFraction: number) => ({ method, loss, flopsFraction });
const plan: PlanDocument = {
  format: 'ditfa-plan',
  version: PLAN_VERSION,
  fingerprint: {
    model: { architecture: 'dit depth=2', weightsHash: 'sha256:0123456789abcdef0123' },
    latent: { channels: 4, height: 8, width: 8 },
    steps: 3,
    sampler: 'dpm-solver++2m',
    guidance: 4,
    cfgOrder: 'cond-first',
    layers: [
      { id: '0.self', window: { kind: '1d', size: 2 } },
      { id: '1.self', window: { kind: '1d', size: 2 } },
    ],
  },
  threshold: { delta: 0.075, name: 'D3' },
  candidates: ['ast', 'wars+asc', 'wars', 'full+asc'],
  steps: [
    [e('full', null, 1), e('full', null, 1.5)],
    [e('ast', 0.01, 0), e('wars', 0.02, 0.5)],
    [e('wars+asc', 0.03, 0.25), e('full+asc', 0.01, 0.5)],
  ],
  totals: { attentionFlopsFraction: 0.625 },
};

describe('ditfa plan show', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ditfa-cli-'));
  const file = join(dir, 'plan.json');
  writeFileSync(file, serializePlan(plan));

  it('summarises a plan and writes a decodable heatmap', async () => {
    const png = join(dir, 'plan.png');
    const r = await cli('plan', 'show', file, '--png', png);
    expect(r.code).toBe(ExitCode.Ok);
    expect(r.out).toContain('attention FLOPs: 62.5 % of the raw model');
    expect(r.out).toContain('threshold δ = 0.075 (D3)');
    const img = decodePng(readFileSync(png));
    expect(img.width).toBeGreaterThan(34 + 3 * 10);
  });

  it('prints JSON for scripts', async () => {
    const r = await cli('--json', 'plan', 'show', file);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.methods).toEqual({ full: 2, ast: 1, wars: 1, 'wars+asc': 1, 'full+asc': 1 });
    expect(j.totals.attentionFlopsFraction).toBe(0.625);
  });

  it('gives clear errors and exit codes, without stack traces, for bad input', async () => {
    const missing = await cli('plan', 'show', join(dir, 'nope.json'));
    expect(missing.code).toBe(ExitCode.Input);
    expect(missing.err).toMatch(/Cannot read the plan ".*nope\.json": it does not exist/);
    expect(missing.err).not.toMatch(/\n\s+at /);
    const badFile = join(dir, 'bad.json');
    writeFileSync(badFile, JSON.stringify({ ...plan, version: 7 }));
    const bad = await cli('plan', 'show', badFile);
    expect(bad.code).toBe(ExitCode.Input);
    expect(bad.err).toContain('expected format version 2 (or 1, upgraded on load) but received 7');
    const usage = await cli('plan', 'show', file, '--cell', 'zero');
    expect(usage.code).toBe(ExitCode.Usage);
    expect(usage.err).toContain('expected a positive integer for --cell');
    expect((await cli('frobnicate')).code).toBe(ExitCode.Usage);
  });

  it('has help with examples', async () => {
    const r = await cli('plan', 'show', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('$ ditfa plan show plan.json --png plan.png');
  });
});
