// Kernel bodies shared by every ISA. Included inside an anonymous namespace of each ISA translation
// unit after that unit defines two traits classes:
//   I8:  Acc, W, R (token tiles per register block), zero(), bcast(int32 packed weights),
//        step(Acc&, const uint8_t* 64 bytes, const W&), and the same for blocks whose odd (w1, w3)
//        or even (w0, w2) weights are zero: WE/bcast_even/step_even, WO/bcast_odd/step_odd
//        (an ISA without a cheaper half step aliases them to the full one), store_i32(int32_t* 16, Acc),
//        store_f32(float* 16, Acc, scale, corr, bias); U and kHalf: with kHalf the three runs take
//        their own steps into one accumulator set (U = 1); without, a row's runs are one, split
//        over U accumulator sets joined by add(Acc, Acc); kChunkQuads: 0 for the row layout, else
//        the K-chunk (in quads) of the K-blocked loop for long K (int8_chunked)
//   F32: Acc, W, R, zero(), bcast(float), step(Acc&, const float* 16, const W&), store(float* 16, Acc, bias)
// One body for all ISAs means the portable and AVX2 paths, which this machine can run, exercise
// the same loop structure, edge handling and stores as the AVX-512 path.
#pragma once

// Every loop over the R register tiles is fully unrolled: if one of them (the stores) stays a loop,
// GCC keeps the accumulator array in memory and adds a stack store per vpmaddwd/vpdpbusd.
#if defined(__clang__)
#define PRUNEOFA_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define PRUNEOFA_UNROLL _Pragma("GCC unroll 16")
#else
#define PRUNEOFA_UNROLL
#endif

// The store helper takes the accumulator array by pointer; inlined, it stays in registers.
#if defined(__GNUC__) || defined(__clang__)
#define PRUNEOFA_INLINE inline __attribute__((always_inline))
#else
#define PRUNEOFA_INLINE inline
#endif

// Software prefetch of the weight stream. A forward reads each layer's weights once, from L3 or
// memory, and the hardware prefetcher stays too close behind a stream consumed this slowly (one
// 8-byte block per R vpdpbusd): in the model at batch 1 a Linear took 1.3-1.7x its warm time. Each
// row prefetches the bytes it consumes, kPrefetchBytes ahead of them; prefetching past the end of
// the array is harmless (a prefetch never faults).
#ifndef PRUNEOFA_PREFETCH_BYTES
#define PRUNEOFA_PREFETCH_BYTES 4096
#endif
constexpr int64_t kPrefetchBytes = PRUNEOFA_PREFETCH_BYTES;

PRUNEOFA_INLINE void prefetch_line(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

PRUNEOFA_INLINE void prefetch_lines(const void* begin, const void* end) {
  if (kPrefetchBytes <= 0) return;
  const uintptr_t lo = ((uintptr_t)begin + kPrefetchBytes) & ~(uintptr_t)63;
  const uintptr_t hi = (uintptr_t)end + kPrefetchBytes;
  for (uintptr_t p = lo; p < hi; p += 64) prefetch_line((const void*)p);
}

// Writes the R accumulators of row n, token tiles tile0.., as raw int32 or dequantized float.
template <class Tr, int R>
PRUNEOFA_INLINE void int8_store_row(const Int8Args& a, int n, int tile0, const typename Tr::Acc* acc) {
  PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) {
    const int t = (tile0 + r) * kTok;
    const int valid = a.T - t < kTok ? a.T - t : kTok;
    if (a.out_i32) {
      int32_t* dst = a.out_i32 + n * a.ldo + t;
      if (valid == kTok) {
        Tr::store_i32(dst, acc[r]);
      } else {  // ragged last tile: go through a buffer, never write past T
        int32_t tmp[kTok];
        Tr::store_i32(tmp, acc[r]);
        for (int i = 0; i < valid; ++i) dst[i] = tmp[i];
      }
    } else {
      float* dst = a.out_f32 + n * a.ldo + t;
      const float bias = a.bias ? a.bias[n] : 0.0f;
      if (valid == kTok) {
        Tr::store_f32(dst, acc[r], a.fscale[n], a.corr[n], bias);
      } else {
        float tmp[kTok];
        Tr::store_f32(tmp, acc[r], a.fscale[n], a.corr[n], bias);
        for (int i = 0; i < valid; ++i) dst[i] = tmp[i];
      }
    }
  }
}

