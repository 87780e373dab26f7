// The bf16 kernel set is not built yet: returning null makes the addon report compute 'bf16' as
// unsupported (capabilities list only 'fp32') instead of answering it with fp32 kernels.
#include "kernels.h"

namespace ditfa {

const KernelSet* kernels_avx512bf16() { return nullptr; }

}  // namespace ditfa
