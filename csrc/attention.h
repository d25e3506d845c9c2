// Fused self-attention (attention_impl.h), one build per ISA, dispatched and threaded in attention.cpp.
#pragma once
#include <cstdint>

#include "common.h"

namespace pruneofa {

// One (sequence, head): q, k, v, ctx are [d, ld] row blocks at the sequence's first column; pos is the
// head's [T keys, T queries] additive bias or null; bias holds T additive key biases or is null;
// scratch has attn_scratch(d, T) floats.
using AttnHeadFn = void (*)(const float* q, const float* k, const float* v, int64_t ld, int d, int T,
                            const float* pos, const float* bias, float* ctx, float* scratch);
AttnHeadFn attn_head_portable();
AttnHeadFn attn_head_avx2();    // null when not compiled in
AttnHeadFn attn_head_avx512();  // null when not compiled in
int64_t attn_scratch(int d, int T);

// ctx [H, B*T] = softmax(Q^T K + bias) V^T for every (sequence, head), on the kernels' thread pool;
// qkv: [3H, B*T] (Q rows, then K, then V, head-major inside each); pos: [heads, T keys, T queries]
// (a relative position bias shared by the batch) or null; bias: [B*T] or null. The kernel
// matching `ops` runs (the emulated AVX-512 path has no intrinsics here and runs the portable build).
void attention(const IsaOps* ops, const float* qkv, int H, int heads, int B, int T, const float* pos, const float* bias,
               float* ctx);

}  // namespace pruneofa