// Register block: one output row times R token tiles. The weight block is broadcast once and feeds
// R accumulators, so each weight load is amortised over R*16 tokens. With Tr::U > 1 consecutive
// blocks alternate between U accumulator sets: U*R independent vpdpbusd chains hide the
// instruction's latency while only R token tiles (the L1 footprint) are live.
template <class Tr, int R>
void int8_block(const Int8Args& a, int r0, int r1, int tile0) {
  constexpr int U = Tr::U;
  const uint8_t* xb = a.x + tile0 * a.tile_bytes;
  for (int n = r0; n < r1; ++n) {
    typename Tr::Acc acc[U][R];
    PRUNEOFA_UNROLL for (int u = 0; u < U; ++u) PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) acc[u][r] = Tr::zero();
    const Block* b = a.blocks + a.row_ptr[n];
    const Block* e = a.blocks + a.row_ptr[n + 1];
    prefetch_lines(b, e);
    if constexpr (Tr::kHalf) {
      // A row's blocks come as three runs: full, even-only, odd-only (see pack_int8).
      const Block* e_full = a.blocks + a.half_ptr[2 * n];
      const Block* e_even = a.blocks + a.half_ptr[2 * n + 1];
      for (; b < e_full; ++b) {
        const typename Tr::W w = Tr::bcast(b->w);
        const uint8_t* p = xb + b->off;
        PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step(acc[0][r], p + r * a.tile_bytes, w);
      }
      for (; b < e_even; ++b) {
        const typename Tr::WE w = Tr::bcast_even(b->w);
        const uint8_t* p = xb + b->off;
        PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step_even(acc[0][r], p + r * a.tile_bytes, w);
      }
      for (; b < e; ++b) {
        const typename Tr::WO w = Tr::bcast_odd(b->w);
        const uint8_t* p = xb + b->off;
        PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step_odd(acc[0][r], p + r * a.tile_bytes, w);
      }
    } else {  // no cheaper half step: the three runs are one
      for (; b + U <= e; b += U) {
        PRUNEOFA_UNROLL for (int u = 0; u < U; ++u) {
          const typename Tr::W w = Tr::bcast(b[u].w);
          const uint8_t* p = xb + b[u].off;
          PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step(acc[u][r], p + r * a.tile_bytes, w);
        }
      }
      for (; b < e; ++b) {
        const typename Tr::W w = Tr::bcast(b->w);
        const uint8_t* p = xb + b->off;
        PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step(acc[U - 1][r], p + r * a.tile_bytes, w);
      }
      PRUNEOFA_UNROLL for (int u = 1; u < U; ++u) PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) acc[0][r] = Tr::add(acc[0][r], acc[u][r]);
    }
    int8_store_row<Tr, R>(a, n, tile0, acc[0]);
  }
}

// Runs the blocks [*b, e) whose byte offset is below lim into acc (U sets when the ISA has no half
// step, as in int8_block) and leaves *b at the first block at or past lim. Blocks of a run are in
// ascending K order (pack_int8), so the chunk's blocks are a prefix of what is left.
template <class Tr, int R, int kind>
PRUNEOFA_INLINE void int8_run_until(const Block** bp, const Block* e, uint32_t lim, const uint8_t* xb,
                                    int64_t tb, typename Tr::Acc (*acc)[R]) {
  constexpr int U = Tr::kHalf ? 1 : Tr::U;
  const Block* b = *bp;
  if constexpr (Tr::kHalf && kind == 1) {
    for (; b < e && b->off < lim; ++b) {
      const typename Tr::WE w = Tr::bcast_even(b->w);
      PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step_even(acc[0][r], xb + b->off + r * tb, w);
    }
  } else if constexpr (Tr::kHalf && kind == 2) {
    for (; b < e && b->off < lim; ++b) {
      const typename Tr::WO w = Tr::bcast_odd(b->w);
      PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step_odd(acc[0][r], xb + b->off + r * tb, w);
    }
  } else {
    for (; b + U <= e && b[U - 1].off < lim; b += U) {
      PRUNEOFA_UNROLL for (int u = 0; u < U; ++u) {
        const typename Tr::W w = Tr::bcast(b[u].w);
        PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step(acc[u][r], xb + b[u].off + r * tb, w);
      }
    }
    for (; b < e && b->off < lim; ++b) {
      const typename Tr::W w = Tr::bcast(b->w);
      PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step(acc[U - 1][r], xb + b->off + r * tb, w);
    }
  }
  *bp = b;
}

