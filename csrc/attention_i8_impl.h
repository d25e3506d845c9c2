// Fused self-attention of one (sequence, head) with both matmuls in int8 (u8 x s8, 4 products summed
// into each int32 lane: vpdpbusd on the VNNI path), the softmax in fp32. Same inputs and outputs as
// attention_impl.h (feature-major Q, K, V rows of this head, 1/sqrt(d) already in Q).
//
// Quantization, per (sequence, head), symmetric over the head's d x T values of each operand at the
// tokens the mask keeps (a padded token's K and V get no weight, so they must not widen the range):
//   Q -> u8 = round(Q / sq) + 128, K -> s8 = round(K / sk), V -> s8 = round(V / sv), s = max|x| / 127;
//   S^T[j][i] = sq sk (sum_c Qu8[c,i] Ks8[c,j] - 128 sum_c Ks8[c,j])   (the zero point, once per key)
//   P^T = exp(S^T + pos + bias - max_j) in (0, 1] -> u8 = round(255 P^T) (no zero point: P >= 0)
//   C[c, i] = sv (sum_j Vs8[c,j] Pu8[j,i]) / (sum_j Pu8[j,i])        (the quantized weights sum to 1)
// A masked key's -1e30 gives P = 0 exactly, so it contributes nothing, as in fp32.
//
// Both matmuls are one primitive, out[r][lane] = sum_s <4 bytes of lane at step s, int32 w(r, s)>,
// w(r, s) at w[r * wr + s * ws]:
//   scores:  lanes = queries, steps = K-quads of the head's features, w = the key's 4 K bytes;
//   context: lanes = queries, steps = quads of keys,                 w = the feature's 4 V bytes.
// Every packing loop runs along tokens with no branch inside, so it vectorises at run-time d and T
// (with the conditions inside, GCC kept them scalar: twice the fp32 head's time on Zen 4).
// The lane operands are [S][tq][4] bytes ("tiles"), one 64-byte line per 16 lanes and step. `Dot`
// (the including unit) supplies block<R, NV>() for its ISA and its register blocking kR x kNV.
//
// Included inside an anonymous namespace of each attn_*.cpp unit, after attention_impl.h (attn_exp).
#pragma once

// Byte offsets of the scratch regions of one head (attn_i8_scratch in attention.cpp sums the same).
struct AttnI8Layout {
  int d4, tq, t4;
  int64_t qt, pt, kd, vd, si, sf, cp, ksum, mx, psum, keep, bytes;
};

static inline int64_t attn_i8_line(int64_t n) { return (n + 63) / 64 * 64; }

static inline AttnI8Layout attn_i8_layout(int d, int T) {
  AttnI8Layout L{};
  L.d4 = (d + 3) / 4;
  L.tq = (T + 15) / 16 * 16;
  L.t4 = (T + 3) / 4;
  int64_t at = 0;
  auto take = [&at](int64_t bytes) { const int64_t off = at; at += attn_i8_line(bytes); return off; };
  L.qt = take((int64_t)L.d4 * L.tq * 4);  // Q tiles, u8 [d4][tq][4]
  L.pt = take((int64_t)L.t4 * L.tq * 4);  // P tiles, u8 [t4][tq][4]
  L.kd = take((int64_t)L.d4 * T * 4);     // K, s8 dwords [d4][T]
  L.vd = take((int64_t)d * L.t4 * 4);     // V, s8 [d][4 t4] (dword j4 of row c: keys 4 j4 .. 4 j4 + 3)
  L.si = take((int64_t)T * L.tq * 4);     // raw scores, int32 [T][tq]
  L.sf = take((int64_t)T * L.tq * 4);     // scores, float [T][tq]
  L.cp = take((int64_t)d * L.tq * 4);     // raw context, int32 [d][tq]
  L.ksum = take((int64_t)T * 4);          // per key: sum of its s8 K values
  L.mx = take((int64_t)L.tq * 4);         // per query: max score, then sv / (sum of its u8 weights)
  L.psum = take((int64_t)L.tq * 4);       // per query: sum of its u8 weights
  L.keep = take((int64_t)T * 4);          // per token: 0x7fffffff, or 0 where the mask's bias is -1e30
  L.bytes = at;
  return L;
}

