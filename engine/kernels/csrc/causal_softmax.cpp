// The softmax of a prefill chunk's attention scores, in place: scale, causal mask, softmax and the
// rounding back to the scores' dtype in one pass (torch.ops.sluicegate.causal_softmax_).
//
// The CPU extend attention (engine/attention/torch_backend.py) keeps its two matmuls in torch
// (oneDNN) and calls this between them. In torch the step between was six ops over an fp32 copy of
// the scores (to fp32, scale, mask bias, softmax, back to bf16), ~45% of a prefix-cached turn's
// attention time; here each score is read once and written once, and the masked tail is only
// zeroed. Arithmetic is fp32 as in torch's; the exp is cpu_common.h's (~1e-7 relative), so a
// probability can round to the neighbouring bf16 value.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_common.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

using namespace sluicegate_kernels;

// One row of n scores whose first `valid` keys are visible: probabilities in place, zeros after.
template <typename T>
void softmax_row(T* row, int64_t valid, int64_t n, float scale, float* x) {
  // the max in 16 lanes: gcc leaves a max reduction over one scalar unvectorized (a serial vmaxss)
  constexpr int64_t kLanes = 16;
  float lane_top[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) lane_top[l] = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= valid; j += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) {
      x[j + l] = to_float(row[j + l]) * scale;
      lane_top[l] = x[j + l] > lane_top[l] ? x[j + l] : lane_top[l];
    }
  }
  for (; j < valid; ++j) {
    x[j] = to_float(row[j]) * scale;
    lane_top[0] = x[j] > lane_top[0] ? x[j] : lane_top[0];
  }
  float top = lane_top[0];
  for (int64_t l = 1; l < kLanes; ++l) top = std::max(top, lane_top[l]);
  float total = 0.f;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < valid; ++j) {
    x[j] = exp_nonpositive_vectorizable(x[j] - top);
    total += x[j];
  }
  const float inv = 1.f / total;
#pragma omp simd
  for (int64_t j = 0; j < valid; ++j) row[j] = from_float<T>(x[j] * inv);
  const T zero = from_float<T>(0.f);
  for (int64_t j = valid; j < n; ++j) row[j] = zero;
}

// scores [G, Q, L] contiguous (G: any leading groups, e.g. KV heads x their query heads; Q: query
// rows at positions first_pos, first_pos + 1, ...; L: keys at positions 0..L-1) -> in place, row q
// of every group holds softmax(scale * scores) over keys 0..first_pos + q, and zeros after.
void causal_softmax_(at::Tensor scores, int64_t first_pos, double scale) {
  TORCH_CHECK(scores.device().is_cpu() && scores.dim() == 3 && scores.is_contiguous(),
              "causal_softmax_: scores must be a contiguous CPU tensor [G, Q, L]");
  const int64_t groups = scores.size(0), queries = scores.size(1), keys = scores.size(2);
  TORCH_CHECK(first_pos >= 0 && first_pos + queries <= keys,
              "causal_softmax_: query positions ", first_pos, "..", first_pos + queries - 1,
              " must lie within the ", keys, " keys");
  dispatch(scores.scalar_type(), "causal_softmax_", [&](auto tag) {
    using T = decltype(tag);
    T* base = scores.data_ptr<T>();
    // a row is ~L values of work: enough rows per task that small calls stay on one thread
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(keys, 1));
    at::parallel_for(0, groups * queries, grain, [&](int64_t begin, int64_t end) {
      std::vector<float> x(keys);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t q = r % queries;
        softmax_row(base + r * keys, first_pos + q + 1, keys, static_cast<float>(scale), x.data());
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sluicegate, m) {
  m.def("causal_softmax_(Tensor(a!) scores, int first_pos, float scale) -> ()");
}

TORCH_LIBRARY_IMPL(sluicegate, CPU, m) {
  m.impl("causal_softmax_", &causal_softmax_);
}
