// The scalar kernel set: attn_impl.h compiled with this file's own flags (see binding.gyp).
#define DITFA_ISA_NS isa_scalar
#define DITFA_SIMD_SCALAR
#include "attn_impl.h"

namespace ditfa {

const KernelSet* kernels_scalar() {
  static const KernelSet set{"scalar", isa_scalar::tiles, isa_scalar::run_tile, isa_scalar::prep_bytes_k, isa_scalar::prep_bytes_v, isa_scalar::prepare, isa_scalar::fma_peak};
  return &set;
}

}  // namespace ditfa
