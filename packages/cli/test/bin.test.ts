import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '@ditfa/checkpoint';
import { ditConfig, randomCheckpoint } from '@ditfa/models-dit';
import { describe, expect, it } from 'vitest';

// The `ditfa` bin is a committed shim (so `pnpm install` links it on a fresh clone, before any build)
// that runs dist/bin.js, or says how to build it.
const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const shim = join(pkg, 'bin', 'ditfa.js');
const manifest = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { bin: Record<string, string>; files: string[] };

describe('the ditfa bin', () => {
  it('is the committed, executable shim, shipped in the package', () => {
    expect(manifest.bin).toEqual({ ditfa: './bin/ditfa.js' });
    expect(manifest.files).toContain('bin');
    expect(statSync(shim).mode & 0o111).not.toBe(0);
    expect(readFileSync(shim, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it.runIf(existsSync(join(pkg, 'dist', 'bin.js')))('runs the built CLI', () => {
    const run = spawnSync(process.execPath, [shim, '--help'], { encoding: 'utf8' });
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^Usage: ditfa/);
  });

  it('says how to build it when dist/ is missing, and fails', () => {
    const copy = mkdtempSync(join(tmpdir(), 'ditfa-bin-'));
    mkdirSync(join(copy, 'bin'));
    copyFileSync(shim, join(copy, 'bin', 'ditfa.js'));
    const run = spawnSync(process.execPath, [join(copy, 'bin', 'ditfa.js'), '--help'], { encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`${join(copy, 'dist', 'bin.js')} is missing`);
    expect(run.stderr).toContain('pnpm build');
  });
});

describe.runIf(existsSync(join(pkg, 'dist', 'bin.js')))('when the native kernels did not build', () => {
  it('warns once on stderr, with the reason and the remedy, and still generates on the reference backend', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ditfa-nokernels-'));
    const config = ditConfig({ inputSize: 8, patchSize: 2, inChannels: 1, hiddenSize: 16, depth: 2, numHeads: 2, mlpRatio: 2, numClasses: 4, learnSigma: true });
    writeFileSync(join(dir, 'weights.safetensors'), writeSafetensors(randomCheckpoint(config, { seed: 3 })));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ input_size: 8, patch_size: 2, in_channels: 1, hidden_size: 16, depth: 2, num_heads: 2, mlp_ratio: 2, num_classes: 4, learn_sigma: true }));
    const run = spawnSync(process.execPath, [shim, '--json', 'generate', '--model', dir, '--class', '1', '--steps', '3', '--out', join(dir, 'out.png')], {
      encoding: 'utf8',
      // what a failed install leaves: no addon file
      env: { ...process.env, DITFA_KERNELS_CPU_ADDON: join(dir, 'missing.node') },
    });
    expect(run.status, run.stderr).toBe(0);
    const warnings = run.stderr.split('\n').filter((l) => l.startsWith('ditfa: warning:'));
    expect(warnings).toEqual(['ditfa: warning: Using the "reference" kernel backend because:']);
    expect(run.stderr).toContain(`- cpu: `);
    expect(run.stderr).toContain(`${join(dir, 'missing.node')} does not exist`);
    expect(run.stderr).toContain('npm run build:native');
    expect(JSON.parse(run.stdout).samples).toBe(1);
  });
});
