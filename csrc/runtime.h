// Packing, dispatch and threading around the per-ISA kernels (compiled with baseline flags).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>
#include <vector>

#include "common.h"

namespace pruneofa {

// Buffers the kernels stream 64-byte operands from start on a cache line. operator new (and so
// std::vector and NumPy) gives 16-byte alignment: then every vpdpbusd operand of a tiled activation
// buffer spans two lines, and the sparse int8 kernel ran 1.5-1.7x slower on BERT-base shapes
// (Zen 5, 64- vs 16/32-byte aligned copies of one buffer).
constexpr std::size_t kAlign = 64;
template <class T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlign))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(kAlign)); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const noexcept { return false; }
};
template <class T>
using AlignedVec = std::vector<T, CacheAligned<T>>;

// Weights packed once at load: CSR over output rows of non-zero 1x4 blocks along K, or (gathered) of
// gathered quads (common.h). Rows keep their order so results are written in place; threads get
// contiguous row ranges of equal block count.
struct Int8Packed {
  int N = 0, K = 0, K4 = 0;
  int64_t nnz = 0;  // non-zero int8 weights (before padding to blocks)
  bool gathered = false;
  std::vector<int64_t> row_ptr;
  std::vector<int64_t> half_ptr;  // [2N]: each row's blocks are full, then even-only, then odd-only
  std::vector<Block> blocks;
  std::vector<Gather> gathers;  // the gathered format (then blocks is empty and half_ptr unused)
  std::vector<int32_t> rowsum;  // sum of each row's weights, for the activation zero-point correction
  std::vector<float> wscale, bias;
};

struct F32Packed {
  int N = 0, K = 0;
  std::vector<int64_t> row_ptr;
  std::vector<F32Nz> nz;
  std::vector<float> bias;
};

// w: row-major [N, K]; bias may be null. gathered: pack the gathered quads instead of 1x4 blocks.
Int8Packed pack_int8(const int8_t* w, int N, int K, const float* scales, const float* bias, bool gathered = false);
F32Packed pack_f32(const float* w, int N, int K, const float* bias);

// Resolve an Isa request; throws std::runtime_error naming the missing CPU feature.
const IsaOps* select_isa(int isa);
bool cpu_has(const char* feature);
bool compiled_avx2();
bool compiled_avx512();
bool compiled_avx512_emulated();

void set_num_threads(int n);
int get_num_threads();
// A cap for the calling thread's own kernel calls (0 = none, the pool's size): a thread capped at 1
// runs its calls inline without the pool's lock, so several such threads (each encoding its own
// sequences) run side by side. call_threads() is what a call from this thread may use.
void set_call_threads(int n);
int call_threads();
// Runs fn(c) for c in [0, n) on the pool (n <= get_num_threads()), chunk 0 on the calling thread.
void parallel_run(int n, const std::function<void(int)>& fn);

inline int64_t int8_tiled_bytes(int K, int T) { return (int64_t)((T + kTok - 1) / kTok) * ((K + 3) / 4) * 64; }
inline int64_t f32_tiled_floats(int K, int T) { return (int64_t)((T + kTok - 1) / kTok) * K * kTok; }

// ONNX Runtime's DynamicQuantizeLinear parameters: range widened to include 0, uint8 with zero point.
void quant_params(const IsaOps* ops, const float* x, int64_t n, float* scale, int* zp);
// The same parameters from a range already known (the min and max the producing op wrote).
void range_params(float mn, float mx, float* scale, int* zp);
// x: feature-major [K, T] contiguous; out: int8_tiled_bytes(K, T).
void quantize_tiled(const IsaOps* ops, const float* x, int K, int T, float scale, int zp, uint8_t* out);
// xq: pre-quantized feature-major uint8 [K, T].
void tile_u8(const uint8_t* xq, int K, int T, uint8_t* out);
void tile_f32(const float* x, int K, int T, float* out);

// out_i32 [N, T] raw accumulators (sum_k a_u8 * w_s8) when non-null, else out_f32 [N, T] =
// wscale * x_scale * (acc - zp * rowsum) + bias.
void int8_matmul(const IsaOps* ops, const Int8Packed& w, const uint8_t* xt, int T, float x_scale, int zp,
                 int32_t* out_i32, float* out_f32);
void f32_matmul(const IsaOps* ops, const F32Packed& w, const float* xt, int T, float* out);

// The encoder's elementwise work on the pool (tokens or elements split across threads; small
// arrays stay on the calling thread). x, res: feature-major [H, T]; res may be null. Both write the
// min and max of their outputs to range[0..1] (+inf, -inf when empty).
void add_layer_norm(const IsaOps* ops, float* x, const float* res, int H, int T, const float* gamma,
                    const float* beta, float eps, float* range);
void gelu(const IsaOps* ops, float* v, int64_t n, const float* P, const float* Q, float clamp, float* range);

}  // namespace pruneofa
