// Fused self-attention of one (sequence, head) in fp32, on the feature-major QKV output of the fused
// Linear: Q, K, V are [d, ld] row blocks (features x tokens, this sequence's T columns), the
// 1/sqrt(d) already folded into Q's weights. Scores never leave this thread's L1/L2:
//
//   S^T[j][i] = sum_c K[c, j] Q[c, i]        keys x queries, so the softmax over keys j runs
//   P^T = exp(S^T + pos[j][i] + bias[j] - max_j)   elementwise over query lanes i (no horizontal
//                                                 reductions); pos: MPNet's relative position bias
//   C[c, i] = (sum_j V[c, j] P^T[j][i]) / sum_j P^T[j][i]
//
// Both matmuls are one register-blocked kernel: R rows times NV vectors of kAttnLanes floats of
// accumulators, one broadcast scalar per row and NV vector loads per step. GCC/Clang vector extensions
// instead of intrinsics, so every ISA unit compiles this same code with its own target flags; each unit
// sets kAttnLanes to its native width (16 under AVX-512, 8 under AVX2, 4 on baseline SSE2). A vector
// wider than the target's registers is lowered through the stack: with 16-float vectors the AVX2 build
// ran 12x slower than the AVX-512 one (589 vs 48 us a BERT-base head on Zen 4). Each output element
// sums over k in the same order whatever the width.
//
// Included inside an anonymous namespace of each attn_*.cpp unit (like elementwise_impl.h), which sets
// kAttnR, kAttnNV and kAttnLanes for its register file before including. Builtins only (see common.h).
#pragma once

typedef float attn_vec __attribute__((vector_size(4 * kAttnLanes)));

// By reference, not by value: a vector wider than the target's registers changes the ABI (-Wpsabi).
inline void attn_load(attn_vec& v, const float* p) { __builtin_memcpy(&v, p, sizeof v); }
inline void attn_store(float* p, const attn_vec& v) { __builtin_memcpy(p, &v, sizeof v); }

inline float attn_exp(float x) {
  // Cephes exp as in elementwise_impl.h (0 below -87.3: a masked key's -1e30 logit gets weight 0).
  const float xc = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = ((int32_t)n + 127) << 23;
  float two_n;
  __builtin_memcpy(&two_n, &bits, sizeof two_n);
  return x < -87.3f ? 0.0f : y * two_n;
}

// out[r][0 : kAttnLanes*NV] = sum_k A[r*sr + k*sk] * B[k*ldb + 0 : kAttnLanes*NV] for r < R (R, NV compile-time).
template <int R, int NV>
inline void attn_block(const float* A, int64_t sr, int64_t sk, int K, const float* B, int64_t ldb, float* out,
                       int64_t ldo) {
  attn_vec acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = attn_vec{};
  for (int k = 0; k < K; ++k) {
    attn_vec b[NV];
    for (int v = 0; v < NV; ++v) attn_load(b[v], B + (int64_t)k * ldb + kAttnLanes * v);
    for (int r = 0; r < R; ++r) {
      const float a = A[r * sr + (int64_t)k * sk];
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) attn_store(out + r * ldo + kAttnLanes * v, acc[r][v]);
}

// out [M][W] (row stride ldo, W a multiple of 16, so of kAttnLanes) = A (M x K, strides sr, sk) times B [K][W] (stride ldb).
template <int R, int NV>
inline void attn_matmul(const float* A, int64_t sr, int64_t sk, int M, int K, const float* B, int64_t ldb, int W,
                        float* out, int64_t ldo) {
  int i = 0;
  for (; i + kAttnLanes * NV <= W; i += kAttnLanes * NV) {
    int m = 0;
    for (; m + R <= M; m += R) attn_block<R, NV>(A + m * sr, sr, sk, K, B + i, ldb, out + m * ldo + i, ldo);
    for (; m < M; ++m) attn_block<1, NV>(A + m * sr, sr, sk, K, B + i, ldb, out + m * ldo + i, ldo);
  }
  for (; i < W; i += kAttnLanes) {
    int m = 0;
    for (; m + R <= M; m += R) attn_block<R, 1>(A + m * sr, sr, sk, K, B + i, ldb, out + m * ldo + i, ldo);
    for (; m < M; ++m) attn_block<1, 1>(A + m * sr, sr, sk, K, B + i, ldb, out + m * ldo + i, ldo);
  }
}

// One (sequence, head). q, k, v: [d, ld] feature rows of this head, pointing at the sequence's first
// column; pos: this head's [T keys][T queries] additive bias or null; bias: T additive key biases or
// null; ctx: [d, ld] output rows, same column offset.
// scratch: attn_scratch(d, T) floats (attention.cpp), no alignment needed.
inline int64_t attn_tpad(int T) { return (T + 15) / 16 * 16; }

inline void attention_head_impl(const float* q, const float* k, const float* v, int64_t ld, int d, int T,
                                const float* pos, const float* bias, float* ctx, float* scratch) {
  const int64_t tp = attn_tpad(T);
  float* qp = scratch;            // [d][tp] Q with zero padding to whole 16-query vectors
  float* st = qp + d * tp;        // [T][tp] scores, keys x queries, then exp'd
  float* cp = st + T * tp;        // [d][tp] unnormalised context
  float* mx = cp + d * tp;        // [tp] running max per query
  float* sum = mx + tp;           // [tp] softmax denominators
  for (int c = 0; c < d; ++c) {
    __builtin_memcpy(qp + c * tp, q + c * ld, sizeof(float) * T);
    for (int64_t i = T; i < tp; ++i) qp[c * tp + i] = 0.0f;
  }
  // S^T = K^T Q: rows are keys j (A(j, c) = k[c*ld + j]), columns queries.
  attn_matmul<kAttnR, kAttnNV>(k, 1, ld, T, d, qp, tp, (int)tp, st, tp);
  for (int64_t i = 0; i < tp; ++i) mx[i] = -3.0e38f;
  for (int j = 0; j < T; ++j) {
    float* row = st + j * tp;
    const float bj = bias ? bias[j] : 0.0f;
    if (pos)  // added before the mask, as PyTorch's MPNet does
      for (int i = 0; i < T; ++i) row[i] += pos[(int64_t)j * T + i];
    if (bias)
      for (int64_t i = 0; i < tp; ++i) row[i] += bj;
    for (int64_t i = 0; i < tp; ++i) mx[i] = row[i] > mx[i] ? row[i] : mx[i];
  }
  for (int64_t i = 0; i < tp; ++i) sum[i] = 0.0f;
  for (int j = 0; j < T; ++j) {
    float* row = st + j * tp;
    for (int64_t i = 0; i < tp; ++i) {
      row[i] = attn_exp(row[i] - mx[i]);
      sum[i] += row[i];
    }
  }
  // C = V P^T: rows are features c (A(c, j) = v[c*ld + j]), columns queries.
  attn_matmul<kAttnR, kAttnNV>(v, ld, 1, d, T, st, tp, (int)tp, cp, tp);
  for (int64_t i = 0; i < tp; ++i) sum[i] = 1.0f / sum[i];  // >= 1 term exp(0) per query
  for (int c = 0; c < d; ++c) {
    const float* src = cp + c * tp;
    float* dst = ctx + c * ld;
    for (int i = 0; i < T; ++i) dst[i] = src[i] * sum[i];
  }
}
