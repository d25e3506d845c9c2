#include "runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace pruneofa {

// ---------------------------------------------------------------- packing
// Each row's non-zeros split by k % 4, in ascending k; quad g takes the g-th of each class, so a row costs
// as many quads as its largest class holds (at 90% random sparsity ~80% of the slots carry a weight).
static void pack_gathered_row(const int8_t* row, int K, std::vector<Gather>& out) {
  std::vector<int> by_class[4];
  for (int k = 0; k < K; ++k)
    if (row[k] != 0) by_class[k % 4].push_back(k);
  size_t quads = 0;
  for (const auto& c : by_class) quads = std::max(quads, c.size());
  for (size_t g = 0; g < quads; ++g) {
    Gather q{0, {0, 0, 0, 0}};
    for (int j = 0; j < 4; ++j) {
      if (g >= by_class[j].size()) continue;
      const int k = by_class[j][g];
      q.w |= (int32_t)((uint32_t)(uint8_t)row[k] << (8 * j));
      q.off[j] = (uint32_t)(k / 4) * 64;
    }
    out.push_back(q);
  }
}

Int8Packed pack_int8(const int8_t* w, int N, int K, const float* scales, const float* bias, bool gathered) {
  Int8Packed p;
  p.gathered = gathered;
  p.N = N;
  p.K = K;
  p.K4 = (K + 3) / 4;
  p.row_ptr.assign(N + 1, 0);
  p.half_ptr.assign(2 * (size_t)N, 0);
  p.rowsum.assign(N, 0);
  p.wscale.assign(scales, scales + N);
  p.bias.assign(N, 0.0f);
  if (bias) p.bias.assign(bias, bias + N);
  std::vector<Block> kind[3];  // full, even-only (w1 = w3 = 0), odd-only (w0 = w2 = 0)
  for (int n = 0; n < N; ++n) {
    const int8_t* row = w + (int64_t)n * K;
    for (int k = 0; k < K; ++k) {  // both formats: the zero-point correction's row sums, the non-zero count
      p.rowsum[n] += row[k];
      p.nnz += row[k] != 0;
    }
    if (gathered) {
      pack_gathered_row(row, K, p.gathers);
      p.row_ptr[n + 1] = (int64_t)p.gathers.size();
      continue;
    }
    for (auto& v : kind) v.clear();
    for (int q = 0; q < p.K4; ++q) {
      uint32_t packed = 0;
      bool even = false, odd = false;
      for (int j = 0; j < 4 && 4 * q + j < K; ++j) {
        const int8_t v = row[4 * q + j];
        packed |= (uint32_t)(uint8_t)v << (8 * j);
        (j % 2 ? odd : even) |= v != 0;
      }
      if (even || odd) kind[even && odd ? 0 : (even ? 1 : 2)].push_back(Block{(int32_t)packed, (uint32_t)q * 64});
    }
    p.blocks.insert(p.blocks.end(), kind[0].begin(), kind[0].end());
    p.half_ptr[2 * n] = (int64_t)p.blocks.size();
    p.blocks.insert(p.blocks.end(), kind[1].begin(), kind[1].end());
    p.half_ptr[2 * n + 1] = (int64_t)p.blocks.size();
    p.blocks.insert(p.blocks.end(), kind[2].begin(), kind[2].end());
    p.row_ptr[n + 1] = (int64_t)p.blocks.size();
  }
  return p;
}

F32Packed pack_f32(const float* w, int N, int K, const float* bias) {
  F32Packed p;
  p.N = N;
  p.K = K;
  p.row_ptr.assign(N + 1, 0);
  if (bias) p.bias.assign(bias, bias + N);
  for (int n = 0; n < N; ++n) {
    for (int k = 0; k < K; ++k) {
      const float v = w[(int64_t)n * K + k];
      if (v != 0.0f) p.nz.push_back(F32Nz{v, (uint32_t)k * kTok});
    }
    p.row_ptr[n + 1] = (int64_t)p.nz.size();
  }
  return p;
}

