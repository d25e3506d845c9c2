// Portable C++ path: correct on any CPU (and the reference structure for the SIMD paths). Plain
// loops over 16-token arrays that the compiler may vectorise with the baseline instruction set.
#include <cstring>

#include "common.h"

namespace pruneofa {
namespace {

#include "kernel_impl.h"
#include "elementwise_impl.h"

struct I8 {
  struct Acc {
    int32_t v[kTok];
  };
  struct W {
    int32_t b[4];
  };
  static constexpr int R = 4;
  static constexpr int U = 1;  // one accumulator set, the half-step runs kept apart
  static constexpr bool kHalf = true;
  // Small chunks on purpose: K > 512 runs the K-blocked loop with its half-step runs, so the tests
  // cover that code on the path every CPU has.
  static constexpr int kChunkQuads = 64;
  static Acc zero() { return Acc{}; }
  static W bcast(int32_t w) {
    return W{{(int8_t)(w & 0xff), (int8_t)((w >> 8) & 0xff), (int8_t)((w >> 16) & 0xff), (int8_t)((w >> 24) & 0xff)}};
  }
  static void step(Acc& acc, const uint8_t* p, const W& w) {
    for (int t = 0; t < kTok; ++t) {
      const uint8_t* a = p + 4 * t;
      acc.v[t] += a[0] * w.b[0] + a[1] * w.b[1] + a[2] * w.b[2] + a[3] * w.b[3];
    }
  }
  // no cheaper half step: blocks with zero halves take the full step
  using WE = W;
  using WO = W;
  static W bcast_even(int32_t w) { return bcast(w); }
  static W bcast_odd(int32_t w) { return bcast(w); }
  static void step_even(Acc& acc, const uint8_t* p, const W& w) { step(acc, p, w); }
  static void step_odd(Acc& acc, const uint8_t* p, const W& w) { step(acc, p, w); }
  static constexpr int kGatherU = 1;
  static constexpr int kGatherLongQuads = 256;
  static constexpr int kGatherLongU = 1;
  static void step_gather(Acc& acc, const uint8_t* xb, const uint32_t* off, const W& w) {
    step_gather_via_buffer<I8>(acc, xb, off, w);
  }
  static Acc add(const Acc& x, const Acc& y) {
    Acc s;
    for (int t = 0; t < kTok; ++t) s.v[t] = x.v[t] + y.v[t];
    return s;
  }
  static void store_i32(int32_t* dst, const Acc& acc) { std::memcpy(dst, acc.v, sizeof(acc.v)); }
  static void store_f32(float* dst, const Acc& acc, float s, int32_t c, float b) {
    for (int t = 0; t < kTok; ++t) dst[t] = s * (float)(acc.v[t] - c) + b;
  }
};

struct F32 {
  struct Acc {
    float v[kTok];
  };
  using W = float;
  static constexpr int R = 4;
  static Acc zero() { return Acc{}; }
  static W bcast(float w) { return w; }
  static void step(Acc& acc, const float* p, W w) {
    for (int t = 0; t < kTok; ++t) acc.v[t] += w * p[t];
  }
  static void store(float* dst, const Acc& acc, float b) {
    for (int t = 0; t < kTok; ++t) dst[t] = acc.v[t] + b;
  }
};

void minmax(const float* x, int64_t n, float* mn, float* mx) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  *mn = lo;
  *mx = hi;
}

void quantize(const float* x, int64_t ldx, int K, int T, float inv_scale, int zp, uint8_t* out, int q0, int q1) {
  const int Tpad = (T + kTok - 1) / kTok * kTok;
  for (int q = q0; q < q1; ++q) quant_scalar(x, ldx, K, T, inv_scale, zp, out, q, 0, Tpad);
}

void int8_rows(const Int8Args& a, int r0, int r1) { int8_rows_impl<I8>(a, r0, r1); }
void f32_rows(const F32Args& a, int r0, int r1) { f32_rows_impl<F32>(a, r0, r1); }

const IsaOps kOps = {"portable", int8_rows, f32_rows, minmax, quantize, layernorm_cols, softmax_rows, gelu};

}  // namespace

const IsaOps* ops_portable() { return &kOps; }

}  // namespace pruneofa
