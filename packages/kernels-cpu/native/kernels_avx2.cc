// The avx2 kernel set: attn_impl.h compiled with this file's own flags (see binding.gyp).
#define DITFA_ISA_NS isa_avx2
#define DITFA_SIMD_AVX2
#include "attn_impl.h"

namespace ditfa {

const KernelSet* kernels_avx2() {
  static const KernelSet set{"avx2", isa_avx2::tiles, isa_avx2::run_tile, isa_avx2::prep_bytes_k, isa_avx2::prep_bytes_v, isa_avx2::prepare, isa_avx2::fma_peak};
  return &set;
}

}  // namespace ditfa