// Round to nearest even (|x| < 2^22) without a rounding instruction, so the baseline SSE2 build vectorises it.
inline float attn_i8_round(float x) { return (x + 12582912.0f) - 12582912.0f; }

// Symmetric int8 of x / s, clamped to [-127, 127].
inline int32_t attn_i8_q(float x, float inv) {
  const float r = attn_i8_round(x * inv);
  return (int32_t)(r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r));
}

// max |x| over rows x T at the tokens whose keep[i] is 0x7fffffff (0: padded), on the float bits with the
// sign cleared: for non-negative floats the integer order is the float order, and an integer max
// reduction vectorises without -ffast-math (the float one stayed scalar: 56 of a head's 84 us on Zen 4).
inline float attn_i8_absmax(const float* x, int64_t ld, int rows, int T, const uint32_t* keep) {
  uint32_t m = 0;
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < T; ++i) {
      uint32_t b;
      __builtin_memcpy(&b, x + r * ld + i, sizeof b);
      b &= keep[i];
      m = b > m ? b : m;
    }
  float f;
  __builtin_memcpy(&f, &m, sizeof f);
  return f;
}

// The scale and its inverse for a range max|x| = m (an all-zero operand gets scale 1: every value is 0).
inline void attn_i8_scale(float m, float* scale, float* inv) {
  *scale = m > 0.0f ? m / 127.0f : 1.0f;
  *inv = m > 0.0f ? 127.0f / m : 1.0f;
}

inline uint32_t attn_i8_byte(int32_t v, int b) { return ((uint32_t)v & 0xffu) << (8 * b); }

// out[m][i] for m < M, i < W (a multiple of 16): the primitive over S steps, in Dot's register blocks.
template <class Dot>
void attn_i8_matmul(const uint8_t* x, int64_t lds, int S, const int32_t* w, int64_t wr, int64_t ws, int M, int W,
                    int32_t* out, int64_t ldo) {
  constexpr int R = Dot::kR, NV = Dot::kNV;
  int i = 0;
  for (; i + 16 * NV <= W; i += 16 * NV) {
    int m = 0;
    for (; m + R <= M; m += R) Dot::template block<R, NV>(x + 4 * i, lds, S, w + m * wr, wr, ws, out + m * ldo + i, ldo);
    for (; m < M; ++m) Dot::template block<1, NV>(x + 4 * i, lds, S, w + m * wr, wr, ws, out + m * ldo + i, ldo);
  }
  for (; i < W; i += 16) {
    int m = 0;
    for (; m + R <= M; m += R) Dot::template block<R, 1>(x + 4 * i, lds, S, w + m * wr, wr, ws, out + m * ldo + i, ldo);
    for (; m < M; ++m) Dot::template block<1, 1>(x + 4 * i, lds, S, w + m * wr, wr, ws, out + m * ldo + i, ldo);
  }
}

// The 4 rows of K-quad c4 of a [d, ld] operand; rows past d point at `zeros` (T zeros).
inline void attn_i8_quad_rows(const float* x, int64_t ld, int d, int c4, const float* zeros, const float* rows[4]) {
  for (int b = 0; b < 4; ++b) rows[b] = 4 * c4 + b < d ? x + (4 * c4 + b) * ld : zeros;
}

// Q -> u8 tiles [d4][tq][4]: features past d (zero rows) and queries past T hold the zero point (128).
inline void attn_i8_pack_q(const float* q, int64_t ld, int d, int T, float inv, const AttnI8Layout& L,
                           const float* zeros, uint8_t* qt) {
  for (int c4 = 0; c4 < L.d4; ++c4) {
    const float* r[4];
    attn_i8_quad_rows(q, ld, d, c4, zeros, r);
    uint32_t* dst = reinterpret_cast<uint32_t*>(qt) + (int64_t)c4 * L.tq;
    for (int i = 0; i < T; ++i)
      dst[i] = attn_i8_byte(attn_i8_q(r[0][i], inv) + 128, 0) | attn_i8_byte(attn_i8_q(r[1][i], inv) + 128, 1) |
               attn_i8_byte(attn_i8_q(r[2][i], inv) + 128, 2) | attn_i8_byte(attn_i8_q(r[3][i], inv) + 128, 3);
    for (int i = T; i < L.tq; ++i) dst[i] = 0x80808080u;
  }
}

