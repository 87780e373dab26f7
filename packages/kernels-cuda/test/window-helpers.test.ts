import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_DIR } from '../src/binding.js';
import { run } from './run.js';

// The kernels choose which key tiles to visit and which to mask with three helpers in
// native/kernel_common.cuh. They are host-callable, so their logic is checked here on any machine with
// nvcc, exhaustively over small shapes, without a GPU (native/window_check.cu).

const nvcc = process.env.NVCC ?? 'nvcc';
const nvccFound = spawnSync(nvcc, ['--version']).status === 0;

describe('window tile selection (host check of the kernels\u2019 helpers)', () => {
  it.runIf(nvccFound)('never skips an allowed key and never calls a partly masked tile full', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ditfa-window-'));
    try {
      const exe = join(dir, 'window_check');
      const build = await run(nvcc, ['-std=c++17', '-O1', join(PACKAGE_DIR, 'native', 'window_check.cu'), '-o', exe]);
      expect(build.stderr + build.stdout).toBe('');
      expect(build.status).toBe(0);
      const result = await run(exe, []);
      expect(result.stdout).toMatch(/\d+ window cases, 0 failures/);
      expect(result.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
