// Null entry points for SIMD paths the build could not compile (non-x86 CPUs, old compilers), so
// dispatch falls back to the portable path instead of failing to link.
#include "common.h"

namespace pruneofa {
#ifndef PRUNEOFA_HAVE_AVX2
const IsaOps* ops_avx2() { return nullptr; }
#endif
#ifndef PRUNEOFA_HAVE_AVX512
const IsaOps* ops_avx512() { return nullptr; }
#endif
#ifndef PRUNEOFA_HAVE_AVX512_EMULATED
const IsaOps* ops_avx512_emulated() { return nullptr; }
#endif
}  // namespace pruneofa
