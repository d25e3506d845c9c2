// Dispatch and threading of the fused attention (compiled with baseline flags).
#include "attention.h"

#include <algorithm>
#include <vector>

#include "runtime.h"

namespace pruneofa {

#ifndef PRUNEOFA_HAVE_AVX2
AttnHeadFn attn_head_avx2() { return nullptr; }
#endif
#ifndef PRUNEOFA_HAVE_AVX512
AttnHeadFn attn_head_avx512() { return nullptr; }
#endif

int64_t attn_scratch(int d, int T) {
  const int64_t tp = (T + 15) / 16 * 16;
  return tp * (2 * (int64_t)d + T + 2);
}

static AttnHeadFn head_for(const IsaOps* ops) {
  // ops came from select_isa, so the CPU has what its path needs
  if (ops == ops_avx512() && attn_head_avx512()) return attn_head_avx512();
  if (ops == ops_avx2() && attn_head_avx2()) return attn_head_avx2();
  return attn_head_portable();
}

void attention(const IsaOps* ops, const float* qkv, int H, int heads, int B, int T, const float* pos, const float* bias,
               float* ctx) {
  if (B == 0 || T == 0 || heads == 0) return;
  const AttnHeadFn head = head_for(ops);
  const int d = H / heads, pairs = B * heads;
  const int64_t ld = (int64_t)B * T;
  // Contiguous ranges of (sequence, head) pairs; each pair is computed the same way whatever the
  // thread count, so results do not depend on it.
  const int nt = std::max(1, std::min(call_threads(), pairs));
  parallel_run(nt, [&](int c) {
    thread_local AlignedVec<float> scratch;
    scratch.resize((size_t)attn_scratch(d, T));
    for (int p = pairs * c / nt; p < pairs * (c + 1) / nt; ++p) {
      const int b = p / heads, h = p % heads;
      const int64_t col = (int64_t)b * T, row = (int64_t)h * d;
      head(qkv + row * ld + col, qkv + (H + row) * ld + col, qkv + (2 * H + row) * ld + col, ld, d, T,
           pos ? pos + (int64_t)h * T * T : nullptr, bias ? bias + col : nullptr, ctx + row * ld + col,
           scratch.data());
    }
  });
}

}  // namespace pruneofa
