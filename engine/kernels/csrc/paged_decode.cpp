// Decode attention on the paged KV cache: one new token per sequence attends to its whole cached
// context, read block by block where it lies (torch's path gathers K and V into dense copies first,
// then runs two batched matmuls and a softmax: ~250 µs a layer for 8 sequences of 250 tokens).
//
// One task per (sequence, KV head): its query group's G rows against the sequence's L tokens, in
// fp32 (torch's path rounds the scores and the probabilities to bf16; this does not). Scores come
// 16 tokens at a time: each token's products stay a 16-lane vector until a transpose-and-add tree
// reduces the 16 vectors to 16 scores at once, instead of one horizontal sum per token and head.
// Written with GCC/Clang vector extensions, which compile to the machine's SIMD width.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_common.h"

#include <cstring>
#include <vector>

namespace {

using namespace sluicegate_kernels;

typedef float f32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

constexpr int64_t kLanes = 16;
constexpr int64_t kMaxGroup = 16;  // query heads per KV head this kernel takes

inline f32x16 load16(const c10::BFloat16* p) {
  u16x16 raw;
  std::memcpy(&raw, p, sizeof(raw));
  return std::bit_cast<f32x16>(__builtin_convertvector(raw, u32x16) << 16);
}

inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Lanes 0..7: sums of a's adjacent lane pairs; lanes 8..15: b's.
inline f32x16 pair_sums(f32x16 a, f32x16 b) {
  const i32x16 even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  const i32x16 odd = even + 1;
  return __builtin_shuffle(a, b, even) + __builtin_shuffle(a, b, odd);
}

// p[t] holds token t's 16 partial products: -> lane t = token t's sum, for t in 0..15.
inline f32x16 transpose_sums(f32x16* p) {
  for (int64_t n = 8; n >= 1; n /= 2) {
    for (int64_t i = 0; i < n; ++i) p[i] = pair_sums(p[2 * i], p[2 * i + 1]);
  }
  return p[0];
}

inline float lane_sum(f32x16 v) {
  float s = 0.f;
  for (int64_t i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// One (sequence, KV head). q: G rows at q_stride; the cache rows of head h for token t at
// blocks[t / block_size] * block_stride + (t % block_size) * token_stride; out: G rows of D.
template <typename T, int64_t D>
void attend_group(const T* q, int64_t q_stride, const T* k_cache, const T* v_cache, int64_t block_stride,
                  int64_t token_stride, const int32_t* blocks, int64_t block_size, int64_t L, int64_t G,
                  float scale, T* out) {
  constexpr int64_t C = D / kLanes;  // vectors per row
  f32x16 qv[kMaxGroup][C];
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t c = 0; c < C; ++c) qv[g][c] = load16(q + g * q_stride + c * kLanes) * scale;
  }
  std::vector<float> scores(G * L);

  // scores[g, t] = q_g . k_t, 16 tokens of a block at a time
  f32x16 partial[kMaxGroup][kLanes];
  for (int64_t t0 = 0, b = 0; t0 < L; t0 += block_size, ++b) {
    const T* base = k_cache + static_cast<int64_t>(blocks[b]) * block_stride;
    const int64_t end = std::min(L, t0 + block_size);
    for (int64_t s = t0; s < end; s += kLanes) {
      const int64_t n = std::min(kLanes, end - s);
      for (int64_t j = 0; j < n; ++j) {
        f32x16 k[C];
        for (int64_t c = 0; c < C; ++c) k[c] = load16(base + (s - t0 + j) * token_stride + c * kLanes);
        for (int64_t g = 0; g < G; ++g) {
          f32x16 acc = qv[g][0] * k[0];
          for (int64_t c = 1; c < C; ++c) acc += qv[g][c] * k[c];
          partial[g][j] = acc;
        }
      }
      for (int64_t g = 0; g < G; ++g) {
        if (n == kLanes) {
          const f32x16 sums = transpose_sums(partial[g]);
          std::memcpy(&scores[g * L + s], &sums, sizeof(sums));
        } else {
          for (int64_t j = 0; j < n; ++j) scores[g * L + s + j] = lane_sum(partial[g][j]);
        }
      }
    }
  }

  // softmax over t, per query row
  float inv_sum[kMaxGroup];
  for (int64_t g = 0; g < G; ++g) {
    float* row = scores.data() + g * L;
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t t = 0; t < L; ++t) m = row[t] > m ? row[t] : m;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t t = 0; t < L; ++t) {
      row[t] = exp_vectorizable(row[t] - m);
      sum += row[t];
    }
    inv_sum[g] = 1.f / sum;
  }

  // out_g = sum_t p[g, t] v_t / sum
  f32x16 acc[kMaxGroup][C] = {};
  for (int64_t t0 = 0, b = 0; t0 < L; t0 += block_size, ++b) {
    const T* base = v_cache + static_cast<int64_t>(blocks[b]) * block_stride;
    for (int64_t t = t0, end = std::min(L, t0 + block_size); t < end; ++t) {
      f32x16 v[C];
      for (int64_t c = 0; c < C; ++c) v[c] = load16(base + (t - t0) * token_stride + c * kLanes);
      for (int64_t g = 0; g < G; ++g) {
        const float p = scores[g * L + t];
        for (int64_t c = 0; c < C; ++c) acc[g][c] += p * v[c];
      }
    }
  }
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t c = 0; c < C; ++c) {
      const f32x16 o = acc[g][c] * inv_sum[g];
      for (int64_t i = 0; i < kLanes; ++i) out[g * D + c * kLanes + i] = from_float<T>(o[i]);
    }
  }
}

