import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { addonPath } from '../src/binding.js';

// The dispatch is only real if no AVX2 / AVX-512 instruction leaks out of the kernel files compiled for
// them: every function of the addon that touches a ymm or zmm register must belong to the avx2 / avx512
// namespaces (a shared inline function compiled with -mavx512f and picked by the linker would break
// the scalar path on older CPUs).
const path = addonPath();
const objdump = spawnSync('objdump', ['--version']).status === 0;

describe.skipIf(!objdump || !existsSync(path) || process.arch !== 'x64')('instruction-set isolation', () => {
  it('only the avx2 / avx512 kernel namespaces use ymm registers, and only the avx512 ones AVX-512 registers', () => {
    const dis = spawnSync('objdump', ['-d', '--no-show-raw-insn', path], { encoding: 'utf8', maxBuffer: 1 << 28 }).stdout;
    const ymm = new Set<string>();
    const zmm = new Set<string>();
    let fn = '';
    for (const line of dis.split('\n')) {
      const head = /^[0-9a-f]+ <(.+)>:$/.exec(line);
      if (head) {
        fn = head[1]!;
        continue;
      }
      // zmm registers, EVEX-only xmm16..31 and opmask registers all mean AVX-512.
      if (/%zmm|%[xy]mm(1[6-9]|2\d|3[01])\b|%k[0-7]\b/.test(line)) zmm.add(fn);
      if (line.includes('%ymm')) ymm.add(fn);
    }
    expect(zmm.size).toBeGreaterThan(0);
    expect([...zmm].filter((f) => !f.includes('isa_avx512'))).toEqual([]);
    expect([...ymm].filter((f) => !f.includes('isa_avx512') && !f.includes('isa_avx2'))).toEqual([]);
  });
});
