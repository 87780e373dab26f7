// Built instead of dense_amx.cc when the compiler cannot target AMX (ditfa_amx=0): no AMX dense set.
#include "dense.h"

namespace ditfa {

const DenseSet* dense_bf16_amx() { return nullptr; }

}  // namespace ditfa
