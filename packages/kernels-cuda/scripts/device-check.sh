#!/usr/bin/env bash
# The GPU check of @ditfa/kernels-cuda, in one call on a device machine (H100/H200 with nvcc and PyTorch,
# no Node.js, no network). From the repository root:
#
#   bash packages/kernels-cuda/scripts/device-check.sh
#
# 1. builds libditfa_cuda.so with nvcc (sm_90 + compute_80 PTX), keeps ptxas' resource report and counts
#    the tensor-core (HMMA) instructions in the sm_90 machine code;
# 2. runs the vitest GPU suite when Node.js and the workspace's node_modules are there (not on this
#    workplace's GPU machines: the Python step below covers core's reference through bench/fixtures);
# 3. runs the fixture parity under compute-sanitizer memcheck (out-of-bounds / misaligned accesses);
# 4. runs bench/torch_parity.py: parity against core's reference and against PyTorch SDPA at B=2, H=16,
#    D=72, L in {1024, 4096, 16384}, full and window w = L/8, then the benchmark against SDPA flash.
# Everything lands in $OUT (the device tool brings it back): device.txt, build.txt, vitest.txt,
# sanitizer.txt, parity.txt, result.json. Exit status: 0 when every parity check passed.
set -uo pipefail
PKG="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$PKG/bench/results/local}"
mkdir -p "$OUT" "$PKG/build/Release"
export PYTHONUNBUFFERED=1
cd "$PKG"
status=0

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit,compute_mode --format=csv || true
  nvcc --version
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  uname -a
  nproc
} >"$OUT/device.txt" 2>&1
echo "== device"; grep -E "NVIDIA|Driver|torch|release" "$OUT/device.txt" | head -6

echo "== build"
start=$(date +%s)
if ! nvcc -O3 -std=c++17 -shared -Xcompiler -fPIC,-fvisibility=hidden -cudart static -Xptxas -v \
  -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80 \
  '-DDITFA_CUDA_ARCHS="sm_90,compute_80"' native/api.cu -o build/Release/libditfa_cuda.so >"$OUT/build.txt" 2>&1; then
  echo "nvcc failed:"; tail -30 "$OUT/build.txt"; exit 1
fi
if command -v cuobjdump >/dev/null 2>&1; then
  hmma=$(cuobjdump --dump-sass build/Release/libditfa_cuda.so 2>/dev/null | grep -c HMMA || true)
else
  hmma="unknown (cuobjdump not found)"
fi
spills=$(grep -Eo '[0-9]+ bytes spill stores' "$OUT/build.txt" | awk '{s+=$1} END {print s+0}')
echo "built in $(( $(date +%s) - start )) s; HMMA instructions in SASS: $hmma; spill-store bytes: $spills" | tee -a "$OUT/build.txt"

echo "== vitest GPU suite"
if command -v node >/dev/null 2>&1 && [ -d node_modules/vitest ] && [ -d ../core/dist ]; then
  node scripts/build-native.mjs 2>&1 | tail -3
  node node_modules/vitest/vitest.mjs run 2>&1 | tee "$OUT/vitest.txt" | tail -15 || status=1
else
  echo "skipped: Node.js or the workspace's node_modules are not on this machine (core's reference is checked through bench/fixtures below)" | tee "$OUT/vitest.txt"
fi

echo "== compute-sanitizer memcheck (fixture parity)"
if command -v compute-sanitizer >/dev/null 2>&1; then
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 python3 bench/torch_parity.py --fixtures-only >"$OUT/sanitizer.txt" 2>&1
  rc=$?
  tail -3 "$OUT/sanitizer.txt"
  case $rc in
    0) echo "memcheck: clean" ;;
    124) echo "memcheck: did not finish in 300 s (not a failure of the kernels)" ;;
    *) echo "memcheck: FAILED (exit $rc)"; status=1 ;;
  esac
else
  echo "compute-sanitizer not found" | tee "$OUT/sanitizer.txt"
fi

echo "== parity and benchmark"
python3 bench/torch_parity.py --out "$OUT/result.json" 2>&1 | tee "$OUT/parity.txt" || status=1
exit $status
