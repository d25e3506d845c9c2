// AVX-512 path: int8 uses VNNI vpdpbusd (u8 activations x s8 weights, 4 products summed into each
// int32 lane, no saturation), fp32 uses 512-bit FMA. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512vnni; only called after a cpuid check for all of them.
//
// isa_avx512_emulated.cpp compiles this same file against SIMDe's portable implementations of these
// intrinsics, so a CPU without AVX-512 (this project's CI) runs and tests the very code of this path.
#ifdef PRUNEOFA_AVX512_EMULATED
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define PRUNEOFA_AVX512_OPS ops_avx512_emulated
#define PRUNEOFA_AVX512_NAME "avx512_vnni_emulated"
#else
#include <immintrin.h>
#define PRUNEOFA_AVX512_OPS ops_avx512
#define PRUNEOFA_AVX512_NAME "avx512_vnni"
#endif

#include "common.h"

namespace pruneofa {
namespace {

#include "kernel_impl.h"
#include "elementwise_impl.h"

struct I8 {
  using Acc = __m512i;  // 16 tokens
  using W = __m512i;
  // Row layout: one broadcast weight feeds R = 4 token tiles, and consecutive blocks alternate
  // between U = 2 accumulator sets: 8 independent vpdpbusd chains, while the 4 tiles of a 768-wide K
  // (48 KiB) stay near L1. Measured on Zen 5 at 128 and 1024 tokens: R=4 U=2 beat R=8 U=1 (the old
  // choice), R=2 U=4 and R=1 U=8 on 768x768 and 3072x768 (benchmarks/bench_kernel_efficiency.py).
  static constexpr int R = 4;
  static constexpr int U = 2;
  static constexpr bool kHalf = false;  // no cheaper half step: a row's runs are one
  // K-chunked layout for K > 768: chunks of 64 K-quads, so the chunk's RC = 8 token tiles (32 KiB)
  // stay in L1 while a group of kRowGroup rows passes over them.
  static constexpr bool kChunked = true;
  static constexpr int RC = 8;
  static constexpr int kRowGroup = 128;
  static Acc zero() { return _mm512_setzero_si512(); }
  static Acc add(const Acc& x, const Acc& y) { return _mm512_add_epi32(x, y); }
  static W bcast(int32_t w) { return _mm512_set1_epi32(w); }
  static void step(Acc& acc, const uint8_t* p, const W& w) {
    acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512((const void*)p), w);
  }
  using WE = W;
  using WO = W;
  static W bcast_even(int32_t w) { return bcast(w); }
  static W bcast_odd(int32_t w) { return bcast(w); }
  static void step_even(Acc& acc, const uint8_t* p, const W& w) { step(acc, p, w); }
  static void step_odd(Acc& acc, const uint8_t* p, const W& w) { step(acc, p, w); }
  static Acc load_i32(const void* src) { return _mm512_loadu_si512(src); }
  static void store_i32(int32_t* dst, const Acc& acc) { _mm512_storeu_si512((void*)dst, acc); }
  static void store_f32(float* dst, const Acc& acc, float s, int32_t c, float b) {
    const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(c)));
    _mm512_storeu_ps(dst, _mm512_fmadd_ps(_mm512_set1_ps(s), v, _mm512_set1_ps(b)));
  }
};

// Chunk K only when one token tile of it (K4 * 64 bytes) is over 12 KiB (K > 768).
int int8_chunk_quads(int K4) { return K4 > 192 ? 64 : 0; }

struct F32 {
  using Acc = __m512;
  using W = __m512;
  static constexpr int R = 8;
  static Acc zero() { return _mm512_setzero_ps(); }
  static W bcast(float w) { return _mm512_set1_ps(w); }
  static void step(Acc& acc, const float* p, W w) { acc = _mm512_fmadd_ps(w, _mm512_loadu_ps(p), acc); }
  static void store(float* dst, const Acc& acc, float b) { _mm512_storeu_ps(dst, _mm512_add_ps(acc, _mm512_set1_ps(b))); }
};

void minmax(const float* x, int64_t n, float* mn, float* mx) {
  __m512 lo = _mm512_set1_ps(x[0]), hi = lo;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  float l = _mm512_reduce_min_ps(lo), h = _mm512_reduce_max_ps(hi);
  for (; i < n; ++i) {
    l = x[i] < l ? x[i] : l;
    h = x[i] > h ? x[i] : h;
  }
  *mn = l;
  *mx = h;
}

// 16 tokens of one K-quad per step: 4 feature rows quantized and interleaved by shift-and-OR into
// one 64-byte vpdpbusd operand.
void quantize(const float* x, int64_t ldx, int K, int T, float inv_scale, int zp, uint8_t* out, int q0, int q1) {
  const int K4 = (K + 3) / 4;
  const int Tpad = (T + kTok - 1) / kTok * kTok;
  const __m512 vinv = _mm512_set1_ps(inv_scale);
  const __m512i vzp = _mm512_set1_epi32(zp), v0 = _mm512_setzero_si512(), v255 = _mm512_set1_epi32(255);
  const int T16 = T / kTok * kTok;
  for (int q = q0; q < q1; ++q) {
    for (int t = 0; t < T16; t += kTok) {
      __m512i word = v0;
      for (int j = 0; j < 4; ++j) {
        const int k = 4 * q + j;
        if (k >= K) break;
        const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + (int64_t)k * ldx + t), vinv);
        __m512i qi = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);  // round half to even
        qi = _mm512_min_epi32(_mm512_max_epi32(qi, v0), v255);
        word = _mm512_or_si512(word, _mm512_slli_epi32(qi, 8 * j));
      }
      _mm512_storeu_si512((void*)(out + (int64_t)(t / kTok) * K4 * 64 + (int64_t)q * 64), word);
    }
    quant_scalar(x, ldx, K, T, inv_scale, zp, out, q, T16, Tpad);
  }
}

void int8_rows(const Int8Args& a, int r0, int r1) { int8_rows_impl<I8>(a, r0, r1); }
void f32_rows(const F32Args& a, int r0, int r1) { f32_rows_impl<F32>(a, r0, r1); }

const IsaOps kOps = {PRUNEOFA_AVX512_NAME, int8_rows, f32_rows, minmax, quantize, layernorm_cols, softmax_rows, gelu,
                     int8_chunk_quads};

}  // namespace

const IsaOps* PRUNEOFA_AVX512_OPS() { return &kOps; }

}  // namespace pruneofa
