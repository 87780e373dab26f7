import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { bundledModelDir, bundledModelsRoot } from '../src/session.js';

function modelsFolder(root: string): string {
  mkdirSync(join(root, 'fashion-dit'), { recursive: true });
  writeFileSync(join(root, 'fashion-dit', 'config.json'), '{}');
  return root;
}

describe('where the bundled model is found', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ditfa-bundled-'));

  it('takes the first candidate folder that holds fashion-dit/config.json', () => {
    const repo = join(tmp, 'repo', 'models');
    const packaged = modelsFolder(join(tmp, 'pkg', 'models'));
    expect(bundledModelsRoot([repo, packaged])).toBe(packaged); // no repository copy: the package's own
    modelsFolder(repo);
    expect(bundledModelsRoot([repo, packaged])).toBe(repo); // the repository's copy is never shadowed
  });

  it('is null when no candidate holds the model (a folder without config.json does not count)', () => {
    const empty = join(tmp, 'empty', 'models');
    mkdirSync(join(empty, 'fashion-dit'), { recursive: true });
    expect(bundledModelsRoot([empty, join(tmp, 'missing')])).toBeNull();
  });

  it('finds the repository models/fashion-dit inside the monorepo', () => {
    const repoModel = resolve(__dirname, '../../../models/fashion-dit');
    if (!existsSync(join(repoModel, 'config.json'))) return;
    expect(bundledModelDir()).toBe(repoModel);
  });
});

describe('npm pack', () => {
  const repoModels = resolve(__dirname, '../../../models');
  it.skipIf(!existsSync(join(repoModels, 'fashion-dit', 'weights.safetensors')))(
    'ships the bundled model, its plans and both judges inside the package, and cleans up after itself',
    () => {
      const pkg = resolve(__dirname, '..');
      const r = spawnSync('npm', ['pack', '--dry-run', '--json'], { cwd: pkg, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const listing = JSON.parse(r.stdout.slice(r.stdout.indexOf('\n[') + 1)) as { files: { path: string }[] }[];
      const files = listing[0]!.files.map((f) => f.path);
      for (const f of ['models/fashion-dit/weights.safetensors', 'models/fashion-dit/config.json', 'models/fashion-classifier.onnx', 'models/fashion-classifier-stats.safetensors', 'models/fashion-judge2.onnx', 'models/fashion-judge2-stats.safetensors', 'dist/bin.js']) {
        expect(files).toContain(f);
      }
      expect(files.some((f) => f.startsWith('models/fashion-dit/plans/'))).toBe(true);
      expect(existsSync(join(pkg, 'models'))).toBe(false); // postpack removed the copy
    },
    60_000,
  );
});
