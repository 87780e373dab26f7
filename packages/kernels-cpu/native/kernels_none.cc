// Non-x86 builds: only the scalar kernel set exists.
#include "kernels.h"

namespace ditfa {

const KernelSet* kernels_avx2() { return nullptr; }
const KernelSet* kernels_avx512() { return nullptr; }
const KernelSet* kernels_avx512bf16() { return nullptr; }

}  // namespace ditfa