template <typename T>
using GroupFn = void (*)(const T*, int64_t, const T*, const T*, int64_t, int64_t, const int32_t*, int64_t, int64_t,
                         int64_t, float, T*);

template <typename T>
GroupFn<T> group_kernel(int64_t head_dim) {
  switch (head_dim) {
    case 64: return &attend_group<T, 64>;
    case 128: return &attend_group<T, 128>;
    default: return nullptr;
  }
}

// q [B, H, D] (rows contiguous), caches [num_blocks, block_size, KV, D] contiguous, block_tables
// [B, W] int32, seq_lens [B] int32 -> out [B, H, D]. Head sizes 64 and 128, H / KV <= 16.
at::Tensor paged_decode_attention(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                  const at::Tensor& block_tables, const at::Tensor& seq_lens, double scale) {
  TORCH_CHECK(q.device().is_cpu() && q.dim() == 3 && q.stride(2) == 1,
              "paged_decode_attention: q must be a CPU tensor [B, H, D] with contiguous rows");
  TORCH_CHECK(k_cache.dim() == 4 && k_cache.is_contiguous() && v_cache.is_contiguous() &&
                  v_cache.sizes() == k_cache.sizes(),
              "paged_decode_attention: caches must be contiguous [num_blocks, block_size, KV, D]");
  TORCH_CHECK(k_cache.scalar_type() == q.scalar_type() && v_cache.scalar_type() == q.scalar_type(),
              "paged_decode_attention: q and the caches must share a dtype");
  TORCH_CHECK(block_tables.scalar_type() == at::kInt && seq_lens.scalar_type() == at::kInt &&
                  block_tables.dim() == 2 && seq_lens.dim() == 1 && block_tables.size(0) == q.size(0) &&
                  seq_lens.size(0) == q.size(0),
              "paged_decode_attention: block_tables [B, W] and seq_lens [B] must be int32");
  const int64_t B = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t num_blocks = k_cache.size(0), block_size = k_cache.size(1), KV = k_cache.size(2);
  TORCH_CHECK(k_cache.size(3) == D && KV > 0 && H % KV == 0 && H / KV <= kMaxGroup && (D == 64 || D == 128),
              "paged_decode_attention: takes head sizes 64 and 128 and up to 16 query heads per KV head");
  const at::Tensor tables = block_tables.contiguous(), lens = seq_lens.contiguous();
  const int64_t width = tables.size(1), G = H / KV;
  const int32_t* table = tables.data_ptr<int32_t>();
  const int32_t* len = lens.data_ptr<int32_t>();
  for (int64_t b = 0; b < B; ++b) {
    TORCH_CHECK(len[b] > 0 && (len[b] + block_size - 1) / block_size <= width,
                "paged_decode_attention: sequence ", b, " has length ", len[b], " outside its block table");
    for (int64_t i = 0; i < (len[b] + block_size - 1) / block_size; ++i) {
      TORCH_CHECK(table[b * width + i] >= 0 && table[b * width + i] < num_blocks,
                  "paged_decode_attention: block id outside the cache");
    }
  }
  at::Tensor out = at::empty({B, H, D}, q.options());
  dispatch(q.scalar_type(), "paged_decode_attention", [&](auto tag) {
    using T = decltype(tag);
    const GroupFn<T> run = group_kernel<T>(D);
    const T* qp = q.data_ptr<T>();
    const T* kp = k_cache.data_ptr<T>();
    const T* vp = v_cache.data_ptr<T>();
    T* op = out.data_ptr<T>();
    at::parallel_for(0, B * KV, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / KV, h = task % KV;
        run(qp + b * q.stride(0) + h * G * q.stride(1), q.stride(1), kp + h * D, vp + h * D, k_cache.stride(0),
            k_cache.stride(1), table + b * width, block_size, len[b], G, static_cast<float>(scale),
            op + (b * H + h * G) * D);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sluicegate, m) {
  m.def("paged_decode_attention(Tensor q, Tensor k_cache, Tensor v_cache, Tensor block_tables, "
        "Tensor seq_lens, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(sluicegate, CPU, m) {
  m.impl("paged_decode_attention", &paged_decode_attention);
}
