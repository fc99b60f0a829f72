// CPU kernels for a layer's small ops (norm, rope + KV write, SiLU gate), registered as torch ops:
// torch.ops.sluicegate.*
//
// A decode step runs ~35 small ops per layer, and at one row torch's composite ops cost more than
// their arithmetic: F.rms_norm is ~10 aten calls (13 µs for 576 values), rotary embedding plus the
// KV-cache write ~14 (~50 µs). Each kernel here does the same arithmetic in one pass and rounds
// where torch's eager ops round, so results are bit-identical to them but for RMSNorm's sum of
// squares, taken in another order (tests/unit/test_cpu_kernels.py).
// Up to kRowGrain rows run serially on the calling thread (a decode step's few rows, where an OpenMP
// region would cost more than the work); longer calls (prefill chunks) split rows over torch's
// threads. Built and loaded by engine/kernels/cpu_ops.py.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_common.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

namespace {

using namespace sluicegate_kernels;

// Rows per task: a row of these ops is well under a microsecond of work, an OpenMP region a few.
constexpr int64_t kRowGrain = 32;

// ---- RMSNorm, with the residual add before it -------------------------------------------------

// residual (+ delta) [T, N] -> (the sum, rms_norm(sum) * weight), rounding as torch's eager ops do:
// the sum to the dtype, then x * rsqrt(mean(x^2) + eps) * weight in fp32, rounded once (F.rms_norm).
template <typename T>
void add_rms_norm_rows(const T* res, const T* delta, const T* w, T* sum, T* normed, int64_t rows, int64_t n,
                       float eps) {
  std::vector<float> x(n);
  for (int64_t r = 0; r < rows; ++r) {
    const T* a = res + r * n;
    if (delta != nullptr) {
      const T* b = delta + r * n;
      T* s = sum + r * n;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) s[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
      a = s;
    }
    load_row(a, x.data(), n);
    float squares = 0.f;
#pragma omp simd reduction(+ : squares)
    for (int64_t i = 0; i < n; ++i) squares += x[i] * x[i];
    const float inv = 1.f / std::sqrt(squares / static_cast<float>(n) + eps);
    T* o = normed + r * n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) o[i] = from_float<T>(x[i] * inv * to_float(w[i]));
  }
}

std::tuple<at::Tensor, at::Tensor> norm_impl(const at::Tensor& residual, const at::Tensor* delta,
                                             const at::Tensor& weight, double eps) {
  TORCH_CHECK(residual.device().is_cpu() && residual.dim() == 2 && residual.is_contiguous(),
              "rms_norm: input must be a contiguous CPU tensor [T, N]");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == residual.size(1) && weight.is_contiguous() &&
                  weight.scalar_type() == residual.scalar_type(),
              "rms_norm: weight must be a contiguous [N] of the input's dtype");
  at::Tensor d;
  if (delta != nullptr) {
    d = delta->contiguous();
    TORCH_CHECK(d.sizes() == residual.sizes() && d.scalar_type() == residual.scalar_type(),
                "add_rms_norm: the residual and the delta must have one shape and dtype");
  }
  const int64_t rows = residual.size(0), n = residual.size(1);
  at::Tensor sum = delta != nullptr ? at::empty_like(residual) : residual;
  at::Tensor normed = at::empty_like(residual);
  dispatch(residual.scalar_type(), "rms_norm", [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* res = residual.data_ptr<scalar_t>();
    const scalar_t* del = delta != nullptr ? d.data_ptr<scalar_t>() : nullptr;
    scalar_t* out_sum = sum.data_ptr<scalar_t>();
    scalar_t* out_normed = normed.data_ptr<scalar_t>();
    at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
      add_rms_norm_rows<scalar_t>(res + begin * n, del != nullptr ? del + begin * n : nullptr, weight.data_ptr<scalar_t>(),
                                  out_sum + begin * n, out_normed + begin * n, end - begin, n, static_cast<float>(eps));
    });
  });
  return {sum, normed};
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return std::get<1>(norm_impl(x, nullptr, weight, eps));
}

std::tuple<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& residual, const at::Tensor& delta,
                                                const at::Tensor& weight, double eps) {
  return norm_impl(residual, &delta, weight, eps);
}

// ---- SiLU gate -----------------------------------------------------------------------------------

// gate_up [T, 2I] -> silu(gate) * up [T, I], rounding as F.silu(gate) * up does: silu to the dtype,
// then the product.
template <typename T>
void silu_mul_rows(const T* gate_up, T* out, int64_t rows, int64_t inter) {
  std::vector<float> silu(inter);
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = gate_up + r * 2 * inter;
    const T* up = gate + inter;
    T* o = out + r * inter;
#pragma omp simd
    for (int64_t i = 0; i < inter; ++i) {
      const float x = to_float(gate[i]);
      silu[i] = x / (1.f + exp_vectorizable(-x));
    }
#pragma omp simd
    for (int64_t i = 0; i < inter; ++i) o[i] = from_float<T>(to_float(from_float<T>(silu[i])) * to_float(up[i]));
  }
}

at::Tensor silu_mul(const at::Tensor& gate_up) {
  TORCH_CHECK(gate_up.device().is_cpu() && gate_up.dim() == 2 && gate_up.is_contiguous() && gate_up.size(1) % 2 == 0,
              "silu_mul: input must be a contiguous CPU tensor [T, 2I]");
  const int64_t rows = gate_up.size(0), inter = gate_up.size(1) / 2;
  at::Tensor out = at::empty({rows, inter}, gate_up.options());
  dispatch(gate_up.scalar_type(), "silu_mul", [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* in = gate_up.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, kRowGrain, [&](int64_t begin, int64_t end) {
      silu_mul_rows<scalar_t>(in + begin * 2 * inter, o + begin * inter, end - begin, inter);
    });
  });
  return out;
}

