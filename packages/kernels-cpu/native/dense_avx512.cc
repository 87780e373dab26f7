// The fp32 dense set (AVX-512F FMA): dense_impl.h compiled with this file's own flags (see binding.gyp).
#define DITFA_DENSE_NS isa_avx512_dense_f32
#define DITFA_DENSE_F32
#include "dense_impl.h"

namespace ditfa {

const DenseSet* dense_f32_avx512() {
  static const DenseSet set{"avx512",           isa_avx512_dense_f32::packed_bytes,     isa_avx512_dense_f32::panels,        isa_avx512_dense_f32::pack,
                            isa_avx512_dense_f32::row_block, isa_avx512_dense_f32::run_rows,       isa_avx512_dense_f32::ln_modulate_rows, isa_avx512_dense_f32::gated_add_rows};
  return &set;
}

}  // namespace ditfa
