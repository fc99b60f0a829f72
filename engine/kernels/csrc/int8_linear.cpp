// x @ W.T for a weight stored as 8-bit codes with one fp32 scale per group of 32 along K (a GGUF's
// Q8_0 layout: w = q * d), for calls of a few rows: a decode step reads each weight once, so it
// costs what reading them costs, and 8-bit codes are half of bf16's bytes.
//
// One pass over the weight for all rows: each group's 32 codes are widened to fp32 and scaled once
// and multiplied into every row's 32-lane accumulator, and each output is one horizontal sum at the
// end of its weight row; one bf16 row takes AVX512-BF16 dot products where the CPU has them. Output
// rows are split across torch's OpenMP pool. The engine uses it for one row
// (engine/models/int8_weights.py): from two rows on, oneDNN's bf16 matmul is faster.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_common.h"

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include <cstring>
#include <vector>

namespace {

using namespace sluicegate_kernels;

constexpr int64_t kGroup = 32;
constexpr int64_t kMaxRows = 8;

// rows of x (fp32, [M, K]) against weight rows [n_begin, n_end): out[m, n] in T. Plain loops over
// 32 lanes that the compiler vectorizes (its lowering of vector-extension int8 conversions is not).
template <typename T, int64_t M>
void rows_kernel(const float* x, const int8_t* codes, const float* scales, int64_t K, int64_t N, int64_t n_begin,
                 int64_t n_end, T* out) {
  const int64_t groups = K / kGroup;
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int8_t* q = codes + n * K;
    const float* d = scales + n * groups;
    float acc[M][kGroup] = {};
    for (int64_t g = 0; g < groups; ++g) {
      float w[kGroup];
#pragma omp simd
      for (int64_t i = 0; i < kGroup; ++i) w[i] = static_cast<float>(q[g * kGroup + i]) * d[g];
      for (int64_t m = 0; m < M; ++m) {
        const float* xm = x + m * K + g * kGroup;
#pragma omp simd
        for (int64_t i = 0; i < kGroup; ++i) acc[m][i] += w[i] * xm[i];
      }
    }
    for (int64_t m = 0; m < M; ++m) {
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < kGroup; ++i) s += acc[m][i];
      out[m * N + n] = from_float<T>(s);
    }
  }
}

#if defined(__AVX512F__) && defined(__AVX512BF16__)
// One bf16 row on CPUs with AVX512-BF16 (what -march=native finds): the codes widen exactly to bf16
// (|q| <= 127 needs 7 bits) and one vdpbf16ps takes a group's 32 products, scaled once per group.
// The plain loops above spend ~5 instructions a 16 weights widening to fp32 and are compute-bound
// (2.1 ms for 49152 x 576 at 2 threads); this is ~1.2 ms, about what reading the codes costs.
void one_bf16_row(const c10::BFloat16* x, const int8_t* codes, const float* scales, int64_t K, int64_t n_begin,
                  int64_t n_end, c10::BFloat16* out) {
  const int64_t groups = K / kGroup;
  for (int64_t n = n_begin; n < n_end; ++n) {
    const int8_t* q = codes + n * K;
    const float* d = scales + n * groups;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < groups; ++g) {
      const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + g * kGroup));
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q8)));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q8, 1)));
      const __m512bh w = _mm512_cvtne2ps_pbh(hi, lo);  // lanes 0..15 from lo, 16..31 from hi
      const __m512bh xg = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + g * kGroup));
      acc = _mm512_fmadd_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), w, xg), _mm512_set1_ps(d[g]), acc);
    }
    out[n] = from_float<c10::BFloat16>(_mm512_reduce_add_ps(acc));
  }
}
#define SLUICEGATE_INT8_BF16_DOT 1
#endif

template <typename T>
using RowsFn = void (*)(const float*, const int8_t*, const float*, int64_t, int64_t, int64_t, int64_t, T*);

template <typename T, int64_t M>
RowsFn<T> rows_kernel_for(int64_t rows) {
  if constexpr (M > kMaxRows) {
    return nullptr;
  } else {
    return rows == M ? &rows_kernel<T, M> : rows_kernel_for<T, M + 1>(rows);
  }
}

// x [M, K] (M <= 8), codes [N, K] int8, scales [N, K / 32] fp32 -> x @ (codes * scales).T [M, N]
// in x's dtype.
at::Tensor int8_linear(const at::Tensor& x, const at::Tensor& codes, const at::Tensor& scales) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.size(0) >= 1 && x.size(0) <= kMaxRows,
              "int8_linear: x must be a CPU tensor [M, K] with 1 to 8 rows");
  TORCH_CHECK(codes.scalar_type() == at::kChar && codes.dim() == 2 && codes.is_contiguous() &&
                  codes.size(1) == x.size(1) && codes.size(1) % kGroup == 0,
              "int8_linear: codes must be a contiguous int8 [N, K] with K a multiple of 32 matching x");
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.is_contiguous() && scales.dim() == 2 &&
                  scales.size(0) == codes.size(0) && scales.size(1) == codes.size(1) / kGroup,
              "int8_linear: scales must be a contiguous float32 [N, K / 32]");
  const int64_t M = x.size(0), K = x.size(1), N = codes.size(0);
  at::Tensor out = at::empty({M, N}, x.options());
#ifdef SLUICEGATE_INT8_BF16_DOT
  if (M == 1 && x.scalar_type() == at::kBFloat16) {
    const at::Tensor xc = x.contiguous();
    const c10::BFloat16* xp = xc.data_ptr<c10::BFloat16>();
    const int8_t* qp = codes.data_ptr<int8_t>();
    const float* sp = scales.data_ptr<float>();
    c10::BFloat16* op = out.data_ptr<c10::BFloat16>();
    at::parallel_for(0, N, 256, [&](int64_t begin, int64_t end) { one_bf16_row(xp, qp, sp, K, begin, end, op); });
    return out;
  }
#endif
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  dispatch(x.scalar_type(), "int8_linear", [&](auto tag) {
    using T = decltype(tag);
    const RowsFn<T> run = rows_kernel_for<T, 1>(M);
    const float* xp = xf.data_ptr<float>();
    const int8_t* qp = codes.data_ptr<int8_t>();
    const float* sp = scales.data_ptr<float>();
    T* op = out.data_ptr<T>();
    at::parallel_for(0, N, 256, [&](int64_t begin, int64_t end) { run(xp, qp, sp, K, N, begin, end, op); });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sluicegate, m) {
  m.def("int8_linear(Tensor x, Tensor codes, Tensor scales) -> Tensor");
}

TORCH_LIBRARY_IMPL(sluicegate, CPU, m) {
  m.impl("int8_linear", &int8_linear);
}
