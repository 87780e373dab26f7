// The ISA-independent contract of the dense (linear-layer) kernels between the addon glue (addon.cc) and
// the per-ISA dense files (dense_avx512.cc: fp32; dense_avx512bf16.cc: bf16 with vdpbf16ps;
// dense_amx.cc: bf16 with AMX tiles). As in kernels.h, only plain data and function pointers cross it.
//
// One call computes, for rows r of A [M, K] (row stride lda) and packed weights W (PyTorch's [N, K]):
//
//   a'[r]   = A[r]                                   or, with the LayerNorm prologue,
//   a'[r]   = LN(A[r]) · (1 + scale[s]) + shift[s]    (no affine, eps; s = r / rows_per_sample)
//   y[r]    = a'[r] · Wᵀ + bias                        (fp32 accumulation; bf16 sets round a' and W to bf16)
//   y[r]    = gelu_tanh(y[r])                          (Epilogue::Gelu)
//   out[r]  = res[r] + gate[s] · y[r]                  (Epilogue::GatedResidual; Residual: gate = 1)
//
// and writes out[r] to `nout` outputs that take equal consecutive column ranges (q | k | v).
#pragma once

#include <cstddef>
#include <cstdint>

namespace ditfa {

enum class Epilogue : int { None = 0, Gelu = 1, GatedResidual = 2, Residual = 3 };

// Per-sample vectors: row r uses table[(r / rows_per_sample) · stride + offset + column].
struct SampleVec {
  const float* table;
  int64_t stride;
  int64_t offset;
};

constexpr int kMaxDenseOutputs = 4;

struct LinearArgs {
  const float* a;
  int64_t M, K, lda;
  const void* w;  // packed by the same kernel set's pack()
  int64_t N;
  const float* bias;  // [N] or null
  bool ln;
  SampleVec shift, scale;
  float eps;
  int64_t rows_per_sample;
  Epilogue epi;
  const float* res;  // [M, N] (row stride N), GatedResidual / Residual
  SampleVec gate;    // GatedResidual
  float* out[kMaxDenseOutputs];
  int nout;
};

struct DenseSet {
  const char* isa;
  // Bytes of the packed form of a [N, K] weight.
  size_t (*packed_bytes)(int64_t K, int64_t N);
  // Packs panels [p0, p1) of w [N, K] (row-major, PyTorch's nn.Linear layout) into `out`.
  int64_t (*panels)(int64_t N);
  void (*pack)(const float* w, int64_t K, int64_t N, void* out, int64_t p0, int64_t p1);
  // Panels are NR = 32 output columns each.
  // Rows per work item, and one work item: rows [m0, min(m0 + rows, M)).
  int64_t (*row_block)(const LinearArgs&, int threads);
  void (*run_rows)(const LinearArgs&, int64_t m0, int64_t m1);
  // Row-wise helpers (fp32 set only, null in the others): LayerNorm + modulate of rows [r0, r1), and
  // out = x + gate[s] · y (gate.table null: x + y).
  void (*ln_modulate_rows)(const float* x, int64_t C, SampleVec shift, SampleVec scale, float eps, int64_t rows_per_sample, float* out,
                           int64_t r0, int64_t r1);
  void (*gated_add_rows)(const float* x, const float* y, int64_t C, SampleVec gate, int64_t rows_per_sample, float* out, int64_t r0,
                         int64_t r1);
};

const DenseSet* dense_f32_avx512();   // null when not built
const DenseSet* dense_bf16_avx512();  // AVX512-BF16 (vdpbf16ps)
const DenseSet* dense_bf16_amx();     // AMX-BF16 tiles

// Asks the OS for the AMX tile data state (Linux arch_prctl); true when AMX may be used by this process.
bool amx_os_enable();

}  // namespace ditfa