// K -> s8 dwords [d4][T] (features past d are 0) and each key's sum of its values.
inline void attn_i8_pack_k(const float* k, int64_t ld, int d, int T, float inv, const AttnI8Layout& L,
                           const float* zeros, int32_t* kd, int32_t* ksum) {
  for (int j = 0; j < T; ++j) ksum[j] = 0;
  for (int c4 = 0; c4 < L.d4; ++c4) {
    const float* r[4];
    attn_i8_quad_rows(k, ld, d, c4, zeros, r);
    int32_t* dst = kd + (int64_t)c4 * T;
    for (int j = 0; j < T; ++j) {
      const int32_t v0 = attn_i8_q(r[0][j], inv), v1 = attn_i8_q(r[1][j], inv);
      const int32_t v2 = attn_i8_q(r[2][j], inv), v3 = attn_i8_q(r[3][j], inv);
      dst[j] = (int32_t)(attn_i8_byte(v0, 0) | attn_i8_byte(v1, 1) | attn_i8_byte(v2, 2) | attn_i8_byte(v3, 3));
      ksum[j] += v0 + v1 + v2 + v3;
    }
  }
}

// V -> s8 rows [d][4 t4] (keys past T are 0): little-endian, so dword j4 holds keys 4 j4 .. 4 j4 + 3.
inline void attn_i8_pack_v(const float* v, int64_t ld, int d, int T, float inv, const AttnI8Layout& L, int32_t* vd) {
  for (int c = 0; c < d; ++c) {
    int8_t* dst = reinterpret_cast<int8_t*>(vd + (int64_t)c * L.t4);
    const float* src = v + c * ld;
    for (int j = 0; j < T; ++j) dst[j] = (int8_t)attn_i8_q(src[j], inv);
    for (int j = T; j < 4 * L.t4; ++j) dst[j] = 0;
  }
}

// Scores to float with the zero-point correction and the biases; then the max over keys per query.
inline void attn_i8_scores(const int32_t* si, const int32_t* ksum, float sqk, const float* pos, const float* bias,
                           int T, int tq, float* sf, float* mx) {
  for (int i = 0; i < tq; ++i) mx[i] = -3.0e38f;
  for (int j = 0; j < T; ++j) {
    const int32_t* src = si + (int64_t)j * tq;
    float* row = sf + (int64_t)j * tq;
    const int32_t corr = 128 * ksum[j];
    for (int i = 0; i < tq; ++i) row[i] = (float)(src[i] - corr) * sqk;
    if (pos)  // added before the mask, as PyTorch's MPNet does
      for (int i = 0; i < T; ++i) row[i] += pos[(int64_t)j * T + i];
    if (bias)
      for (int i = 0; i < tq; ++i) row[i] += bias[j];
    for (int i = 0; i < tq; ++i) mx[i] = row[i] > mx[i] ? row[i] : mx[i];
  }
}

// P^T = exp(S^T - max) -> u8 = round(255 P) in tiles [t4][tq][4] (keys past T: 0); psum: per query.
inline void attn_i8_softmax_pack(const float* sf, const float* mx, int T, const AttnI8Layout& L, uint8_t* pt,
                                 int32_t* psum) {
  const int tq = L.tq;
  for (int i = 0; i < tq; ++i) psum[i] = 0;
  for (int j4 = 0; j4 < L.t4; ++j4) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(pt) + (int64_t)j4 * tq;
    for (int i = 0; i < tq; ++i) dst[i] = 0;
    for (int b = 0; b < 4 && 4 * j4 + b < T; ++b) {
      const float* row = sf + (int64_t)(4 * j4 + b) * tq;
      for (int i = 0; i < tq; ++i) {
        const int32_t p = (int32_t)attn_i8_round(attn_exp(row[i] - mx[i]) * 255.0f);
        psum[i] += p;
        dst[i] |= (uint32_t)p << (8 * b);
      }
    }
  }
}

