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

// The same with both matmuls in int8 (attention_i8_impl.h); scratch has attn_i8_scratch(d, T) bytes,
// 64-byte aligned, and zeros T zero floats. There is a VNNI build (and its emulation on SIMDe) and a
// portable one; AVX2 has none.
using AttnHeadI8Fn = void (*)(const float* q, const float* k, const float* v, int64_t ld, int d, int T,
                              const float* pos, const float* bias, float* ctx, uint8_t* scratch, const float* zeros);
AttnHeadI8Fn attn_head_i8_portable();
AttnHeadI8Fn attn_head_i8_avx512();           // null when not compiled in
AttnHeadI8Fn attn_head_i8_avx512_emulated();  // null when not compiled in
int64_t attn_i8_scratch(int d, int T);
// Whether `ops`' path has an int8 attention (every path but AVX2).
bool attention_int8_available(const IsaOps* ops);

// ctx [H, B*T] = softmax(Q^T K + bias) V^T for every (sequence, head), on the kernels' thread pool;
// qkv: [3H, B*T] (Q rows, then K, then V, head-major inside each); pos: [heads, T keys, T queries]
// (a relative position bias shared by the batch) or null; bias: [B*T] or null. The kernel
// matching `ops` runs (the emulated AVX-512 path runs the portable fp32 build, and its own int8 one).
// int8: both matmuls in int8 (throws std::invalid_argument where the path has none).
void attention(const IsaOps* ops, const float* qkv, int H, int heads, int B, int T, const float* pos, const float* bias,
               float* ctx, bool int8 = false);

}  // namespace pruneofa
