// The bf16 dense set for AVX512-BF16 CPUs without AMX: pairs of bf16 with vdpbf16ps, fp32 accumulation;
// dense_impl.h compiled with this file's own flags (see binding.gyp).
#define DITFA_DENSE_NS isa_avx512_dense_bf16
#define DITFA_DENSE_BF16
#include "dense_impl.h"

namespace ditfa {

const DenseSet* dense_bf16_avx512() {
  static const DenseSet set{"avx512bf16", isa_avx512_dense_bf16::packed_bytes, isa_avx512_dense_bf16::panels, isa_avx512_dense_bf16::pack,
                            isa_avx512_dense_bf16::row_block, isa_avx512_dense_bf16::run_rows, nullptr, nullptr};
  return &set;
}

}  // namespace ditfa