// ---------------------------------------------------------------- dispatch
bool cpu_has(const char* f) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const std::string s(f);
  if (s == "avx2") return __builtin_cpu_supports("avx2");
  if (s == "fma") return __builtin_cpu_supports("fma");
  if (s == "avx512f") return __builtin_cpu_supports("avx512f");
  if (s == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (s == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (s == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
#endif
  (void)f;
  return false;
}

bool compiled_avx2() { return ops_avx2() != nullptr; }
bool compiled_avx512() { return ops_avx512() != nullptr; }
bool compiled_avx512_emulated() { return ops_avx512_emulated() != nullptr; }

static bool can_avx2() { return compiled_avx2() && cpu_has("avx2") && cpu_has("fma"); }
static bool can_avx512() {
  return compiled_avx512() && cpu_has("avx512f") && cpu_has("avx512bw") && cpu_has("avx512vl") &&
         cpu_has("avx512vnni");
}

const IsaOps* select_isa(int isa) {
  switch (isa) {
    case ISA_AUTO:
      if (can_avx512()) return ops_avx512();
      if (can_avx2()) return ops_avx2();
      return ops_portable();
    case ISA_PORTABLE:
      return ops_portable();
    case ISA_AVX2:
      if (!can_avx2()) throw std::runtime_error("isa 'avx2' unavailable: needs AVX2+FMA in the CPU and the build");
      return ops_avx2();
    case ISA_AVX512:
      if (!can_avx512())
        throw std::runtime_error(
            "isa 'vnni' unavailable: needs AVX-512 F/BW/VL/VNNI in the CPU and the build");
      return ops_avx512();
    case ISA_AVX512_EMULATED:
      if (!compiled_avx512_emulated())
        throw std::runtime_error("isa 'vnni-emulated' unavailable: the build found no SIMDe headers (simde-py)");
      return ops_avx512_emulated();
  }
  throw std::runtime_error("unknown isa code " + std::to_string(isa));
}

// ---------------------------------------------------------------- threads
// A persistent pool: spawning std::threads per call costs tens of microseconds, comparable to a
// whole 768x768 layer. Workers spin briefly after a job (calls come back to back in a model) and
// then sleep on a condition variable so idle processes do not burn shared cores.
namespace {
class Pool {
 public:
  static Pool& get() {
    static Pool pool;
    return pool;
  }
  ~Pool() { resize(1); }
  int size() {
    std::lock_guard<std::mutex> g(call_mu_);
    return (int)workers_.size() + 1;
  }
  void resize(int n) {
    std::lock_guard<std::mutex> g(call_mu_);
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    // The start generation is read here, not in the new thread: a job posted before the thread
    // first runs must not be mistaken for the state it starts from.
    const uint64_t g0 = gen_.load();
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i, g0] { loop(i, g0); });
  }
  // Runs fn(i) for i in [0, n) with n <= size(); chunk 0 on the calling thread.
  void run(int n, const std::function<void(int)>& fn) {
    if (n <= 1) {  // no lock: callers limited to one thread (set_call_threads) run side by side
      fn(0);
      return;
    }
    std::lock_guard<std::mutex> g(call_mu_);
    n = std::min(n, (int)workers_.size() + 1);
    if (n <= 1) {
      fn(0);
      return;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      job_ = &fn;
      njob_ = n;
      pending_.store(n - 1);
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    fn(0);
    while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }

 private:
  void loop(int id, uint64_t seen) {
    for (;;) {
      const auto t0 = std::chrono::steady_clock::now();
      while (gen_.load(std::memory_order_acquire) == seen &&
             std::chrono::steady_clock::now() - t0 < std::chrono::microseconds(200))
        std::this_thread::yield();
      const std::function<void(int)>* job;
      int njob;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return gen_.load() != seen; });
        seen = gen_.load();
        if (stop_) return;
        job = job_;
        njob = njob_;
      }
      if (id < njob) (*job)(id);
      if (id < njob) pending_.fetch_sub(1, std::memory_order_release);
    }
  }
  std::mutex call_mu_, mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<int> pending_{0};
  const std::function<void(int)>* job_ = nullptr;
  int njob_ = 0;
  bool stop_ = false;
};

int default_threads() {
  const unsigned h = std::thread::hardware_concurrency();
  return h == 0 ? 1 : (int)h;
}
std::once_flag pool_init;
Pool& pool() {
  std::call_once(pool_init, [] { Pool::get().resize(default_threads()); });
  return Pool::get();
}

