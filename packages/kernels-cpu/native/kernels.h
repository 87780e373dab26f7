// The ISA-independent contract between the addon glue (addon.cc) and the per-ISA kernel files
// (kernels_scalar.cc, kernels_avx2.cc, kernels_avx512.cc, kernels_avx512bf16.cc). Only plain data and
// function pointers cross it, so each kernel file can be compiled with its own -m flags without any
// inline function being shared (and picked by the linker) across instruction sets.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ditfa {

enum class Op : int { Full = 0, Window = 1, FullResidual = 2, WindowResidual = 3 };

// kind 0: no window (full attention), 1: 1-D band of `size` tokens per side, 2: `rows × cols` grid with
// a square neighbourhood of `radius`.
struct WindowDesc {
  int kind;
  int64_t size;
  int64_t rows;
  int64_t cols;
  int64_t radius;
};

// One validated kernel call. Tensors are [B, L, H, D] row-major float32.
struct AttnArgs {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  // FullResidual: the residual output (full − window). WindowResidual: the residual input that is added.
  float* aux;
  int64_t B, Lq, Lkv, H, D;
  float scale;
  Op op;
  WindowDesc win;
  // K and V as prepared once per call (bf16 conversions, fp32 contiguous copies), or null: owned by the caller.
  const uint32_t* kb;
  const uint32_t* vb;
};

// A kernel set for one instruction set. `tiles` is the number of query tiles per (batch, head);
// `run_tile` computes one (b, h, tile) work item; `prepare` (bf16 only) converts K/V for (b, h).
struct KernelSet {
  const char* isa;
  int64_t (*tiles)(const AttnArgs&);
  void (*run_tile)(const AttnArgs&, int64_t b, int64_t h, int64_t tile);
  // Copies of K and V made once per call (bf16: converted; fp32: contiguous rows for long sequences, none
  // when prep_bytes_k returns 0): bytes for the whole call, and the copy of (b, h). Null: no copies.
  size_t (*prep_bytes_k)(const AttnArgs&);
  size_t (*prep_bytes_v)(const AttnArgs&);
  void (*prepare)(const AttnArgs&, uint32_t* kb, uint32_t* vb, int64_t b, int64_t h);
  // Seconds-long FMA loop used to measure the machine's fp32 peak: returns the FLOPs it performed.
  double (*fma_peak)(double seconds);
};

const KernelSet* kernels_scalar();
const KernelSet* kernels_avx2();     // null when the addon was built without that file
const KernelSet* kernels_avx512();
const KernelSet* kernels_avx512bf16();
const KernelSet* kernels_amx();        // bf16 on AMX tiles; null when built without AMX

// Largest head size the kernels accept (the per-tile buffers are sized from it).
constexpr int64_t kMaxHeadDim = 256;

}  // namespace ditfa
