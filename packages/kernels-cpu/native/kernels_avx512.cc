// The avx512 kernel set: attn_impl.h compiled with this file's own flags (see binding.gyp).
#define DITFA_ISA_NS isa_avx512
#define DITFA_SIMD_AVX512
#include "attn_impl.h"

namespace ditfa {

const KernelSet* kernels_avx512() {
  static const KernelSet set{"avx512", isa_avx512::tiles, isa_avx512::run_tile, isa_avx512::prep_bytes_k, isa_avx512::prep_bytes_v, isa_avx512::prepare, isa_avx512::fma_peak};
  return &set;
}

}  // namespace ditfa
