// Helpers of gru_kernel.cc: the BLAS it is handed, exp / sigmoid / tanh that vectorise, and a
// parallel-for over XLA's intra-op thread pool. Included by gru_kernel.cc alone.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>

#include "xla/ffi/api/ffi.h"

namespace jaxgru_native {

namespace ffi = xla::ffi;

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && defined(JAXGRU_MAX_ISA_AVX2)
#define JAXGRU_CLONES __attribute__((target_clones("avx2", "default")))  // an AVX2 machine's build (benchmarks/avx2_proxy.sh)
#elif defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define JAXGRU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))  // vector width picked at load
#else
#define JAXGRU_CLONES
#endif

// cblas ?gemm (row-major = 101, no transpose = 111, transpose = 112).
using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
using Dgemm = void (*)(int, int, int, int, int, int, double, const double*, int, const double*, int, double, double*, int);
inline Sgemm sgemm = nullptr;
inline Dgemm dgemm = nullptr;

// C (m, n) = alpha op(A) op(B) + beta C, row-major.
template <typename T>
void Gemm(bool ta, bool tb, int m, int n, int k, const T* a, int lda, const T* b, int ldb, T beta, T* c, int ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    sgemm(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  } else {
    dgemm(101, ta ? 112 : 111, tb ? 112 : 111, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
  }
}

// exp(x) to about one ulp, branch-free so that the gate loops vectorise: x = n ln2 + r with
// |r| <= ln2 / 2, exp(r) by its Taylor series (degree 7 for float, 13 for double; the first term
// left out is below half an ulp), 2^n built in the exponent bits. NaN stays NaN; the clamp keeps
// 2^n a normal number (exp saturates to about 1.6e38 / 8e307, never inf).
template <typename T>
inline T Exp(T x) {
  using U = std::conditional_t<std::is_same_v<T, float>, uint32_t, uint64_t>;
  constexpr bool f32 = std::is_same_v<T, float>;
  constexpr T lo = f32 ? T(-87.0) : T(-708.0), hi = f32 ? T(88.0) : T(709.0);
  constexpr T magic = f32 ? T(12582912.0) : T(6755399441055744.0);  // 1.5 * 2^(mantissa bits)
  constexpr T ln2_hi = f32 ? T(0.693145751953125) : T(0.6931471803691238);
  constexpr T ln2_lo = f32 ? T(1.428606765330187e-06) : T(1.9082149292705877e-10);
  x = x < lo ? lo : (x > hi ? hi : x);
  T shifted = x * T(1.4426950408889634) + magic;  // round(x / ln2) sits in the low mantissa bits
  T n = shifted - magic;
  T r = (x - n * ln2_hi) - n * ln2_lo;
  constexpr int degree = f32 ? 7 : 13;
  constexpr T inverse_factorial[14] = {1.0,
                                       1.0,
                                       1.0 / 2,
                                       1.0 / 6,
                                       1.0 / 24,
                                       1.0 / 120,
                                       1.0 / 720,
                                       1.0 / 5040,
                                       1.0 / 40320,
                                       1.0 / 362880,
                                       1.0 / 3628800,
                                       1.0 / 39916800,
                                       1.0 / 479001600,
                                       1.0 / 6227020800};
  T p = inverse_factorial[degree];
  for (int k = degree - 1; k >= 0; --k) p = p * r + inverse_factorial[k];  // Horner
  U bits;
  std::memcpy(&bits, &shifted, sizeof bits);
  constexpr int shift = f32 ? 23 : 52;
  constexpr U bias = f32 ? 127 : 1023;
  U scale_bits = (bits + bias) << shift;  // the magic number's own bits shift out
  T scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return p * scale;
}

template <typename T>
inline T Sigmoid(T x) {
  return T(1) / (T(1) + Exp(-x));
}

template <typename T>
inline T Tanh(T x) {
  return T(2) / (T(1) + Exp(T(-2) * x)) - T(1);
}

// Runs fn(part) for part in [0, parts) on the calling thread and XLA's pool. Parts are claimed
// from a counter, so the caller never waits for a task that has not started: no deadlock when
// the pool is busy (or is the caller), and a task that starts late finds nothing left to do.
template <typename F>
void ParallelFor(ffi::ThreadPool& pool, int parts, F fn) {
  if (parts <= 1) {
    if (parts == 1) fn(0);
    return;
  }
  struct State {
    std::atomic<int> next{0}, done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, parts, fn] {
    for (int p; (p = state->next.fetch_add(1)) < parts;) {
      fn(p);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int i = 1; i < parts; ++i) pool.Schedule(decltype(work)(work));
  work();
  while (state->done.load(std::memory_order_acquire) < parts) std::this_thread::yield();
}

}  // namespace jaxgru_native
