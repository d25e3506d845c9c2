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
  // One broadcast weight feeds R = 4 token tiles, and consecutive blocks alternate between U = 2
  // accumulator sets: 8 independent vpdpbusd chains, while only 4 tiles are live (48 KiB at K = 768,
  // the old R = 8 needed 96). Measured on Zen 5, this kernel in one process, interleaved, on BERT-base
  // shapes at 128 and 1024 tokens (2 rounds x 6 cells): faster than R=8 U=1 (the old choice) in 11
  // of 12, level with R=4 U=3; R=2 U=4 was ahead on 768x3072 and behind on most of the rest. A
  // K-chunked layout (64 quads a chunk, 8 tiles kept in L1, partial sums in the output) was slower
  // than this in 10 of 12 and was dropped.
  static constexpr int R = 4;
  static constexpr int U = 2;
  static constexpr bool kHalf = false;  // no cheaper half step: a row's runs are one
  // K over 2 x 128 quads (K > 1024, BERT's 768x3072) takes the K-blocked loop: chunks of 128 quads,
  // so the 4 tiles of a chunk (32 KiB) stay in L1 while a 16-row panel passes over them. In a
  // standalone copy of both loops on Zen 5 (768x3072, 128 tokens, two runs) it beat the row layout
  // by 10-25%; chunks of 256 quads, R=8 with 64 quads and R=2 with 256 were behind or level.
  static constexpr int kChunkQuads = 128;
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
  // The gathered format: line off[0], then byte j of every dword from line off[j] by a byte-masked load.
  // Standalone on Zen 5 (90% random, 128 tokens, against this file's 1x4 loop): 768x3072 (long K, one
  // tile, U = 4) ran 1.26-1.38x faster; 768x768 and 3072x768 (4 tiles, U = 2) ran 0.80-0.93x: 4 loads a
  // step cost more than the ~2.8x fewer steps save. Hence the choice by measured cost (SparseModel, at load).
  static constexpr int kGatherU = 2;
  static constexpr int kGatherLongQuads = 256;
  static constexpr int kGatherLongU = 4;
  static __m512i masked_bytes(__m512i v, __mmask64 m, const uint8_t* p) {
#ifdef PRUNEOFA_AVX512_EMULATED  // SIMDe has no byte-masked load; the same bytes through a blend
    return _mm512_mask_mov_epi8(v, m, _mm512_loadu_si512((const void*)p));
#else
    return _mm512_mask_loadu_epi8(v, m, p);
#endif
  }
  static void step_gather(Acc& acc, const uint8_t* xb, const uint32_t* off, const W& w) {
    __m512i v = _mm512_loadu_si512((const void*)(xb + off[0]));
    v = masked_bytes(v, (__mmask64)0x2222222222222222ull, xb + off[1]);
    v = masked_bytes(v, (__mmask64)0x4444444444444444ull, xb + off[2]);
    v = masked_bytes(v, (__mmask64)0x8888888888888888ull, xb + off[3]);
    acc = _mm512_dpbusd_epi32(acc, v, w);
  }
  static void store_i32(int32_t* dst, const Acc& acc) { _mm512_storeu_si512((void*)dst, acc); }
  static void store_f32(float* dst, const Acc& acc, float s, int32_t c, float b) {
    const __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(c)));
    _mm512_storeu_ps(dst, _mm512_fmadd_ps(_mm512_set1_ps(s), v, _mm512_set1_ps(b)));
  }
};

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

const IsaOps kOps = {PRUNEOFA_AVX512_NAME, int8_rows, f32_rows, minmax, quantize, layernorm_cols, softmax_rows, gelu};

}  // namespace

const IsaOps* PRUNEOFA_AVX512_OPS() { return &kOps; }

}  // namespace pruneofa
