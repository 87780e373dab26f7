#!/usr/bin/env node
// Compiles the addon from source with node-gyp (no downloads: Node's headers come from the local
// installation). Runs at install; `--if-stale` (used by `build`) skips the work when the addon is newer
// than every source file.
// Environment: DITFA_KERNELS_CPU_SKIP_BUILD=1 skips the build (the backend then reports itself
// unavailable and the reference backend is used); DITFA_SANITIZE=1 builds with ASan + UBSan.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// `--dir PATH` builds a copy of the sources elsewhere (scripts/sanitize.sh); default: this package.
const dirFlag = process.argv.indexOf('--dir');
const root = dirFlag >= 0 ? resolve(process.argv[dirFlag + 1]) : resolve(dirname(fileURLToPath(import.meta.url)), '..');
const addon = join(root, 'build', 'Release', 'ditfa_kernels_cpu.node');

if (process.env.DITFA_KERNELS_CPU_SKIP_BUILD === '1') {
  process.stderr.write('@ditfa/kernels-cpu: DITFA_KERNELS_CPU_SKIP_BUILD=1, not building the native addon\n');
  process.exit(0);
}
function upToDate() {
  if (!existsSync(addon)) return false;
  const built = statSync(addon).mtimeMs;
  const sources = [join(root, 'binding.gyp'), ...readdirSync(join(root, 'native')).map((f) => join(root, 'native', f))];
  return sources.every((f) => statSync(f).mtimeMs <= built);
}
if (process.argv.includes('--if-stale') && process.env.DITFA_SANITIZE !== '1' && upToDate()) process.exit(0);

function nodeGyp() {
  try {
    return createRequire(fileURLToPath(import.meta.url)).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // npm and pnpm hand their bundled node-gyp to install scripts.
    return process.env.npm_config_node_gyp || null;
  }
}

// Node's headers: an installation that ships them (`<prefix>/include/node`) needs no download.
function nodedir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = resolve(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
}

// The AMX dense set needs -mamx-tile / -mamx-bf16 (GCC 11+, clang 12+); older compilers build a stub.
function compilerTargetsAmx() {
  const cxx = process.env.CXX || 'c++';
  const probe = spawnSync(cxx, ['-x', 'c++', '-std=c++17', '-mamx-tile', '-mamx-bf16', '-fsyntax-only', '-'], {
    input: '#include <immintrin.h>\nvoid f(){ _tile_release(); }\n',
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  return probe.status === 0;
}

const gyp = nodeGyp();
if (!gyp) {
  process.stderr.write('@ditfa/kernels-cpu: node-gyp was not found; install it (npm i -g node-gyp) and run `npm run build:native`\n');
  process.exit(1);
}
const args = [gyp, 'rebuild', `--jobs=${process.env.DITFA_BUILD_JOBS || 'max'}`];
const dir = nodedir();
if (dir) args.push(`--nodedir=${dir}`);
if (process.env.DITFA_SANITIZE === '1') args.push('--ditfa_sanitize=1');
if (!compilerTargetsAmx()) args.push('--ditfa_amx=0');
const result = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
if (result.status !== 0) {
  // A failed build must not fail the whole workspace install: the package still loads, its status says
  // why, resolveBackend() uses the reference backend, and this package's own tests fail loudly.
  process.stderr.write(
    '@ditfa/kernels-cpu: building the native addon failed (see above). The package still loads and reports ' +
      'why; the reference backend is used until `npm run build:native` succeeds (needs a C++17 compiler, make, python3).\n',
  );
  process.exit(process.argv.includes('--strict') ? 1 : 0);
}
