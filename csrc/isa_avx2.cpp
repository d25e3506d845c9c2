// AVX2 + FMA path (compiled with -mavx2 -mfma; only called after a cpuid check).
// AVX2 has no u8 x s8 -> s32 dot product that cannot saturate (vpmaddubsw saturates to s16, which
// ONNX Runtime accepts; we want exact integers). So each 16-bit lane (a[2i], a[2i+1]) is split
// into its even byte (mask) and odd byte (shift): vpmaddwd of even bytes with (w0, w2) and of odd
// bytes with (w1, w3) gives exact per-token int32 sums with no horizontal reduction at the end.
#include <immintrin.h>

#include "common.h"

namespace pruneofa {
namespace {

#include "kernel_impl.h"
#include "elementwise_impl.h"

struct I8 {
  struct Acc {
    __m256i lo, hi;  // tokens 0-7, 8-15
  };
  struct W {
    __m256i even, odd;  // (w0, w2) and (w1, w3) as sign-extended 16-bit pairs
  };
// 3 token tiles = 6 accumulators: on Zen3 R = 2..5 were within noise of each other under load,
// 3 was the most consistent; the AVX2 step needs more temporaries than vpdpbusd, so 16 ymm registers limit R.
#ifndef PRUNEOFA_AVX2_R
#define PRUNEOFA_AVX2_R 3
#endif
  static constexpr int R = PRUNEOFA_AVX2_R;
  static constexpr int U = 1;  // one accumulator set, the half-step runs kept apart
  static constexpr bool kHalf = true;
  static constexpr int kChunkQuads = 0;  // the row layout at every K (unmeasured here: left as it was)
  static Acc zero() { return Acc{_mm256_setzero_si256(), _mm256_setzero_si256()}; }
  static W bcast(int32_t w) {
    const __m256i v = _mm256_set1_epi32(w);
    return W{_mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8), _mm256_srai_epi16(v, 8)};
  }
  static __m256i dot8(__m256i x, const W& w) {
    const __m256i even = _mm256_and_si256(x, _mm256_set1_epi16(0x00ff));
    const __m256i odd = _mm256_srli_epi16(x, 8);
    return _mm256_add_epi32(_mm256_madd_epi16(even, w.even), _mm256_madd_epi16(odd, w.odd));
  }
  static void step(Acc& acc, const uint8_t* p, const W& w) {
    acc.lo = _mm256_add_epi32(acc.lo, dot8(_mm256_loadu_si256((const __m256i*)p), w));
    acc.hi = _mm256_add_epi32(acc.hi, dot8(_mm256_loadu_si256((const __m256i*)(p + 32)), w));
  }
  // Half blocks cost half: unstructured 90% leaves ~19% of (w0, w2) and of (w1, w3) pairs
  // non-zero but ~34% of whole 1x4 blocks, so splitting nearly halves its multiply work.
  using WE = __m256i;
  using WO = __m256i;
  static WE bcast_even(int32_t w) { return bcast(w).even; }
  static WO bcast_odd(int32_t w) { return _mm256_srai_epi16(_mm256_set1_epi32(w), 8); }
  static void step_even(Acc& acc, const uint8_t* p, const WE& w) {
    const __m256i m = _mm256_set1_epi16(0x00ff);
    acc.lo = _mm256_add_epi32(acc.lo, _mm256_madd_epi16(_mm256_and_si256(_mm256_loadu_si256((const __m256i*)p), m), w));
    acc.hi = _mm256_add_epi32(acc.hi,
                              _mm256_madd_epi16(_mm256_and_si256(_mm256_loadu_si256((const __m256i*)(p + 32)), m), w));
  }
  static void step_odd(Acc& acc, const uint8_t* p, const WO& w) {
    acc.lo = _mm256_add_epi32(acc.lo, _mm256_madd_epi16(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i*)p), 8), w));
    acc.hi = _mm256_add_epi32(acc.hi,
                              _mm256_madd_epi16(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i*)(p + 32)), 8), w));
  }
  // The gathered format: each 32-byte half from line off[0], byte j of every dword blended in from line
  // off[j]. The load-time choice (SparseModel) times it against the blocks on the CPU that runs the model.
  static constexpr int kGatherU = 1;
  static constexpr int kGatherLongQuads = 256;
  static constexpr int kGatherLongU = 2;
  static __m256i gather_half(const uint8_t* xb, const uint32_t* off, int h) {
    __m256i v = _mm256_loadu_si256((const __m256i*)(xb + off[0] + h));
    v = _mm256_blendv_epi8(v, _mm256_loadu_si256((const __m256i*)(xb + off[1] + h)), _mm256_set1_epi32(0x0000ff00));
    v = _mm256_blendv_epi8(v, _mm256_loadu_si256((const __m256i*)(xb + off[2] + h)), _mm256_set1_epi32(0x00ff0000));
    return _mm256_blendv_epi8(v, _mm256_loadu_si256((const __m256i*)(xb + off[3] + h)),
                              _mm256_set1_epi32((int)0xff000000u));
  }
  static void step_gather(Acc& acc, const uint8_t* xb, const uint32_t* off, const W& w) {
    acc.lo = _mm256_add_epi32(acc.lo, dot8(gather_half(xb, off, 0), w));
    acc.hi = _mm256_add_epi32(acc.hi, dot8(gather_half(xb, off, 32), w));
  }
  static Acc add(const Acc& x, const Acc& y) {
    return Acc{_mm256_add_epi32(x.lo, y.lo), _mm256_add_epi32(x.hi, y.hi)};
  }
  static void store_i32(int32_t* dst, const Acc& acc) {
    _mm256_storeu_si256((__m256i*)dst, acc.lo);
    _mm256_storeu_si256((__m256i*)(dst + 8), acc.hi);
  }
  static void store_f32(float* dst, const Acc& acc, float s, int32_t c, float b) {
    const __m256i vc = _mm256_set1_epi32(c);
    const __m256 vs = _mm256_set1_ps(s), vb = _mm256_set1_ps(b);
    _mm256_storeu_ps(dst, _mm256_fmadd_ps(vs, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc.lo, vc)), vb));
    _mm256_storeu_ps(dst + 8, _mm256_fmadd_ps(vs, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc.hi, vc)), vb));
  }
};

