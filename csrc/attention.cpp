// Dispatch and threading of the fused attention (compiled with baseline flags).
#include "attention.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime.h"

namespace pruneofa {

#ifndef PRUNEOFA_HAVE_AVX2
AttnHeadFn attn_head_avx2() { return nullptr; }
#endif
#ifndef PRUNEOFA_HAVE_AVX512
AttnHeadFn attn_head_avx512() { return nullptr; }
AttnHeadI8Fn attn_head_i8_avx512() { return nullptr; }
#endif
#ifndef PRUNEOFA_HAVE_AVX512_EMULATED
AttnHeadI8Fn attn_head_i8_avx512_emulated() { return nullptr; }
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

static AttnHeadI8Fn head_i8_for(const IsaOps* ops) {
  if (ops == ops_avx512() && attn_head_i8_avx512()) return attn_head_i8_avx512();
  if (ops == ops_avx512_emulated() && attn_head_i8_avx512_emulated()) return attn_head_i8_avx512_emulated();
  if (ops == ops_portable()) return attn_head_i8_portable();
  return nullptr;
}

bool attention_int8_available(const IsaOps* ops) { return head_i8_for(ops) != nullptr; }

void attention(const IsaOps* ops, const float* qkv, int H, int heads, int B, int T, const float* pos, const float* bias,
               float* ctx, bool int8) {
  if (B == 0 || T == 0 || heads == 0) return;
  const AttnHeadFn head = head_for(ops);
  const AttnHeadI8Fn head_i8 = int8 ? head_i8_for(ops) : nullptr;
  if (int8 && !head_i8)
    throw std::invalid_argument(std::string("int8 attention has no build for the ") + ops->name +
                                " path (it runs on vnni and portable): use fp32 attention there");
  const int d = H / heads, pairs = B * heads;
  const int64_t ld = (int64_t)B * T;
  // Contiguous ranges of (sequence, head) pairs; each pair is computed the same way whatever the
  // thread count, so results do not depend on it.
  const int nt = std::max(1, std::min(call_threads(), pairs));
  parallel_run(nt, [&](int c) {
    thread_local AlignedVec<float> scratch;
    thread_local AlignedVec<uint8_t> scratch_i8;
    thread_local std::vector<float> zeros;
    if (int8) {
      scratch_i8.resize((size_t)attn_i8_scratch(d, T));
      zeros.assign((size_t)T, 0.0f);
    } else
      scratch.resize((size_t)attn_scratch(d, T));
    for (int p = pairs * c / nt; p < pairs * (c + 1) / nt; ++p) {
      const int b = p / heads, h = p % heads;
      const int64_t col = (int64_t)b * T, row = (int64_t)h * d;
      const float *q = qkv + row * ld + col, *k = qkv + (H + row) * ld + col, *v = qkv + (2 * H + row) * ld + col;
      const float* hpos = pos ? pos + (int64_t)h * T * T : nullptr;
      const float* kbias = bias ? bias + col : nullptr;
      if (int8)
        head_i8(q, k, v, ld, d, T, hpos, kbias, ctx + row * ld + col, scratch_i8.data(), zeros.data());
      else
        head(q, k, v, ld, d, T, hpos, kbias, ctx + row * ld + col, scratch.data());
    }
  });
}

}  // namespace pruneofa
