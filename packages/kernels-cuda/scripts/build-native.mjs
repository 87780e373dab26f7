#!/usr/bin/env node
// Builds @ditfa/kernels-cuda's native parts from source; never downloads anything and never fails the
// install. Steps: (1) find nvcc; (2) node-gyp builds the addon (plain C++, no CUDA); (3) nvcc builds
// libditfa_cuda.so for sm_90 machine code plus compute_80 PTX (JIT-compiled by the driver on other GPUs of
// compute capability >= 8.0), linked against the
// static CUDA runtime so it loads without a driver. The outcome goes to build/status.json, which the
// package reports at run time.
//
// Flags: --if-missing  skip when the outputs exist and are newer than native/ (used by `build`).
// Env:   DITFA_CUDA_BUILD=0 skips the build; NVCC=/path/to/nvcc picks the compiler; DITFA_CUDA_ARCHS="90"
//        lists the machine-code architectures and DITFA_CUDA_PTX="80" the PTX one ("" for none).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(pkg, 'build', 'Release');
const addon = join(out, 'ditfa_cuda_addon.node');
const lib = join(out, 'libditfa_cuda.so');
const statusFile = join(pkg, 'build', 'status.json');
const quiet = process.env.npm_lifecycle_event === 'install';

function log(line) {
  if (!quiet) process.stderr.write(`[kernels-cuda] ${line}\n`);
}

function writeStatus(status) {
  mkdirSync(join(pkg, 'build'), { recursive: true });
  writeFileSync(statusFile, `${JSON.stringify({ ...status, at: new Date().toISOString() }, null, 2)}\n`);
}

function newestSource() {
  let t = 0;
  for (const f of readdirSync(join(pkg, 'native'))) t = Math.max(t, statSync(join(pkg, 'native', f)).mtimeMs);
  return Math.max(t, statSync(join(pkg, 'binding.gyp')).mtimeMs, statSync(fileURLToPath(import.meta.url)).mtimeMs);
}

function findNvcc() {
  const candidates = [process.env.NVCC, 'nvcc', process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'bin', 'nvcc'), '/usr/local/cuda/bin/nvcc'];
  for (const c of candidates) {
    if (!c) continue;
    const r = spawnSync(c, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) {
      const m = /release ([0-9.]+)/.exec(r.stdout);
      return { path: c, version: m?.[1] ?? 'unknown' };
    }
  }
  return null;
}

function run(cmd, args, what) {
  log(`${what}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: pkg, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) {
    const text = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${what} failed (exit ${r.status}):\n${text}`);
  }
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

function main() {
  if (process.env.DITFA_CUDA_BUILD === '0') {
    writeStatus({ built: false, reason: 'skipped: DITFA_CUDA_BUILD=0' });
    log('skipped: DITFA_CUDA_BUILD=0');
    return;
  }
  const nvcc = findNvcc();
  if (!nvcc) {
    writeStatus({ built: false, reason: 'skipped: nvcc not found (set NVCC or CUDA_HOME, or put nvcc on PATH, then run `pnpm --filter @ditfa/kernels-cuda build:native`)' });
    return;
  }
  if (process.argv.includes('--if-missing') && existsSync(addon) && existsSync(lib) && existsSync(statusFile)) {
    const built = Math.min(statSync(addon).mtimeMs, statSync(lib).mtimeMs);
    if (built >= newestSource()) return;
  }
  const started = Date.now();
  const archs = (process.env.DITFA_CUDA_ARCHS ?? '90').split(',').map((s) => s.trim()).filter(Boolean);
  const ptx = (process.env.DITFA_CUDA_PTX ?? '80').trim();
  if (!archs.every((a) => /^[0-9]{2,3}a?$/.test(a)) || (ptx !== '' && !/^[0-9]{2,3}$/.test(ptx)) || (archs.length === 0 && ptx === '')) {
    writeStatus({
      built: false,
      reason: `invalid DITFA_CUDA_ARCHS ${JSON.stringify(process.env.DITFA_CUDA_ARCHS)} / DITFA_CUDA_PTX ${JSON.stringify(process.env.DITFA_CUDA_PTX)} (expected e.g. "90" and "80")`,
    });
    return;
  }
  try {
    // 1. The addon, through node-gyp (headers from the local Node installation when present: no download).
    const require = createRequire(import.meta.url);
    const gyp = join(dirname(require.resolve('node-gyp/package.json')), 'bin', 'node-gyp.js');
    const nodeDir = dirname(dirname(process.execPath));
    const localHeaders = [join(nodeDir, 'include', 'node', 'common.gypi'), '/usr/include/node/common.gypi'].find((p) => existsSync(p));
    const gypArgs = [gyp, 'rebuild', '--release', '-j', '2'];
    if (localHeaders) gypArgs.push(`--nodedir=${dirname(dirname(dirname(localHeaders)))}`);
    run(process.execPath, gypArgs, 'node-gyp');

    // 2. The CUDA library: machine code for each arch, PTX for the fallback.
    const gencode = archs.flatMap((a) => ['-gencode', `arch=compute_${a},code=sm_${a}`]);
    if (ptx !== '') gencode.push('-gencode', `arch=compute_${ptx},code=compute_${ptx}`);
    const archText = [...archs.map((a) => `sm_${a}`), ...(ptx !== '' ? [`compute_${ptx}`] : [])].join(',');
    mkdirSync(out, { recursive: true });
    const report = run(
      nvcc.path,
      [
        '-O3',
        '-std=c++17',
        '-shared',
        '-Xcompiler',
        '-fPIC,-fvisibility=hidden',
        '-cudart',
        'static',
        '-Xptxas',
        '-v',
        ...gencode,
        `-DDITFA_CUDA_ARCHS="${archText}"`,
        'native/api.cu',
        '-o',
        lib,
      ],
      'nvcc',
    );
    const spills = [...report.matchAll(/(\d+) bytes spill stores/g)].reduce((a, m) => a + Number(m[1]), 0);
    writeFileSync(join(pkg, 'build', 'ptxas.txt'), report);
    writeStatus({ built: true, nvcc: nvcc.path, nvccVersion: nvcc.version, archs: archText, spillStoreBytes: spills, seconds: (Date.now() - started) / 1000 });
    log(`built ${archText} with nvcc ${nvcc.version} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } catch (error) {
    writeStatus({ built: false, nvcc: nvcc.path, nvccVersion: nvcc.version, reason: `build failed: ${error instanceof Error ? error.message : String(error)}` });
    log(`build failed; the package will report it as unavailable.\n${error instanceof Error ? error.message : String(error)}`);
  }
}

main();
