import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The root README's "A plan by hand" example, run as written: the code block after the
 * `<!-- example: plan-by-hand … -->` marker is compiled and run with the repository as working directory,
 * then checked against the FLOP model worked out by hand and against a generation under the plan.
 */
const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const repo = path.resolve(pkg, '../..');
const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');
const present = existsSync(path.join(repo, 'models/fashion-dit/weights.safetensors')) && existsSync(path.join(pkg, 'dist/index.js'));

function exampleAfter(marker: string, text: string): string {
  const at = text.indexOf(`<!-- example: ${marker}`);
  if (at < 0) throw new Error(`README.md has no <!-- example: ${marker} … --> marker`);
  const m = /```ts\n([\s\S]*?)```/.exec(text.slice(at));
  if (!m) throw new Error(`README.md has no ts code block after the ${marker} marker`);
  return m[1]!;
}

describe.skipIf(!present)('README: a plan by hand for the bundled model', () => {
  it('builds the plan in the example, which a generation then runs exactly', { timeout: 120_000 }, () => {
    const example = exampleAfter('plan-by-hand', readme);
    // the three lines the README promises: options, and the builder call
    expect(example.slice(example.indexOf('const options')).trim().split('\n')).toHaveLength(3);
    const check = `
const result = await pipe.generate({ ...options, plan });
process.stdout.write(JSON.stringify({ plan, attention: result.attention }));
await pipe.dispose();
`;
    const js = ts.transpileModule(example + check, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    // inside the package, so that its imports resolve as a user's would (its own name included)
    const dir = mkdtempSync(path.join(pkg, '.readme-'));
    try {
      writeFileSync(path.join(dir, 'example.mjs'), js);
      const run = spawnSync(process.execPath, [path.join(dir, 'example.mjs')], { cwd: repo, encoding: 'utf8' });
      expect(run.status, run.stderr).toBe(0);
      const { plan, attention } = JSON.parse(run.stdout) as {
        plan: { version: number; steps: { method: string; flopsFraction: number }[][]; fingerprint: { steps: number; layers: { id: string }[] }; totals: { attentionFlopsFraction: number } };
        attention: { fraction: number; fallbacks: number };
      };
      expect(plan.version).toBe(2);
      expect(plan.fingerprint.layers.map((l) => l.id)).toEqual(['0.self', '1.self', '2.self', '3.self', '4.self', '5.self']);
      expect(plan.steps.map((row) => row.map((e) => e.method).join(' '))).toEqual(
        Array.from({ length: 10 }, (_, s) => (s % 3 === 0 ? 'full full full full full full' : 'full wars wars wars wars wars')),
      );
      // By hand: 256 tokens, window L/8 = 32 per side, so a window admits 256·65 − 32·33 = 15584 of
      // 65536 pairs. Block 0 is full at all 10 steps; blocks 1–5 are full with the residual refresh
      // (1 + f) at steps 0, 3, 6, plain full at step 9 (nothing reads it later) and WA-RS (f) six times.
      const f = (256 * 65 - 32 * 33) / (256 * 256);
      expect(plan.steps[1]![1]!.flopsFraction).toBeCloseTo(f, 12);
      expect(plan.steps[0]![1]!.flopsFraction).toBeCloseTo(1 + f, 12);
      expect(plan.steps[9]![1]!.flopsFraction).toBe(1);
      expect(plan.totals.attentionFlopsFraction).toBeCloseTo((10 + 5 * (3 * (1 + f) + 1 + 6 * f)) / 60, 12);
      // what ran is what the plan says
      expect(attention.fallbacks).toBe(0);
      expect(attention.fraction).toBe(plan.totals.attentionFlopsFraction);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
