// The bf16 kernel set (AVX512-BF16): attn_impl.h with bf16 q·kᵀ and p·v (vdpbf16ps, fp32 accumulation),
// fp32 softmax; compiled with this file's own flags (see binding.gyp).
#define DITFA_ISA_NS isa_avx512bf16
#define DITFA_SIMD_AVX512
#define DITFA_BF16
#include "attn_impl.h"

namespace ditfa {

const KernelSet* kernels_avx512bf16() {
  static const KernelSet set{"avx512bf16",          isa_avx512bf16::tiles,        isa_avx512bf16::run_tile, isa_avx512bf16::prep_bytes_k,
                             isa_avx512bf16::prep_bytes_v, isa_avx512bf16::prepare, isa_avx512bf16::fma_peak};
  return &set;
}

}  // namespace ditfa
