// Python bindings (nanobind). Arrays in and out are NumPy; the heavy calls release the GIL.
// The friendly API with validation and docs lives in pruneofa/runtime/kernels.py.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <algorithm>
#include <optional>
#include <vector>
#include <stdexcept>
#include <string>

#include "attention.h"
#include "runtime.h"

namespace nb = nanobind;
using namespace pruneofa;

template <class T>
using In2 = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
template <class T>
using In1 = nb::ndarray<const T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <class T>
using Out2 = nb::ndarray<T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

template <class T>
static nb::ndarray<nb::numpy, T> new_array(std::initializer_list<size_t> shape) {
  size_t n = 1;
  for (size_t s : shape) n *= s;
  // Cache-line aligned (runtime.h, kAlign): these are the tiled activations and outputs the kernels stream.
  T* data = CacheAligned<T>().allocate(n == 0 ? 1 : n);
  nb::capsule owner(data, [](void* p) noexcept { CacheAligned<T>().deallocate(static_cast<T*>(p), 0); });
  return nb::ndarray<nb::numpy, T>(data, shape.size(), shape.begin(), owner);
}

// Output either allocated here or checked and reused (lets a runtime keep per-layer buffers).
template <class T>
static T* out_ptr(std::optional<Out2<T>>& out, nb::ndarray<nb::numpy, T>& fresh, size_t N, size_t Tn) {
  if (out) {
    if (out->shape(0) != N || out->shape(1) != Tn)
      throw std::invalid_argument("out has shape (" + std::to_string(out->shape(0)) + ", " +
                                  std::to_string(out->shape(1)) + "), expected (" + std::to_string(N) + ", " +
                                  std::to_string(Tn) + ")");
    return out->data();
  }
  fresh = new_array<T>({N, Tn});
  return fresh.data();
}

static void check_k(size_t got, int K, const char* what) {
  if ((int)got != K)
    throw std::invalid_argument(std::string(what) + " has K=" + std::to_string(got) + " rows, weights expect K=" +
                                std::to_string(K) + " (activations are feature-major [K, T])");
}

static void check_tiled(size_t got, int K, int T) {
  if ((int64_t)got != int8_tiled_bytes(K, T))
    throw std::invalid_argument("tiled activations have " + std::to_string(got) + " bytes, expected " +
                                std::to_string(int8_tiled_bytes(K, T)) + " for K=" + std::to_string(K) +
                                ", T=" + std::to_string(T));
}

// A QAT model's fixed activation quantization (scale, zero point), checked before the GIL is released.
static void check_static(std::optional<float> static_scale, int static_zp) {
  if (static_scale && !(*static_scale > 0.0f)) throw std::invalid_argument("static_scale must be > 0");
  if (static_zp < 0 || static_zp > 255) throw std::invalid_argument("static_zp must be in [0, 255]");
}

using Range = std::optional<std::tuple<float, float>>;

// Quantize feature-major x [K, T] into the tiled layout at `out`: with this tensor's range (dynamic, as
// ONNX Runtime does) or, when static_scale is given, those fixed parameters. Sets the (scale, zp) used.
// x_range, when given, is x's exact (min, max) as the op that wrote x reported it (add_layer_norm_,
// gelu_rational_): the dynamic parameters come from it and the pass over x that finds them is skipped.
static void quantize_into(const IsaOps* ops, const float* x, int K, int T, std::optional<float> static_scale,
                          int static_zp, const Range& x_range, uint8_t* out, float* scale, int* zp) {
  *scale = static_scale ? *static_scale : 0.0f;
  *zp = static_zp;
  if (!static_scale) {
    if (x_range)
      range_params(std::get<0>(*x_range), std::get<1>(*x_range), scale, zp);
    else
      quant_params(ops, x, (int64_t)K * T, scale, zp);
  }
  quantize_tiled(ops, x, K, T, *scale, *zp, out);
}

static nb::tuple range_tuple(const float* range) { return nb::make_tuple(range[0], range[1]); }

