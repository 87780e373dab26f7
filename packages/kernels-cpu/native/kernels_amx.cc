// The bf16 kernel set for AMX-BF16 CPUs: attn_impl.h with q·kᵀ and p·v on TMUL tiles (fp32 accumulation),
// fp32 softmax; compiled with this file's own flags (see binding.gyp). The OS must grant the tile data
// state first (amx_os_enable).
#define DITFA_ISA_NS isa_avx512_amx
#define DITFA_SIMD_AVX512
#define DITFA_BF16
#define DITFA_AMX
#include "attn_impl.h"

namespace ditfa {

const KernelSet* kernels_amx() {
  static const KernelSet set{"amx-bf16",          isa_avx512_amx::tiles,        isa_avx512_amx::run_tile, isa_avx512_amx::prep_bytes_k,
                             isa_avx512_amx::prep_bytes_v, isa_avx512_amx::prepare, isa_avx512_amx::fma_peak};
  return &set;
}

}  // namespace ditfa