// First row of chunk c when rows are split into n chunks of equal cost (blocks + per-row overhead).
int split_row(const std::vector<int64_t>& row_ptr, int N, int c, int n) {
  const int64_t kRowCost = 4;
  const int64_t total = row_ptr[N] + kRowCost * N;
  const int64_t target = total * c / n;
  int lo = 0, hi = N;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (row_ptr[mid] + kRowCost * mid < target) lo = mid + 1; else hi = mid;
  }
  return lo;
}
}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  pool();
  Pool::get().resize(n);
}
int get_num_threads() { return pool().size(); }

// Per calling thread: 0 = the pool's size, n >= 1 = at most n threads for this thread's calls.
static thread_local int tl_call_threads = 0;
void set_call_threads(int n) {
  if (n < 0) throw std::invalid_argument("set_call_threads: n must be >= 0, got " + std::to_string(n));
  tl_call_threads = n;
}
int call_threads() {
  if (tl_call_threads == 1) return 1;  // never touches the pool's lock
  const int p = pool().size();
  return tl_call_threads > 0 && tl_call_threads < p ? tl_call_threads : p;
}
void parallel_run(int n, const std::function<void(int)>& fn) { pool().run(n, fn); }

// ---------------------------------------------------------------- activations
void quant_params(const IsaOps* ops, const float* x, int64_t n, float* scale, int* zp) {
  float mn = 0.0f, mx = 0.0f;
  if (n > 0) {
    const int nt = std::max(1, std::min<int>(call_threads(), (int)(n / 65536)));
    std::vector<float> lo(nt, 0.0f), hi(nt, 0.0f);
    pool().run(nt, [&](int c) {
      const int64_t a = n * c / nt, b = n * (c + 1) / nt;
      if (b > a) ops->minmax(x + a, b - a, &lo[c], &hi[c]);
    });
    mn = *std::min_element(lo.begin(), lo.end());
    mx = *std::max_element(hi.begin(), hi.end());
  }
  range_params(mn, mx, scale, zp);
}

void range_params(float mn, float mx, float* scale, int* zp) {
  if (mn > mx) mn = mx = 0.0f;  // an empty range (no tokens), as quant_params gives for n = 0
  if (!std::isfinite(mn) || !std::isfinite(mx)) throw std::invalid_argument("activations contain inf or nan");
  mn = std::min(mn, 0.0f);
  mx = std::max(mx, 0.0f);
  float s = (mx - mn) / 255.0f;
  if (!(s > 0.0f)) s = 1.0f;  // all-zero input: any scale works, q = zp = 0
  *scale = s;
  *zp = (int)std::nearbyint(std::min(255.0f, std::max(0.0f, -mn / s)));
}

void quantize_tiled(const IsaOps* ops, const float* x, int K, int T, float scale, int zp, uint8_t* out) {
  const int K4 = (K + 3) / 4;
  const float inv = 1.0f / scale;
  const int nt = std::max(1, std::min<int>(call_threads(), (int)((int64_t)K * T / 32768)));
  pool().run(nt, [&](int c) { ops->quantize(x, T, K, T, inv, zp, out, K4 * c / nt, K4 * (c + 1) / nt); });
}

void tile_u8(const uint8_t* xq, int K, int T, uint8_t* out) {
  const int K4 = (K + 3) / 4, nt = (T + kTok - 1) / kTok;
  std::memset(out, 0, (size_t)int8_tiled_bytes(K, T));
  for (int k = 0; k < K; ++k)
    for (int t = 0; t < T; ++t)
      out[(int64_t)(t / kTok) * K4 * 64 + (int64_t)(k / 4) * 64 + (t % kTok) * 4 + k % 4] = xq[(int64_t)k * T + t];
  (void)nt;
}

void tile_f32(const float* x, int K, int T, float* out) {
  const int nt = (T + kTok - 1) / kTok;
  for (int i = 0; i < nt; ++i) {
    const int t0 = i * kTok, n = std::min(kTok, T - t0);
    float* dst = out + (int64_t)i * K * kTok;
    for (int k = 0; k < K; ++k) {
      std::memcpy(dst + (int64_t)k * kTok, x + (int64_t)k * T + t0, sizeof(float) * n);
      if (n < kTok) std::memset(dst + (int64_t)k * kTok + n, 0, sizeof(float) * (kTok - n));
    }
  }
}