// One (sequence, head), as attention_head_impl; scratch: attn_i8_layout(d, T).bytes, 64-byte aligned;
// zeros: T zero floats (the rows past d of a head whose d is not a multiple of 4).
template <class Dot>
void attention_head_i8_impl(const float* q, const float* k, const float* v, int64_t ld, int d, int T,
                            const float* pos, const float* bias, float* ctx, uint8_t* scratch, const float* zeros) {
  const AttnI8Layout L = attn_i8_layout(d, T);
  uint8_t* qt = scratch + L.qt;
  uint8_t* pt = scratch + L.pt;
  int32_t* kd = reinterpret_cast<int32_t*>(scratch + L.kd);
  int32_t* vd = reinterpret_cast<int32_t*>(scratch + L.vd);
  int32_t* si = reinterpret_cast<int32_t*>(scratch + L.si);
  float* sf = reinterpret_cast<float*>(scratch + L.sf);
  int32_t* cp = reinterpret_cast<int32_t*>(scratch + L.cp);
  int32_t* ksum = reinterpret_cast<int32_t*>(scratch + L.ksum);
  float* mx = reinterpret_cast<float*>(scratch + L.mx);
  int32_t* psum = reinterpret_cast<int32_t*>(scratch + L.psum);
  uint32_t* keep = reinterpret_cast<uint32_t*>(scratch + L.keep);
  for (int j = 0; j < T; ++j) keep[j] = bias && bias[j] < -1.0e29f ? 0u : 0x7fffffffu;
  float sq, iq, sk, ik, sv, iv;
  attn_i8_scale(attn_i8_absmax(q, ld, d, T, keep), &sq, &iq);
  attn_i8_scale(attn_i8_absmax(k, ld, d, T, keep), &sk, &ik);
  attn_i8_scale(attn_i8_absmax(v, ld, d, T, keep), &sv, &iv);
  attn_i8_pack_q(q, ld, d, T, iq, L, zeros, qt);
  attn_i8_pack_k(k, ld, d, T, ik, L, zeros, kd, ksum);
  attn_i8_pack_v(v, ld, d, T, iv, L, vd);
  attn_i8_matmul<Dot>(qt, (int64_t)L.tq * 4, L.d4, kd, 1, T, T, L.tq, si, L.tq);
  attn_i8_scores(si, ksum, sq * sk, pos, bias, T, L.tq, sf, mx);
  attn_i8_softmax_pack(sf, mx, T, L, pt, psum);
  attn_i8_matmul<Dot>(pt, (int64_t)L.tq * 4, L.t4, vd, L.t4, 1, d, L.tq, cp, L.tq);
  float* rcp = mx;  // the max is spent: reuse its row for sv / sum of weights (>= 255: exp(0) rounds to 255)
  for (int i = 0; i < L.tq; ++i) rcp[i] = sv / (float)psum[i];
  for (int c = 0; c < d; ++c) {
    const int32_t* src = cp + (int64_t)c * L.tq;
    float* dst = ctx + c * ld;
    for (int i = 0; i < T; ++i) dst[i] = (float)src[i] * rcp[i];
  }
}

// The primitive in plain C++ (the portable build, and the reference of the ISA builds in the tests).
struct AttnI8ScalarDot {
  static constexpr int kR = 1, kNV = 1;
  template <int R, int NV>
  static void block(const uint8_t* x, int64_t lds, int S, const int32_t* w, int64_t wr, int64_t ws, int32_t* out,
                    int64_t ldo) {
    for (int r = 0; r < R; ++r)
      for (int lane = 0; lane < 16 * NV; ++lane) {
        int32_t acc = 0;
        for (int s = 0; s < S; ++s) {
          const uint8_t* p = x + s * lds + 4 * lane;
          const uint32_t wv = (uint32_t)w[r * wr + s * ws];
          for (int b = 0; b < 4; ++b) acc += (int32_t)p[b] * (int32_t)(int8_t)(uint8_t)(wv >> (8 * b));
        }
        out[r * ldo + lane] = acc;
      }
  }
};
