import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_DIR } from '../src/binding.js';
import { run } from './run.js';

// The kernels' own source (native/flash_tc.cuh, native/flash_simt.cuh) compiled for the host with emulated
// __syncthreads, shuffles, cp.async (deferred until its wait), ldmatrix and mma.sync (PTX fragment layouts),
// run on full, cross, 1-D and 2-D window, window+residual and fused calls against a float64 reference
// (native/tc_emulate.cc). This checks the kernel's indexing, pipeline, masks and softmax on a machine
// without a GPU; whether the hardware agrees with the emulated fragment layouts is the device check's job.

const nvcc = process.env.NVCC ?? 'nvcc';
const nvccFound = spawnSync(nvcc, ['--version']).status === 0;

describe('tensor-core and SIMT kernels under host emulation', () => {
  it.runIf(nvccFound)(
    'match the float64 reference for every call kind (bf16, fp16, fp32; D = 40 to 256)',
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ditfa-tc-'));
      try {
        const exe = join(dir, 'tc_emulate');
        const build = await run(nvcc, ['-std=c++20', '-O2', '-Xcompiler', '-pthread', join(PACKAGE_DIR, 'native', 'tc_emulate.cc'), '-o', exe]);
        expect(build.stderr + build.stdout).toBe('');
        expect(build.status).toBe(0);
        const result = await run(exe, []);
        expect(result.stdout.split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([]);
        expect(result.stdout).toMatch(/PASSED: 0 failures/);
        expect(result.status).toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    180_000,
  );
});
