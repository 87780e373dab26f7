#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer (a copy, in a temporary folder, so the
# regular build is untouched) and runs the package's tests against it. Any sanitizer report aborts the
# test process, so the script fails. CI: `pnpm --filter @ditfa/kernels-cpu test:sanitize`.
set -euo pipefail
pkg="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/ditfa-kernels-cpu-asan.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cp -r "$pkg/native" "$pkg/binding.gyp" "$work/"
ln -s "$pkg/node_modules" "$work/node_modules"
DITFA_SANITIZE=1 node "$pkg/scripts/build-native.mjs" --strict --dir "$work" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

addon="$work/build/Release/ditfa_kernels_cpu.node"
symbols="$(nm -D "$addon")"
if ! grep -q '__asan_report' <<<"$symbols" || ! grep -q '__ubsan_handle' <<<"$symbols"; then
  echo "sanitize: $addon is not instrumented with ASan + UBSan" >&2
  exit 1
fi
libasan="$(${CXX:-g++} -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
  echo "sanitize: libasan.so not found next to ${CXX:-g++}" >&2
  exit 1
fi
# The TypeScript side must be built (dist/) for the loading test; the kernels come from the ASan build.
(cd "$pkg" && node scripts/build-native.mjs --if-stale && npx tsc -p tsconfig.build.json)
cd "$pkg"
export DITFA_KERNELS_CPU_ADDON="$addon"
export LD_PRELOAD="$libasan"
# Node itself is not instrumented: its own allocations at exit are not ours to report.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1"
node_modules/.bin/vitest run "$@"
