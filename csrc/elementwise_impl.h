// The encoder's elementwise work (residual + LayerNorm, softmax, GELU) as plain loops that the compiler
// vectorises under each ISA unit's target flags (SSE2 baseline, AVX2, AVX-512). Included inside an
// anonymous namespace of each ISA translation unit, like kernel_impl.h, so every unit gets its own copy.
//
// No -ffast-math: reductions along a contiguous axis keep kLanes independent partial results, which
// the vectoriser maps onto SIMD lanes without reassociating anything, and reductions across rows of a
// feature-major [H, T] array are elementwise over tokens, which vectorise as they are.
// Builtins instead of std::sqrt/std::memcpy: an inline std function instantiated in an AVX-512 unit
// could be picked by the linker for every caller (see common.h).
#pragma once

constexpr int kLanes = 16;

// exp(x), Cephes' single-precision polynomial (~2 ulp), exactly 0 below -87.3 (so a masked key's
// -1e30 logit gets weight 0, as NumPy's exp gives), saturating at 88.3. Rounding x*log2(e) to an
// integer uses the 1.5*2^23 trick instead of rint so that baseline SSE2 vectorises it too.
inline float exp_f(float x) {
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

// Softmax over each of `rows` contiguous rows of length `len`, in place; `bias` (length len, may be
// null) is added to every row first (the attention mask's additive -1e30 on padded keys).
inline void softmax_rows_impl(float* s, int64_t rows, int len, const float* bias) {
  const int full = len / kLanes * kLanes;
  for (int64_t r = 0; r < rows; ++r) {
    float* v = s + r * len;
    if (bias)
      for (int j = 0; j < len; ++j) v[j] += bias[j];
    float m[kLanes];
    for (int l = 0; l < kLanes; ++l) m[l] = v[0];
    for (int j = 0; j < full; j += kLanes)
      for (int l = 0; l < kLanes; ++l) m[l] = v[j + l] > m[l] ? v[j + l] : m[l];
    float mx = m[0];
    for (int l = 1; l < kLanes; ++l) mx = m[l] > mx ? m[l] : mx;
    for (int j = full; j < len; ++j) mx = v[j] > mx ? v[j] : mx;
    for (int j = 0; j < len; ++j) v[j] = exp_f(v[j] - mx);
    float acc[kLanes] = {};
    for (int j = 0; j < full; j += kLanes)
      for (int l = 0; l < kLanes; ++l) acc[l] += v[j + l];
    float sum = 0.0f;
    for (int l = 0; l < kLanes; ++l) sum += acc[l];
    for (int j = full; j < len; ++j) sum += v[j];
    const float inv = 1.0f / sum;  // >= 1: the max element contributes exp(0)
    for (int j = 0; j < len; ++j) v[j] *= inv;
  }
}

// Per-lane (or per-column) min/max slots that the loops below update elementwise, so they vectorise;
// reduce_ranges folds n of them into range[0..1].
inline void empty_lanes(float* lo, float* hi, int n) {
  for (int i = 0; i < n; ++i) {
    lo[i] = __builtin_inff();
    hi[i] = -__builtin_inff();
  }
}

inline void reduce_ranges(const float* lo, const float* hi, int n, float* range) {
  range[0] = __builtin_inff();
  range[1] = -__builtin_inff();
  for (int i = 0; i < n; ++i) {
    range[0] = lo[i] < range[0] ? lo[i] : range[0];
    range[1] = hi[i] > range[1] ? hi[i] : range[1];
  }
}

// x[:, t0:t1] = LayerNorm over features of (x + res) for feature-major x [H, ld]; res may be null.
// Two passes like PyTorch (mean, then centred variance), in column blocks of kCols tokens so the
// block's per-token statistics stay in registers/L1 while the rows stream through.
// range[0], range[1] = the min and max of what it wrote (+inf, -inf for no tokens): the next Linear's
// dynamic quantization needs them, and here they cost two vector ops per element instead of a pass.
inline void layernorm_cols_impl(float* x, const float* res, int64_t ld, int H, int t0, int t1, const float* gamma,
                                const float* beta, float eps, float* range) {
  constexpr int kCols = 64;
  const float inv_h = 1.0f / (float)H;
  float mean[kCols], rstd[kCols], lo[kCols], hi[kCols];
  empty_lanes(lo, hi, kCols);
  for (int c0 = t0; c0 < t1; c0 += kCols) {
    const int w = t1 - c0 < kCols ? t1 - c0 : kCols;
    for (int i = 0; i < w; ++i) mean[i] = 0.0f;
    for (int h = 0; h < H; ++h) {
      float* row = x + h * ld + c0;
      if (res) {
        const float* rr = res + h * ld + c0;
        for (int i = 0; i < w; ++i) row[i] += rr[i];
      }
      for (int i = 0; i < w; ++i) mean[i] += row[i];
    }
    for (int i = 0; i < w; ++i) {
      mean[i] *= inv_h;
      rstd[i] = 0.0f;
    }
    for (int h = 0; h < H; ++h) {
      const float* row = x + h * ld + c0;
      for (int i = 0; i < w; ++i) {
        const float d = row[i] - mean[i];
        rstd[i] += d * d;
      }
    }
    for (int i = 0; i < w; ++i) rstd[i] = 1.0f / __builtin_sqrtf(rstd[i] * inv_h + eps);
    for (int h = 0; h < H; ++h) {
      float* row = x + h * ld + c0;
      const float g = gamma[h], b = beta[h];
      for (int i = 0; i < w; ++i) {
        const float y = (row[i] - mean[i]) * rstd[i] * g + b;
        row[i] = y;
        lo[i] = y < lo[i] ? y : lo[i];
        hi[i] = y > hi[i] ? y : hi[i];
      }
    }
  }
  reduce_ranges(lo, hi, kCols, range);
}

// Exact-erf GELU in place: x * (1/2 + u P(u^2) / Q(u^2)), u = clamp(x, +-c); P has 7 and Q 5
// coefficients, highest power first (runtime/ops.py derives them from the Eigen/XLA erf).
// range as in layernorm_cols_impl: the min and max of the outputs, kept per lane so it vectorises.
inline float gelu_one(float x, const float* P, const float* Q, float c) {
  const float u = x < -c ? -c : (x > c ? c : x), z = u * u;
  const float num = (((((P[0] * z + P[1]) * z + P[2]) * z + P[3]) * z + P[4]) * z + P[5]) * z + P[6];
  const float den = (((Q[0] * z + Q[1]) * z + Q[2]) * z + Q[3]) * z + Q[4];
  return x * (0.5f + u * num / den);
}

inline void gelu_impl(float* v, int64_t n, const float* P, const float* Q, float c, float* range) {
  float lo[kLanes], hi[kLanes];
  empty_lanes(lo, hi, kLanes);
  const int64_t full = n / kLanes * kLanes;
  for (int64_t i = 0; i < full; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float y = gelu_one(v[i + l], P, Q, c);
      v[i + l] = y;
      lo[l] = y < lo[l] ? y : lo[l];
      hi[l] = y > hi[l] ? y : hi[l];
    }
  for (int64_t i = full; i < n; ++i) {
    const float y = gelu_one(v[i], P, Q, c);
    v[i] = y;
    lo[0] = y < lo[0] ? y : lo[0];
    hi[0] = y > hi[0] ? y : hi[0];
  }
  reduce_ranges(lo, hi, kLanes, range);
}

void layernorm_cols(float* x, const float* res, int64_t ld, int H, int t0, int t1, const float* gamma,
                    const float* beta, float eps, float* range) {
  layernorm_cols_impl(x, res, ld, H, t0, t1, gamma, beta, eps, range);
}
void softmax_rows(float* s, int64_t rows, int len, const float* bias) { softmax_rows_impl(s, rows, len, bias); }
void gelu(float* v, int64_t n, const float* P, const float* Q, float c, float* range) {
  gelu_impl(v, n, P, Q, c, range);
}
