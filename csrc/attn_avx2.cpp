// The fused attention (attention_impl.h) compiled with this unit's flags: -mavx2 -mfma: 16 ymm of 8 floats.
// Accumulators: kAttnR rows x kAttnNV vectors, sized to the register file.
#include "attention.h"

namespace pruneofa {
namespace {

constexpr int kAttnR = 4, kAttnNV = 2, kAttnLanes = 8;
#include "attention_impl.h"

void head(const float* q, const float* k, const float* v, int64_t ld, int d, int T, const float* pos, const float* bias,
          float* ctx, float* scratch) {
  attention_head_impl(q, k, v, ld, d, T, pos, bias, ctx, scratch);
}

}  // namespace

AttnHeadFn attn_head_avx2() { return head; }

}  // namespace pruneofa
