// Non-x86 builds: only the scalar attention kernel set exists, and no dense set.
#include "dense.h"
#include "kernels.h"

namespace ditfa {

const KernelSet* kernels_avx2() { return nullptr; }
const KernelSet* kernels_avx512() { return nullptr; }
const KernelSet* kernels_avx512bf16() { return nullptr; }
const KernelSet* kernels_amx() { return nullptr; }
const DenseSet* dense_f32_avx512() { return nullptr; }
const DenseSet* dense_bf16_avx512() { return nullptr; }
const DenseSet* dense_bf16_amx() { return nullptr; }

}  // namespace ditfa
