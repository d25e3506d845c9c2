// The fused attention (attention_impl.h) compiled with this unit's flags: -mavx512f...: 32 zmm of 16 floats.
// Accumulators: kAttnR rows x kAttnNV vectors, sized to the register file. Also the int8 attention
// (attention_i8_impl.h) with vpdpbusd; attn_avx512_emulated.cpp compiles this file again on SIMDe, so
// CPUs without AVX-512 run and test that code.
#ifdef PRUNEOFA_AVX512_EMULATED
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif

#include "attention.h"

namespace pruneofa {
namespace {

constexpr int kAttnR = 4, kAttnNV = 4, kAttnLanes = 16;
#include "attention_impl.h"
#include "attention_i8_impl.h"

[[maybe_unused]] void head(const float* q, const float* k, const float* v, int64_t ld, int d, int T, const float* pos, const float* bias,
          float* ctx, float* scratch) {
  attention_head_impl(q, k, v, ld, d, T, pos, bias, ctx, scratch);
}

// R rows (keys for the scores, features for the context) x NV 16-lane vectors of int32 accumulators:
// per step NV 64-byte loads and R broadcasts feed R x NV vpdpbusd (4 x 4: 16 accumulators, 8 more
// registers for the operands).
struct VnniDot {
  static constexpr int kR = 4, kNV = 4;
  template <int R, int NV>
  static void block(const uint8_t* x, int64_t lds, int S, const int32_t* w, int64_t wr, int64_t ws, int32_t* out,
                    int64_t ldo) {
    __m512i acc[R][NV];
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
    for (int s = 0; s < S; ++s) {
      __m512i t[NV];
      for (int v = 0; v < NV; ++v) t[v] = _mm512_loadu_si512((const void*)(x + s * lds + 64 * v));
      for (int r = 0; r < R; ++r) {
        const __m512i b = _mm512_set1_epi32(w[r * wr + s * ws]);
        for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], t[v], b);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) _mm512_storeu_si512((void*)(out + r * ldo + 16 * v), acc[r][v]);
  }
};

void head_i8(const float* q, const float* k, const float* v, int64_t ld, int d, int T, const float* pos,
             const float* bias, float* ctx, uint8_t* scratch, const float* zeros) {
  attention_head_i8_impl<VnniDot>(q, k, v, ld, d, T, pos, bias, ctx, scratch, zeros);
}

}  // namespace

#ifdef PRUNEOFA_AVX512_EMULATED
AttnHeadI8Fn attn_head_i8_avx512_emulated() { return head_i8; }
#else
AttnHeadFn attn_head_avx512() { return head; }
AttnHeadI8Fn attn_head_i8_avx512() { return head_i8; }
#endif

}  // namespace pruneofa
