// The fused attention (attention_impl.h) compiled with this unit's flags: baseline flags (SSE2 on x86-64): 16 xmm of 4 floats.
// Accumulators: kAttnR rows x kAttnNV vectors, sized to the register file.
#include "attention.h"

namespace pruneofa {
namespace {

constexpr int kAttnR = 2, kAttnNV = 4, kAttnLanes = 4;
#include "attention_impl.h"
#include "attention_i8_impl.h"

void head(const float* q, const float* k, const float* v, int64_t ld, int d, int T, const float* pos, const float* bias,
          float* ctx, float* scratch) {
  attention_head_impl(q, k, v, ld, d, T, pos, bias, ctx, scratch);
}

void head_i8(const float* q, const float* k, const float* v, int64_t ld, int d, int T, const float* pos,
             const float* bias, float* ctx, uint8_t* scratch, const float* zeros) {
  attention_head_i8_impl<AttnI8ScalarDot>(q, k, v, ld, d, T, pos, bias, ctx, scratch, zeros);
}

}  // namespace

AttnHeadFn attn_head_portable() { return head; }
AttnHeadI8Fn attn_head_i8_portable() { return head_i8; }
int64_t attn_i8_scratch(int d, int T) { return attn_i8_layout(d, T).bytes; }

}  // namespace pruneofa
