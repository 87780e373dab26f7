// The bf16 dense set for AMX-BF16 CPUs: TMUL tiles, fp32 accumulation; dense_impl.h compiled with this
// file's own flags (see binding.gyp). The OS must grant the tile data state first (amx_os_enable).
#define DITFA_DENSE_NS isa_avx512_dense_amx
#define DITFA_DENSE_AMX
#include "dense_impl.h"

namespace ditfa {

const DenseSet* dense_bf16_amx() {
  static const DenseSet set{"amx-bf16", isa_avx512_dense_amx::packed_bytes, isa_avx512_dense_amx::panels, isa_avx512_dense_amx::pack,
                            isa_avx512_dense_amx::row_block, isa_avx512_dense_amx::run_rows, nullptr, nullptr};
  return &set;
}

}  // namespace ditfa
