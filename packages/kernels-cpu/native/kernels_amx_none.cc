// Built instead of kernels_amx.cc when the compiler cannot target AMX (ditfa_amx=0): no AMX kernel set.
#include "kernels.h"

namespace ditfa {

const KernelSet* kernels_amx() { return nullptr; }

}  // namespace ditfa
