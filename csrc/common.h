// Shared types of the sparse CPU kernels. Kept free of std templates on purpose: this header is
// included by translation units compiled with different -m flags, and an inline std function
// instantiated in an AVX-512 unit could be picked by the linker for every caller (ODR), which would
// crash on CPUs without AVX-512.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pruneofa {

enum Isa : int { ISA_AUTO = 0, ISA_PORTABLE = 1, ISA_AVX2 = 2, ISA_AVX512 = 3, ISA_AVX512_EMULATED = 4 };

// Activations live in token tiles of kTok tokens: int8 path [T/16][K/4][16][4] uint8 (one 64-byte
// line holds 4 consecutive K for 16 tokens, i.e. one vpdpbusd operand), fp32 path [T/16][K][16].
// Tiling by tokens keeps consecutive K-quads adjacent: the untiled [K/4][T][4] layout puts them
// 4 KiB apart at T=1024 and cache-set conflicts halved the speed (KERNEL-NOTES).
constexpr int kTok = 16;

// One 1x4 block of a weight row: 4 int8 weights (little-endian, k = 4q..4q+3) and the byte offset
// q*64 of that K-quad inside an activation tile, so the inner loop needs no multiply.
struct Block {
  int32_t w;
  uint32_t off;
};

// One gathered quad of an unstructured row (the "gathered" format): 4 int8 weights whose K indices k_j
// satisfy k_j % 4 == j (byte j of w), with off[j] = (k_j / 4) * 64. In the tiled layout byte j of each
// token's dword in K-quad q already holds k = 4q + j, so the vpdpbusd operand is K-quad off[0]'s line with
// byte j of every dword taken from line off[j]: 4 loads feed one step that multiplies up to 4 non-zeros,
// where the padded 1x4 blocks of a 90% unstructured row carry ~1.2 (KERNEL-NOTES). A slot without a
// weight has byte 0 and off 0 (any line: it is multiplied by zero).
struct Gather {
  int32_t w;
  uint32_t off[4];
};

// One fp32 non-zero: the weight and the float offset k*16 inside an fp32 activation tile.
struct F32Nz {
  float w;
  uint32_t off;
};

struct Int8Args {
  const Block* blocks;
  const int64_t* row_ptr;   // CSR over output rows
  const int64_t* half_ptr;  // per row: end of its full blocks, end of its even-only blocks
  const uint8_t* x;        // tiled activations
  int64_t tile_bytes;      // K4 * 64
  int ntiles;
  int T;
  int32_t* out_i32;  // raw accumulators [N, ldo] (when not null) ...
  float* out_f32;    // ... else dequantized fscale[n] * (acc - corr[n]) + bias[n]
  int64_t ldo;
  const float* fscale;
  const int32_t* corr;
  const float* bias;
  const Gather* gathers;  // the gathered format's quads (row_ptr indexes them), or null: 1x4 blocks
};

struct F32Args {
  const F32Nz* nz;
  const int64_t* row_ptr;
  const float* x;
  int64_t tile_floats;  // K * 16
  int ntiles;
  int T;
  float* out;
  int64_t ldo;
  const float* bias;  // may be null
};

// The per-ISA entry points; each works on output rows [r0, r1) for all token tiles, so threads
// split rows and every thread streams only its own weights.
struct IsaOps {
  const char* name;
  void (*int8_rows)(const Int8Args&, int r0, int r1);
  void (*f32_rows)(const F32Args&, int r0, int r1);
  // min and max over a contiguous float range (NaN-free input assumed)
  void (*minmax)(const float* x, int64_t n, float* mn, float* mx);
  // Quantize rows [4*q0, 4*q1) of feature-major x [K, ldx] (T tokens used) into the tiled layout.
  void (*quantize)(const float* x, int64_t ldx, int K, int T, float inv_scale, int zp, uint8_t* out,
                   int q0, int q1);
  // Elementwise encoder work (elementwise_impl.h): LayerNorm of (x + res) over the H features of
  // tokens [t0, t1) of feature-major x [H, ld]; softmax of contiguous rows with an optional additive
  // bias per column; exact GELU in place with the rational erf's 7 + 5 coefficients. LayerNorm and
  // GELU write the min and max of their outputs to range[0..1] (the next Linear's quantization range).
  void (*layernorm)(float* x, const float* res, int64_t ld, int H, int t0, int t1, const float* gamma,
                    const float* beta, float eps, float* range);
  void (*softmax)(float* s, int64_t rows, int len, const float* bias);
  void (*gelu)(float* v, int64_t n, const float* P, const float* Q, float clamp, float* range);
};

const IsaOps* ops_portable();
const IsaOps* ops_avx2();    // null when not compiled in
const IsaOps* ops_avx512();  // null when not compiled in
const IsaOps* ops_avx512_emulated();  // the AVX-512 code on SIMDe; null when not compiled in

}  // namespace pruneofa