struct F32 {
  struct Acc {
    __m256 lo, hi;
  };
  using W = __m256;
  static constexpr int R = 4;
  static Acc zero() { return Acc{_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  static W bcast(float w) { return _mm256_set1_ps(w); }
  static void step(Acc& acc, const float* p, W w) {
    acc.lo = _mm256_fmadd_ps(w, _mm256_loadu_ps(p), acc.lo);
    acc.hi = _mm256_fmadd_ps(w, _mm256_loadu_ps(p + 8), acc.hi);
  }
  static void store(float* dst, const Acc& acc, float b) {
    const __m256 vb = _mm256_set1_ps(b);
    _mm256_storeu_ps(dst, _mm256_add_ps(acc.lo, vb));
    _mm256_storeu_ps(dst + 8, _mm256_add_ps(acc.hi, vb));
  }
};

void minmax(const float* x, int64_t n, float* mn, float* mx) {
  __m256 lo = _mm256_set1_ps(x[0]), hi = lo;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  float l[8], h[8];
  _mm256_storeu_ps(l, lo);
  _mm256_storeu_ps(h, hi);
  for (; i < n; ++i) {
    l[0] = x[i] < l[0] ? x[i] : l[0];
    h[0] = x[i] > h[0] ? x[i] : h[0];
  }
  for (int j = 1; j < 8; ++j) {
    l[0] = l[j] < l[0] ? l[j] : l[0];
    h[0] = h[j] > h[0] ? h[j] : h[0];
  }
  *mn = l[0];
  *mx = h[0];
}

// 8 tokens of one K-quad: quantize 4 feature rows and interleave them by shift-and-OR into 8
// little-endian 32-bit words (a0 | a1 << 8 | a2 << 16 | a3 << 24), one per token.
void quantize(const float* x, int64_t ldx, int K, int T, float inv_scale, int zp, uint8_t* out, int q0, int q1) {
  const int K4 = (K + 3) / 4;
  const int Tpad = (T + kTok - 1) / kTok * kTok;
  const __m256 vinv = _mm256_set1_ps(inv_scale);
  const __m256i vzp = _mm256_set1_epi32(zp), v0 = _mm256_setzero_si256(), v255 = _mm256_set1_epi32(255);
  const int T8 = T / 8 * 8;
  for (int q = q0; q < q1; ++q) {
    for (int t = 0; t < T8; t += 8) {
      __m256i word = v0;
      for (int j = 0; j < 4; ++j) {
        const int k = 4 * q + j;
        if (k >= K) break;
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + (int64_t)k * ldx + t), vinv);
        __m256i qi = _mm256_add_epi32(_mm256_cvtps_epi32(v), vzp);  // round half to even
        qi = _mm256_min_epi32(_mm256_max_epi32(qi, v0), v255);
        word = _mm256_or_si256(word, _mm256_slli_epi32(qi, 8 * j));
      }
      _mm256_storeu_si256((__m256i*)(out + (int64_t)(t / kTok) * K4 * 64 + (int64_t)q * 64 + (t % kTok) * 4), word);
    }
    quant_scalar(x, ldx, K, T, inv_scale, zp, out, q, T8, Tpad);
  }
}

void int8_rows(const Int8Args& a, int r0, int r1) { int8_rows_impl<I8>(a, r0, r1); }
void f32_rows(const F32Args& a, int r0, int r1) { f32_rows_impl<F32>(a, r0, r1); }

const IsaOps kOps = {"avx2", int8_rows, f32_rows, minmax, quantize, layernorm_cols, softmax_rows, gelu};

}  // namespace

const IsaOps* ops_avx2() { return &kOps; }

}  // namespace pruneofa
