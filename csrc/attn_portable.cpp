// The fused attention (attention_impl.h) compiled with this unit's flags: baseline flags (SSE2 on x86-64): 16 xmm, a 16-float vector is 4 of them.
// Accumulators: kAttnR rows x kAttnNV vectors, sized to the register file.
#include "attention.h"

namespace pruneofa {
namespace {

constexpr int kAttnR = 2, kAttnNV = 1;
#include "attention_impl.h"

void head(const float* q, const float* k, const float* v, int64_t ld, int d, int T, const float* pos, const float* bias,
          float* ctx, float* scratch) {
  attention_head_impl(q, k, v, ld, d, T, pos, bias, ctx, scratch);
}

}  // namespace

AttnHeadFn attn_head_portable() { return head; }

}  // namespace pruneofa