// K-blocked register block for long K, where R token tiles of the whole K no longer fit L1 (at
// K = 3072 they are R x 48 KiB and every activation load came from L2). Rows go in panels of
// kPanel; for each chunk of Tr::kChunkQuads K-quads, every row of the panel runs its blocks of that
// chunk, so the chunk's R tiles (R x kChunkQuads x 64 bytes) stay in L1 while the panel passes over
// them. Partial sums wait in a small stack buffer (kPanel x R accumulators) between chunks; each row
// keeps one cursor per run (full, even-only, odd-only), so the packing is the row layout's.
template <class Tr, int R>
void int8_chunked(const Int8Args& a, int r0, int r1, int tile0) {
  constexpr int kPanel = 16;
  constexpr int U = Tr::kHalf ? 1 : Tr::U;
  const uint8_t* xb = a.x + tile0 * a.tile_bytes;
  const uint32_t chunk = (uint32_t)Tr::kChunkQuads * 64;
  typename Tr::Acc part[kPanel][R];
  const Block* cur[kPanel][3];
  for (int p0 = r0; p0 < r1; p0 += kPanel) {
    const int pn = r1 - p0 < kPanel ? r1 - p0 : kPanel;
    for (int i = 0; i < pn; ++i) {
      const int n = p0 + i;
      cur[i][0] = a.blocks + a.row_ptr[n];
      cur[i][1] = a.blocks + a.half_ptr[2 * n];
      cur[i][2] = a.blocks + a.half_ptr[2 * n + 1];
    }
    // The next panel's weights, spread over this panel's (chunk, row) steps: a panel reads its rows
    // as 16 short streams at once (a chunk's few blocks each), which the hardware prefetcher does not
    // follow, and the row layout's kPrefetchBytes-ahead rule would fetch this panel's own next chunk.
    const int next_end = p0 + pn + kPanel < r1 ? p0 + pn + kPanel : r1;
    const char* pf = (const char*)(a.blocks + a.row_ptr[p0 + pn]);
    const char* pf_end = (const char*)(a.blocks + a.row_ptr[next_end]);
    const int64_t steps = (a.tile_bytes + chunk - 1) / chunk * pn;
    const int64_t per_step = kPrefetchBytes > 0 ? ((pf_end - pf) / 64 + steps) / steps : 0;
    for (uint32_t lim = chunk;; lim += chunk) {
      const bool first = lim == chunk, last = (int64_t)lim >= a.tile_bytes;
      for (int i = 0; i < pn; ++i) {
        const int n = p0 + i;
        for (int64_t j = 0; j < per_step && pf < pf_end; ++j, pf += 64) prefetch_line(pf);
        typename Tr::Acc acc[U][R];
        PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) acc[0][r] = first ? Tr::zero() : part[i][r];
        PRUNEOFA_UNROLL for (int u = 1; u < U; ++u) PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) acc[u][r] = Tr::zero();
        int8_run_until<Tr, R, 0>(&cur[i][0], a.blocks + a.half_ptr[2 * n], lim, xb, a.tile_bytes, acc);
        int8_run_until<Tr, R, 1>(&cur[i][1], a.blocks + a.half_ptr[2 * n + 1], lim, xb, a.tile_bytes, acc);
        int8_run_until<Tr, R, 2>(&cur[i][2], a.blocks + a.row_ptr[n + 1], lim, xb, a.tile_bytes, acc);
        if constexpr (U > 1) {
          PRUNEOFA_UNROLL for (int u = 1; u < U; ++u) PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) acc[0][r] = Tr::add(acc[0][r], acc[u][r]);
        }
        if (last) {
          int8_store_row<Tr, R>(a, n, tile0, acc[0]);
        } else {
          PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) part[i][r] = acc[0][r];
        }
      }
      if (last) break;
    }
  }
}

