// What the CPU kernels share: bf16 <-> fp32 conversions and an exp that vectorize, and the dtype
// dispatch. Header-only, included by each kernel file (engine/kernels/csrc/*.cpp).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>

#include <bit>
#include <cstdint>
#include <limits>

namespace sluicegate_kernels {

inline float to_float(c10::BFloat16 x) { return std::bit_cast<float>(static_cast<uint32_t>(x.x) << 16); }
inline float to_float(float x) { return x; }

// float -> T, rounding to nearest even as c10::BFloat16(float) does (NaN -> 0x7FC0), in integer
// ops the compiler vectorizes (c10's conversion does not).
template <typename T>
inline T from_float(float f);

template <>
inline float from_float<float>(float f) {
  return f;
}

template <>
inline c10::BFloat16 from_float<c10::BFloat16>(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  const uint16_t bits = static_cast<uint16_t>((u & 0x7FFFFFFFu) > 0x7F800000u ? 0x7FC0u : rounded);
  return c10::BFloat16(bits, c10::BFloat16::from_bits());
}

template <typename T>
inline void load_row(const T* src, float* dst, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

// exp(x) for x in [-87.3, 88.7228394], written so that the compiler vectorizes it, which it does
// not for std::exp (a libm call): Cephes' expf, 2^n * p(r) with |r| <= ln2 / 2, relative error
// ~1e-7. Rounds n to nearest by adding 1.5 * 2^23, since floorf does not vectorize, and applies 2^n
// as 2^(n-1) * 2 so that n = 128 (x just under 88.72) stays finite.
inline float exp_in_range(float x) {
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  return p * std::bit_cast<float>((static_cast<int32_t>(n) + 126) << 23) * 2.f;
}

// exp(x) for any x: past ln(FLT_MAX) it is +inf, as expf is; below -87.3 it is 0 where expf gives a
// subnormal (no caller here can tell: silu adds it to 1).
inline float exp_vectorizable(float x) {
  const float inf = std::numeric_limits<float>::infinity();
  const float big = x > 88.7228394f ? inf : 1.f;
  const float small = x < -87.3f ? 0.f : 1.f;
  x = x > -87.3f ? (x < 88.7228394f ? x : 88.7228394f) : -87.3f;
  return exp_in_range(x) * big * small;
}

// exp(x) for x <= 0 (a softmax's x - max): without the overflow guard, fewer vector ops. Below -87.3
// it is 0, as expf's subnormals round to in a bf16 softmax anyway.
inline float exp_nonpositive_vectorizable(float x) {
  const float keep = x < -87.3f ? 0.f : 1.f;
  return exp_in_range(x > -87.3f ? x : -87.3f) * keep;
}

// Calls fn(T{}) with T the kernel's element type for dtype: bf16 (what the engine uses them for) or
// fp32 (tests compare the two paths there too).
template <typename Fn>
void dispatch(at::ScalarType dtype, const char* op, Fn&& fn) {
  if (dtype == at::kBFloat16) {
    fn(c10::BFloat16{});
  } else if (dtype == at::kFloat) {
    fn(float{});
  } else {
    TORCH_CHECK(false, op, ": expected bfloat16 or float32 tensors, got ", dtype);
  }
}

}  // namespace sluicegate_kernels
