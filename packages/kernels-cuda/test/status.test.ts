import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BackendUnavailableError, DitfaError, ErrorCode, backendRegistry, resolveBackend } from '@ditfa/core';
import { describe, expect, it } from 'vitest';
import { CUDA_BACKEND_PRIORITY, createCudaBackend, cudaBackendStatus } from '../src/index.js';
import { PACKAGE_DIR, loadBinding } from '../src/binding.js';

// These run on every machine, GPU or not.

const nvccFound = spawnSync(process.env.NVCC ?? 'nvcc', ['--version']).status === 0;
const libcudaFound =
  spawnSync('sh', ['-c', 'ldconfig -p 2>/dev/null | grep -q "libcuda\\.so"']).status === 0 ||
  ['/usr/lib/x86_64-linux-gnu/libcuda.so.1', '/usr/local/nvidia/lib64/libcuda.so.1', '/usr/lib64/libcuda.so.1'].some((p) => existsSync(p));
const buildSkipped = process.env.DITFA_CUDA_BUILD === '0';

describe('native build', () => {
  it.runIf(nvccFound && !buildSkipped)('produced the addon and libditfa_cuda.so because nvcc is on this machine', () => {
    const status = JSON.parse(readFileSync(join(PACKAGE_DIR, 'build', 'status.json'), 'utf8')) as { built: boolean; archs: string; reason?: string };
    expect(status.reason).toBeUndefined();
    expect(status.built).toBe(true);
    expect(status.archs).toContain('sm_90');
    expect(existsSync(join(PACKAGE_DIR, 'build', 'Release', 'ditfa_cuda_addon.node'))).toBe(true);
    expect(existsSync(join(PACKAGE_DIR, 'build', 'Release', 'libditfa_cuda.so'))).toBe(true);
  });

  it.runIf(nvccFound && !buildSkipped)('compiled every kernel without register spills', () => {
    const status = JSON.parse(readFileSync(join(PACKAGE_DIR, 'build', 'status.json'), 'utf8')) as { spillStoreBytes: number };
    expect(status.spillStoreBytes).toBe(0);
  });

  it.runIf(nvccFound && !buildSkipped)('loads the addon and opens the CUDA library even without a driver', () => {
    const load = loadBinding();
    expect(load.failures).toEqual([]);
    expect(load.binding?.abiVersion).toBe(1);
    expect(load.binding?.libAbiVersion).toBe(1);
  });

  it.runIf(!nvccFound)('records that the build was skipped because nvcc was not found', () => {
    const status = cudaBackendStatus();
    expect(status.available).toBe(false);
    expect(status.reason).toMatch(/^not built: /);
  });
});

describe('status without a usable GPU', () => {
  const status = cudaBackendStatus();

  it('never throws and says whether it is available', () => {
    expect(() => cudaBackendStatus()).not.toThrow();
    expect(typeof status.available).toBe('boolean');
    if (status.available) {
      expect(status.reason).toBeNull();
      expect(status.device?.arch).toMatch(/^sm_\d+$/);
    } else {
      expect(status.reason).toMatch(/^(not built|no CUDA driver found|no CUDA GPU found|CUDA initialisation failed): /);
      expect(status.remedy).toBeTruthy();
      expect(status.failures.length).toBeGreaterThan(0);
    }
  });

  it.runIf(nvccFound && !buildSkipped && !libcudaFound)('reports "no CUDA driver found" when libcuda is absent', () => {
    expect(status.loaded).toBe(true);
    expect(status.available).toBe(false);
    expect(status.reason).toMatch(/^no CUDA driver found: cudaGetDeviceCount: .*cudaErrorInsufficientDriver/);
    expect(status.device).toBeNull();
  });

  it.runIf(!status.available)('makes createCudaBackend throw a coded error with the cause and a remedy', () => {
    let caught: unknown;
    try {
      createCudaBackend();
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DitfaError);
    const e = caught as DitfaError;
    expect(e.code).toBe(ErrorCode.BackendUnavailable);
    expect(e.message).toContain(status.reason!);
    expect(e.message).toContain('Remedy:');
    expect(e.cause).toBeInstanceOf(Error);
  });

  it('registers the backend as "cuda" on import of the index', () => {
    expect(backendRegistry.has('cuda')).toBe(true);
  });

  it.runIf(!status.available)('fails resolution of "cuda" with the reason, listed per backend', async () => {
    const error = await resolveBackend(['cuda']).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BackendUnavailableError);
    expect((error as BackendUnavailableError).failures[0]?.name).toBe('cuda');
    expect((error as Error).message).toContain(status.reason!);
  });
});