// The row layout, or the K-blocked one when the ISA asks for it and K is over two chunks.
template <class Tr, int R>
void int8_run(const Int8Args& a, int r0, int r1, int tile0) {
  if constexpr (Tr::kChunkQuads > 0) {
    if (a.tile_bytes > 2 * (int64_t)Tr::kChunkQuads * 64) {
      int8_chunked<Tr, R>(a, r0, r1, tile0);
      return;
    }
  }
  int8_block<Tr, R>(a, r0, r1, tile0);
}

// Remaining tiles (fewer than Tr::R) get a register block of exactly their count.
template <class Tr, int R>
void int8_tail(const Int8Args& a, int r0, int r1, int tile0, int rem) {
  if constexpr (R > 0) {
    if (rem == R) {
      int8_run<Tr, R>(a, r0, r1, tile0);
    } else {
      int8_tail<Tr, R - 1>(a, r0, r1, tile0, rem);
    }
  }
}

// The gathered format (common.h): one row times R token tiles, consecutive quads alternating between U
// accumulator sets. Tr::step_gather builds the operand from the quad's 4 lines and multiplies it.
template <class Tr, int R, int U>
void int8_gather_block(const Int8Args& a, int r0, int r1, int tile0) {
  const uint8_t* xb = a.x + tile0 * a.tile_bytes;
  for (int n = r0; n < r1; ++n) {
    typename Tr::Acc acc[U][R];
    PRUNEOFA_UNROLL for (int u = 0; u < U; ++u) PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) acc[u][r] = Tr::zero();
    const Gather* g = a.gathers + a.row_ptr[n];
    const Gather* e = a.gathers + a.row_ptr[n + 1];
    prefetch_lines(g, e);
    for (; g + U <= e; g += U) {
      PRUNEOFA_UNROLL for (int u = 0; u < U; ++u) {
        const typename Tr::W w = Tr::bcast(g[u].w);
        PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step_gather(acc[u][r], xb + r * a.tile_bytes, g[u].off, w);
      }
    }
    for (; g < e; ++g) {
      const typename Tr::W w = Tr::bcast(g->w);
      PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step_gather(acc[0][r], xb + r * a.tile_bytes, g->off, w);
    }
    PRUNEOFA_UNROLL for (int u = 1; u < U; ++u) PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) acc[0][r] = Tr::add(acc[0][r], acc[u][r]);
    int8_store_row<Tr, R>(a, n, tile0, acc[0]);
  }
}

template <class Tr, int R, int U>
void int8_gather_tail(const Int8Args& a, int r0, int r1, int tile0, int rem) {
  if constexpr (R > 0) {
    if (rem == R) {
      int8_gather_block<Tr, R, U>(a, r0, r1, tile0);
    } else {
      int8_gather_tail<Tr, R - 1, U>(a, r0, r1, tile0, rem);
    }
  }
}

template <class Tr, int R, int U>
void int8_gather_tiles(const Int8Args& a, int r0, int r1) {
  int t = 0;
  for (; t + R <= a.ntiles; t += R) int8_gather_block<Tr, R, U>(a, r0, r1, t);
  if (t < a.ntiles) int8_gather_tail<Tr, R - 1, U>(a, r0, r1, t, a.ntiles - t);
}

// Long K (over Tr::kGatherLongQuads quads) takes one token tile at a time, so the lines a row's quads
// read again stay in L1; shorter K shares each weight broadcast over Tr::R tiles.
template <class Tr>
void int8_gather_rows_impl(const Int8Args& a, int r0, int r1) {
  if (a.tile_bytes > (int64_t)Tr::kGatherLongQuads * 64) {
    int8_gather_tiles<Tr, 1, Tr::kGatherLongU>(a, r0, r1);
  } else {
    int8_gather_tiles<Tr, Tr::R, Tr::kGatherU>(a, r0, r1);
  }
}