NB_MODULE(_kernels, m) {
  m.def("cpu_has", &cpu_has);
  m.def("compiled_avx2", &compiled_avx2);
  m.def("compiled_avx512", &compiled_avx512);
  m.def("compiled_avx512_emulated", &compiled_avx512_emulated);
  m.def("isa_name", [](int isa) { return std::string(select_isa(isa)->name); });
  m.def("set_num_threads", &set_num_threads);
  m.def("get_num_threads", &get_num_threads);
  m.def("set_call_threads", &set_call_threads);
  m.def("call_threads", &call_threads);

  m.def("quantize", [](In2<float> x, int isa, std::optional<float> static_scale, int static_zp, Range x_range) {
    const IsaOps* ops = select_isa(isa);
    check_static(static_scale, static_zp);
    const int K = (int)x.shape(0), T = (int)x.shape(1);
    auto out = new_array<uint8_t>({(size_t)int8_tiled_bytes(K, T)});
    float scale;
    int zp;
    {
      nb::gil_scoped_release r;
      quantize_into(ops, x.data(), K, T, static_scale, static_zp, x_range, out.data(), &scale, &zp);
    }
    return nb::make_tuple(out, scale, zp);
  }, nb::arg("x"), nb::arg("isa"), nb::arg("static_scale").none() = nb::none(), nb::arg("static_zp") = 0,
     nb::arg("x_range").none() = nb::none());
  m.def("tile_u8", [](In2<uint8_t> xq) {
    const int K = (int)xq.shape(0), T = (int)xq.shape(1);
    auto out = new_array<uint8_t>({(size_t)int8_tiled_bytes(K, T)});
    tile_u8(xq.data(), K, T, out.data());
    return out;
  });

  nb::class_<Int8Packed>(m, "Int8Matrix")
      .def("__init__",
           [](Int8Packed* self, In2<int8_t> w, In1<float> scales, std::optional<In1<float>> bias, bool gathered) {
             const int N = (int)w.shape(0), K = (int)w.shape(1);
             if ((int)scales.shape(0) != N) throw std::invalid_argument("scales must have N entries");
             if (bias && (int)bias->shape(0) != N) throw std::invalid_argument("bias must have N entries");
             new (self) Int8Packed(pack_int8(w.data(), N, K, scales.data(), bias ? bias->data() : nullptr, gathered));
           }, nb::arg("w"), nb::arg("scales"), nb::arg("bias").none(), nb::arg("gathered") = false)
      .def_ro("gathered", &Int8Packed::gathered)
      .def_ro("N", &Int8Packed::N)
      .def_ro("K", &Int8Packed::K)
      .def_ro("nnz", &Int8Packed::nnz)
      .def_prop_ro("nblocks", [](const Int8Packed& p) {
        return (int64_t)(p.gathered ? p.gathers.size() : p.blocks.size());
      })
      .def("matmul",
           [](const Int8Packed& p, In1<uint8_t> xt, int T, float x_scale, int zp, int isa,
              std::optional<Out2<float>> out) {
             const IsaOps* ops = select_isa(isa);
             check_tiled(xt.shape(0), p.K, T);
             nb::ndarray<nb::numpy, float> fresh;
             float* y = out_ptr(out, fresh, p.N, T);
             {
               nb::gil_scoped_release r;
               int8_matmul(ops, p, xt.data(), T, x_scale, zp, nullptr, y);
             }
             return out ? nb::cast(*out) : nb::cast(fresh);
           })
      .def("matmul_int32",
           [](const Int8Packed& p, In1<uint8_t> xt, int T, int isa) {
             const IsaOps* ops = select_isa(isa);
             check_tiled(xt.shape(0), p.K, T);
             auto y = new_array<int32_t>({(size_t)p.N, (size_t)T});
             {
               nb::gil_scoped_release r;
               int8_matmul(ops, p, xt.data(), T, 1.0f, 0, y.data(), nullptr);
             }
             return y;
           })
      .def("forward", [](const Int8Packed& p, In2<float> x, int isa, std::optional<Out2<float>> out,
                         std::optional<float> static_scale, int static_zp, Range x_range) {
        // Quantize + tile + matmul in one call; the tiled buffer is a per-thread scratch reused
        // across calls so steady-state inference does no large allocation. Without static_scale the
        // activation range is this call's (dynamic, as ONNX Runtime); with it, the QAT scale and zero point.
        const IsaOps* ops = select_isa(isa);
        check_k(x.shape(0), p.K, "x");
        check_static(static_scale, static_zp);
        const int T = (int)x.shape(1);
        nb::ndarray<nb::numpy, float> fresh;
        float* y = out_ptr(out, fresh, p.N, T);
        {
          nb::gil_scoped_release r;
          thread_local AlignedVec<uint8_t> scratch;
          scratch.resize((size_t)int8_tiled_bytes(p.K, T));
          float scale;
          int zp;
          quantize_into(ops, x.data(), p.K, T, static_scale, static_zp, x_range, scratch.data(), &scale, &zp);
          int8_matmul(ops, p, scratch.data(), T, scale, zp, nullptr, y);
        }
        return out ? nb::cast(*out) : nb::cast(fresh);
      }, nb::arg("x"), nb::arg("isa"), nb::arg("out").none(), nb::arg("static_scale").none() = nb::none(),
         nb::arg("static_zp") = 0, nb::arg("x_range").none() = nb::none());

  nb::class_<F32Packed>(m, "F32Matrix")
      .def("__init__",
           [](F32Packed* self, In2<float> w, std::optional<In1<float>> bias) {
             const int N = (int)w.shape(0), K = (int)w.shape(1);
             if (bias && (int)bias->shape(0) != N) throw std::invalid_argument("bias must have N entries");
             new (self) F32Packed(pack_f32(w.data(), N, K, bias ? bias->data() : nullptr));
           })
      .def_ro("N", &F32Packed::N)
      .def_ro("K", &F32Packed::K)
      .def_prop_ro("nnz", [](const F32Packed& p) { return (int64_t)p.nz.size(); })
      .def("forward", [](const F32Packed& p, In2<float> x, int isa, std::optional<Out2<float>> out) {
        const IsaOps* ops = select_isa(isa);
        check_k(x.shape(0), p.K, "x");
        const int T = (int)x.shape(1);
        nb::ndarray<nb::numpy, float> fresh;
        float* y = out_ptr(out, fresh, p.N, T);
        {
          nb::gil_scoped_release r;
          thread_local AlignedVec<float> scratch;
          scratch.resize((size_t)f32_tiled_floats(p.K, T));
          tile_f32(x.data(), p.K, T, scratch.data());
          f32_matmul(ops, p, scratch.data(), T, y);
        }
        return out ? nb::cast(*out) : nb::cast(fresh);
      });

  // The encoder's elementwise work, on the best ISA the CPU has (isa=0) or a forced one. All in place.
  using Buf2 = nb::ndarray<float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
  m.def("add_layer_norm_", [](Buf2 x, std::optional<In2<float>> res, In1<float> gamma, In1<float> beta, float eps,
                              int isa) {
    const IsaOps* ops = select_isa(isa);
    const int H = (int)x.shape(0), T = (int)x.shape(1);
    if ((int)gamma.shape(0) != H || (int)beta.shape(0) != H)
      throw std::invalid_argument("gamma and beta must have H=" + std::to_string(H) + " entries");
    if (res && (res->shape(0) != x.shape(0) || res->shape(1) != x.shape(1)))
      throw std::invalid_argument("residual must have the shape of x");
    float range[2];
    {
      nb::gil_scoped_release r;
      add_layer_norm(ops, x.data(), res ? res->data() : nullptr, H, T, gamma.data(), beta.data(), eps, range);
    }
    return range_tuple(range);  // (min, max) of the output: the next Linear's quantization range
  });
  // Softmax of the rows of a [rows, len] array; runs on the calling thread (the runtime calls it
  // from its own per-head workers), with the GIL released.
  m.def("softmax_rows_", [](Buf2 s, std::optional<In1<float>> bias, int isa) {
    const IsaOps* ops = select_isa(isa);
    const int64_t rows = (int64_t)s.shape(0);
    const int len = (int)s.shape(1);
    if (len == 0) return;
    if (bias && (int)bias->shape(0) != len) throw std::invalid_argument("bias must have one entry per column");
    nb::gil_scoped_release r;
    ops->softmax(s.data(), rows, len, bias ? bias->data() : nullptr);
  });
  // Exact (erf) GELU in place: x * (1/2 + u P(u^2) / Q(u^2)), u = clamp(x); the rational erf's
  // coefficients come from Python (runtime/ops.py holds them once).
  m.def("gelu_rational_", [](nb::ndarray<float, nb::ndim<1>, nb::c_contig, nb::device::cpu> x, In1<float> p,
                             In1<float> q, float clamp, int isa) {
    if (p.shape(0) != 7 || q.shape(0) != 5) throw std::invalid_argument("gelu_rational_ expects 7 + 5 coefficients");
    const IsaOps* ops = select_isa(isa);
    float range[2];
    {
      nb::gil_scoped_release r;
      gelu(ops, x.data(), (int64_t)x.shape(0), p.data(), q.data(), clamp, range);
    }
    return range_tuple(range);
  });

  // ---------------------------------------------------------------- attention
  // Fused attention over every (sequence, head) on the pool: ctx [H, B*T] from the fused QKV output
  // qkv [3H, B*T] (1/sqrt(d) already in Q), with an optional additive key bias [B*T] (padding mask)
  // and an optional relative position bias [heads, T keys, T queries] (flattened) shared by the batch.
  m.def("attention_", [](In2<float> qkv, Buf2 ctx, int heads, int batch, std::optional<In1<float>> bias,
                         std::optional<In1<float>> pos, int isa, bool int8) {
    const IsaOps* ops = select_isa(isa);
    const int64_t H = (int64_t)ctx.shape(0), BT = (int64_t)ctx.shape(1);
    if (heads < 1 || batch < 1 || H % heads != 0 || BT % batch != 0)
      throw std::invalid_argument("attention_: heads must divide H=" + std::to_string(H) +
                                  " and batch must divide B*T=" + std::to_string(BT));
    if ((int64_t)qkv.shape(0) != 3 * H || (int64_t)qkv.shape(1) != BT)
      throw std::invalid_argument("attention_: qkv must have shape (3H, B*T) = (" + std::to_string(3 * H) + ", " +
                                  std::to_string(BT) + ")");
    if (bias && (int64_t)bias->shape(0) != BT) throw std::invalid_argument("attention_: bias must have B*T entries");
    const int64_t T = BT / batch;
    if (pos && (int64_t)pos->shape(0) != heads * T * T)
      throw std::invalid_argument("attention_: pos must have heads*T*T entries (a [heads, T, T] bias, keys first)");
    if (int8 && !attention_int8_available(ops))
      throw std::invalid_argument(std::string("int8 attention has no build for the ") + ops->name +
                                  " path (it runs on vnni and portable): use fp32 attention there");
    nb::gil_scoped_release r;
    attention(ops, qkv.data(), (int)H, heads, batch, (int)T, pos ? pos->data() : nullptr, bias ? bias->data() : nullptr,
              ctx.data(), int8);
  }, nb::arg("qkv"), nb::arg("ctx"), nb::arg("heads"), nb::arg("batch"), nb::arg("bias").none(), nb::arg("pos").none(),
     nb::arg("isa"), nb::arg("int8") = false);
  // Whether the path `isa` has an int8 attention (vnni, vnni-emulated and portable; not avx2).
  m.def("attention_int8_available", [](int isa) { return attention_int8_available(select_isa(isa)); });
}