// ---- Rotary embedding and the KV-cache write ------------------------------------------------------

// out = x * cos + x_rolled * sin over n values, rounding after each op as the eager expression does.
template <typename T>
inline void rotate_part(const T* x, const T* x_rolled, const T* cos, const T* sin, T* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T a = from_float<T>(to_float(x[i]) * to_float(cos[i]));
    const T b = from_float<T>(to_float(x_rolled[i]) * to_float(sin[i]));
    out[i] = from_float<T>(to_float(a) + to_float(b));
  }
}

// One head: x * cos + roll(x, D/2) * signed_sin (engine/models/rope.py's apply_rope); the roll
// pairs the first half with the second and the second with the first.
template <typename T>
inline void rotate_head(const T* x, const T* cos, const T* sin, T* out, int64_t D) {
  const int64_t half = D / 2;
  rotate_part(x, x + half, cos, sin, out, half);
  rotate_part(x + half, x, cos + half, sin + half, out + half, half);
}

// qkv [T, (H + 2 KV) * D] (q heads, then k heads, then v heads), cos / signed_sin [T, D] at the
// tokens' positions, slot_mapping [T] -> q [T, H, D] rotated; k rotated and v written into the
// caches [num_blocks, block_size, KV, D] at their slots.
at::Tensor rope_store_kv(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor k_cache,
                         at::Tensor v_cache, const at::Tensor& slot_mapping, int64_t heads, int64_t kv_heads) {
  TORCH_CHECK(qkv.device().is_cpu() && qkv.dim() == 2 && qkv.is_contiguous(),
              "rope_store_kv: qkv must be a contiguous CPU tensor [T, width]");
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.is_contiguous() && v_cache.is_contiguous() &&
                  v_cache.sizes() == k_cache.sizes(), "rope_store_kv: caches must be contiguous [blocks, block_size, KV, D]");
  const int64_t tokens = qkv.size(0), D = k_cache.size(3);
  TORCH_CHECK(D % 2 == 0 && k_cache.size(2) == kv_heads && qkv.size(1) == (heads + 2 * kv_heads) * D,
              "rope_store_kv: qkv's width does not match the heads and the cache");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.numel() == tokens * D && sin.numel() == tokens * D,
              "rope_store_kv: cos and sin must be contiguous [T, D]");
  for (const at::ScalarType dtype : {cos.scalar_type(), sin.scalar_type(), k_cache.scalar_type(), v_cache.scalar_type()}) {
    TORCH_CHECK(dtype == qkv.scalar_type(), "rope_store_kv: all tensors must have qkv's dtype");
  }
  TORCH_CHECK(slot_mapping.scalar_type() == at::kLong && slot_mapping.numel() == tokens,
              "rope_store_kv: slot_mapping must be int64 [T]");
  const at::Tensor slots = slot_mapping.contiguous();
  const int64_t num_slots = k_cache.size(0) * k_cache.size(1);
  at::Tensor q = at::empty({tokens, heads, D}, qkv.options());
  dispatch(qkv.scalar_type(), "rope_store_kv", [&](auto tag) {
    using scalar_t = decltype(tag);
    const int64_t width = (heads + 2 * kv_heads) * D, kv_width = kv_heads * D;
    const int64_t* slot = slots.data_ptr<int64_t>();
    for (int64_t t = 0; t < tokens; ++t) {
      TORCH_CHECK(slot[t] >= 0 && slot[t] < num_slots, "rope_store_kv: slot ", slot[t], " is outside the cache");
    }
    at::parallel_for(0, tokens, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const scalar_t* row = qkv.data_ptr<scalar_t>() + t * width;
        const scalar_t* c = cos.data_ptr<scalar_t>() + t * D;
        const scalar_t* s = sin.data_ptr<scalar_t>() + t * D;
        scalar_t* q_out = q.data_ptr<scalar_t>() + t * heads * D;
        scalar_t* k_out = k_cache.data_ptr<scalar_t>() + slot[t] * kv_width;
        for (int64_t h = 0; h < heads; ++h) rotate_head(row + h * D, c, s, q_out + h * D, D);
        for (int64_t h = 0; h < kv_heads; ++h) rotate_head(row + (heads + h) * D, c, s, k_out + h * D, D);
        std::memcpy(v_cache.data_ptr<scalar_t>() + slot[t] * kv_width, row + (heads + kv_heads) * D,
                    kv_width * sizeof(scalar_t));
      }
    });
  });
  return q;
}

}  // namespace

TORCH_LIBRARY(sluicegate, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("add_rms_norm(Tensor residual, Tensor delta, Tensor weight, float eps) -> (Tensor, Tensor)");
  m.def("silu_mul(Tensor gate_up) -> Tensor");
  m.def("rope_store_kv(Tensor qkv, Tensor cos, Tensor sin, Tensor(a!) k_cache, Tensor(b!) v_cache, "
        "Tensor slot_mapping, int heads, int kv_heads) -> Tensor");
}

TORCH_LIBRARY_IMPL(sluicegate, CPU, m) {
  m.impl("rms_norm", &rms_norm);
  m.impl("add_rms_norm", &add_rms_norm);
  m.impl("silu_mul", &silu_mul);
  m.impl("rope_store_kv", &rope_store_kv);
}