// The operand of a gathered quad through a 64-byte buffer, for ISAs without a byte-masked load.
template <class Tr>
PRUNEOFA_INLINE void step_gather_via_buffer(typename Tr::Acc& acc, const uint8_t* xb, const uint32_t* off,
                                            const typename Tr::W& w) {
  alignas(64) uint8_t line[4 * kTok];
  for (int i = 0; i < 4 * kTok; ++i) line[i] = xb[off[i % 4] + i];
  Tr::step(acc, line, w);
}

template <class Tr>
void int8_rows_impl(const Int8Args& a, int r0, int r1) {
  if (a.gathers) {
    int8_gather_rows_impl<Tr>(a, r0, r1);
    return;
  }
  int t = 0;
  for (; t + Tr::R <= a.ntiles; t += Tr::R) int8_run<Tr, Tr::R>(a, r0, r1, t);
  if (t < a.ntiles) int8_tail<Tr, Tr::R - 1>(a, r0, r1, t, a.ntiles - t);
}

template <class Tr, int R>
void f32_block(const F32Args& a, int r0, int r1, int tile0) {
  const float* xb = a.x + tile0 * a.tile_floats;
  for (int n = r0; n < r1; ++n) {
    typename Tr::Acc acc[R];
    PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) acc[r] = Tr::zero();
    const F32Nz* b = a.nz + a.row_ptr[n];
    const F32Nz* e = a.nz + a.row_ptr[n + 1];
    for (; b < e; ++b) {
      const typename Tr::W w = Tr::bcast(b->w);
      const float* p = xb + b->off;
      PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) Tr::step(acc[r], p + r * a.tile_floats, w);
    }
    const float bias = a.bias ? a.bias[n] : 0.0f;
    PRUNEOFA_UNROLL for (int r = 0; r < R; ++r) {
      const int t = (tile0 + r) * kTok;
      const int valid = a.T - t < kTok ? a.T - t : kTok;
      float* dst = a.out + n * a.ldo + t;
      if (valid == kTok) {
        Tr::store(dst, acc[r], bias);
      } else {
        float tmp[kTok];
        Tr::store(tmp, acc[r], bias);
        for (int i = 0; i < valid; ++i) dst[i] = tmp[i];
      }
    }
  }
}

template <class Tr, int R>
void f32_tail(const F32Args& a, int r0, int r1, int tile0, int rem) {
  if constexpr (R > 0) {
    if (rem == R) {
      f32_block<Tr, R>(a, r0, r1, tile0);
    } else {
      f32_tail<Tr, R - 1>(a, r0, r1, tile0, rem);
    }
  }
}

template <class Tr>
void f32_rows_impl(const F32Args& a, int r0, int r1) {
  int t = 0;
  for (; t + Tr::R <= a.ntiles; t += Tr::R) f32_block<Tr, Tr::R>(a, r0, r1, t);
  if (t < a.ntiles) f32_tail<Tr, Tr::R - 1>(a, r0, r1, t, a.ntiles - t);
}

// Scalar quantizer shared by the ISA units for their leftovers; rint() of x*inv_scale rounds half
// to even like ONNX Runtime's QuantizeLinear and like the SIMD conversions below.
inline uint8_t quant_one(float v, float inv_scale, int zp) {
  float q = __builtin_rintf(v * inv_scale) + (float)zp;
  q = q < 0.0f ? 0.0f : (q > 255.0f ? 255.0f : q);
  return (uint8_t)q;
}

// Scalar quantize of tokens [t0, t1) of K-quad q into every tile; zero past K and past T.
inline void quant_scalar(const float* x, int64_t ldx, int K, int T, float inv_scale, int zp, uint8_t* out,
                         int q, int t0, int t1) {
  const int K4 = (K + 3) / 4;
  for (int t = t0; t < t1; ++t) {
    uint8_t* dst = out + (int64_t)(t / kTok) * K4 * 64 + (int64_t)q * 64 + (t % kTok) * 4;
    for (int j = 0; j < 4; ++j) {
      const int k = 4 * q + j;
      dst[j] = (k < K && t < T) ? quant_one(x[(int64_t)k * ldx + t], inv_scale, zp) : 0;
    }
  }
}
