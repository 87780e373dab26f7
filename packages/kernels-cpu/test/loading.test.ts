import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Loading never throws at import: with the addon missing, the status says why, resolveBackend() falls
// back to the reference backend, and only an explicit request for 'cpu' fails, with cause and remedy.
// Runs the built entry (dist) in a child process so the addon path can point at nothing.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'dist', 'index.js');

const script = `
const m = await import(${JSON.stringify(entry)});
const core = await import('@ditfa/core');
const status = m.cpuBackendStatus();
const fallback = await core.resolveBackend();
let explicit;
try { await core.resolveBackend(['cpu']); } catch (e) { explicit = { code: e.code, message: e.message }; }
let direct;
try { m.createCpuBackend(); } catch (e) { direct = { code: e.code, message: e.message }; }
process.stdout.write(JSON.stringify({ status, fallback: fallback.name, explicit, direct, names: core.backendRegistry.names() }));
`;

describe.skipIf(!existsSync(entry))('loading without the addon', () => {
  it('imports cleanly, reports why, and falls back to the reference backend', () => {
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, DITFA_KERNELS_CPU_ADDON: join(root, 'build', 'does-not-exist.node') },
      encoding: 'utf8',
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const out = JSON.parse(result.stdout) as {
      status: { available: boolean; errors: string[]; remedy: string };
      fallback: string;
      explicit: { code: string; message: string };
      direct: { code: string; message: string };
      names: string[];
    };
    expect(out.status.available).toBe(false);
    expect(out.status.errors.join('\n')).toMatch(/does-not-exist\.node does not exist/);
    expect(out.status.remedy).toMatch(/build:native/);
    expect(out.names).toEqual(['cpu', 'reference']);
    expect(out.fallback).toBe('reference');
    expect(out.explicit.code).toBe('ERR_DITFA_BACKEND_UNAVAILABLE');
    expect(out.explicit.message).toMatch(/does not exist/);
    expect(out.explicit.message).toMatch(/build:native/);
    expect(out.direct.code).toBe('ERR_DITFA_BACKEND_UNAVAILABLE');
  });

  it('reports a file that is not a loadable addon', () => {
    const fake = join(mkdtempSync(join(tmpdir(), 'ditfa-kernels-cpu-')), 'broken.node');
    writeFileSync(fake, 'not an ELF file');
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, DITFA_KERNELS_CPU_ADDON: fake },
      encoding: 'utf8',
    });
    expect(result.status).toBe(0);
    const out = JSON.parse(result.stdout) as { status: { available: boolean; errors: string[] }; fallback: string };
    expect(out.status.available).toBe(false);
    expect(out.status.errors[0]).toMatch(/loading .*broken\.node failed: /);
    expect(out.fallback).toBe('reference');
  });

  it('with the addon present, resolveBackend() picks the native backend', () => {
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    const out = JSON.parse(result.stdout) as { status: { available: boolean }; fallback: string };
    if (process.env['DITFA_KERNELS_CPU_SKIP_BUILD'] === '1') return;
    expect(out.status.available).toBe(true);
    expect(out.fallback).toBe('cpu');
  });
});