// ---------------------------------------------------------------- matmuls
void int8_matmul(const IsaOps* ops, const Int8Packed& w, const uint8_t* xt, int T, float x_scale, int zp,
                 int32_t* out_i32, float* out_f32) {
  if (w.N == 0 || T == 0) return;
  std::vector<float> fscale(w.N);
  std::vector<int32_t> corr(w.N);
  for (int n = 0; n < w.N; ++n) {
    fscale[n] = w.wscale[n] * x_scale;
    corr[n] = zp * w.rowsum[n];
  }
  Int8Args a{w.blocks.data(), w.row_ptr.data(), w.half_ptr.data(), xt, (int64_t)w.K4 * 64, (T + kTok - 1) / kTok, T, out_i32,
             out_f32, T, fscale.data(), corr.data(), w.bias.data(), w.gathered ? w.gathers.data() : nullptr};
  const int nt = std::max(1, std::min(call_threads(), w.N / 16));
  pool().run(nt, [&](int c) {
    ops->int8_rows(a, split_row(w.row_ptr, w.N, c, nt), split_row(w.row_ptr, w.N, c + 1, nt));
  });
}

void f32_matmul(const IsaOps* ops, const F32Packed& w, const float* xt, int T, float* out) {
  if (w.N == 0 || T == 0) return;
  F32Args a{w.nz.data(), w.row_ptr.data(), xt, (int64_t)w.K * kTok, (T + kTok - 1) / kTok, T, out, T,
            w.bias.empty() ? nullptr : w.bias.data()};
  const int nt = std::max(1, std::min(call_threads(), w.N / 16));
  pool().run(nt, [&](int c) {
    ops->f32_rows(a, split_row(w.row_ptr, w.N, c, nt), split_row(w.row_ptr, w.N, c + 1, nt));
  });
}

// ---------------------------------------------------------------- elementwise
// Each thread's part reports the min and max it wrote into its slot (+inf, -inf until it does); the
// parts' ranges combine into range[0..1].
static std::vector<float> empty_ranges(int parts) {
  std::vector<float> r(2 * (size_t)parts);
  for (int c = 0; c < parts; ++c) {
    r[2 * c] = __builtin_inff();
    r[2 * c + 1] = -__builtin_inff();
  }
  return r;
}

static void combine_ranges(const std::vector<float>& parts, float* range) {
  range[0] = __builtin_inff();
  range[1] = -__builtin_inff();
  for (size_t c = 0; c + 1 < parts.size(); c += 2) {
    range[0] = std::min(range[0], parts[c]);
    range[1] = std::max(range[1], parts[c + 1]);
  }
}

void add_layer_norm(const IsaOps* ops, float* x, const float* res, int H, int T, const float* gamma,
                    const float* beta, float eps, float* range) {
  // Whole 16-token tiles per thread: each thread's column block starts on a cache line.
  const int tiles = (T + kTok - 1) / kTok;
  const int nt = std::max(1, std::min({call_threads(), tiles, (int)((int64_t)H * T / 131072)}));
  std::vector<float> parts = empty_ranges(nt);
  pool().run(nt, [&](int c) {
    const int a = std::min(T, tiles * c / nt * kTok), b = std::min(T, tiles * (c + 1) / nt * kTok);
    if (b > a) ops->layernorm(x, res, T, H, a, b, gamma, beta, eps, &parts[2 * c]);
  });
  combine_ranges(parts, range);
}

void gelu(const IsaOps* ops, float* v, int64_t n, const float* P, const float* Q, float clamp, float* range) {
  const int nt = std::max(1, std::min<int>(call_threads(), (int)(n / 65536)));
  std::vector<float> parts = empty_ranges(nt);
  pool().run(nt, [&](int c) {
    const int64_t a = n * c / nt / 16 * 16, b = c + 1 == nt ? n : n * (c + 1) / nt / 16 * 16;
    if (b > a) ops->gelu(v + a, b - a, P, Q, clamp, &parts[2 * c]);
  });
  combine_ranges(parts, range);
}

}  // namespace pruneofa
