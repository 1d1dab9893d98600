// The kernel's own float32 matrix products against a weight packed once per call (the GRU's
// weights are the same at every step): C (m, n) = A (m, k) W^T (+ C). The register tile's
// shape is the instruction set's (benchmarks/NOTES.md, entry 11), picked once at load:
//   AVX-512: 8 rows x 48 columns (24 accumulators of 16 floats)
//   AVX2:    6 rows x 16 columns (12 accumulators of 8 floats)
// Elsewhere (another CPU, compiler or an older x86) there is no engine ("blas"): float32 goes to
// the BLAS the kernel is handed (gru_support.h), as float64 always does. Included by
// gru_kernel.cc and benchmarks/native_blas.cc.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define JAXGRU_X86_ISAS 1
#endif

namespace jaxgru_native::gemm {

#ifdef JAXGRU_X86_ISAS
#ifndef JAXGRU_MAX_ISA_AVX2
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
namespace avx512 {
constexpr int kV = 16, kNV = 3, kMR = 8;
typedef float Vec __attribute__((vector_size(64)));
typedef float VecU __attribute__((vector_size(64), aligned(4)));
inline Vec Fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec Broadcast(float x) { return _mm512_set1_ps(x); }
#include "gru_gemm_isa.h"
}  // namespace avx512
#pragma GCC pop_options
#endif

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
constexpr int kV = 8, kNV = 2, kMR = 6;
typedef float Vec __attribute__((vector_size(32)));
typedef float VecU __attribute__((vector_size(32), aligned(4)));
inline Vec Fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec Broadcast(float x) { return _mm256_set1_ps(x); }
#include "gru_gemm_isa.h"
}  // namespace avx2
#pragma GCC pop_options
#endif

// One instruction set's engine.
struct Engine {
  const char* name;
  int nr;  // columns per panel; 0: no engine, the BLAS
  void (*pack)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
  void (*matmul)(const float*, int64_t, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t, bool);
};

// The engines this CPU can run, best first.
inline int Available(const Engine** out) {
  int count = 0;
#ifdef JAXGRU_X86_ISAS
  __builtin_cpu_init();
#ifndef JAXGRU_MAX_ISA_AVX2
  static const Engine e512{"avx512", avx512::kNR, avx512::Pack, avx512::MatMul};
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) out[count++] = &e512;
#endif
  static const Engine e2{"avx2", avx2::kNR, avx2::Pack, avx2::MatMul};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out[count++] = &e2;
#endif
  static const Engine none{"blas", 0, nullptr, nullptr};
  out[count++] = &none;
  return count;
}

// The engine in use: the best one, unless Select chose another (before any call packs).
inline const Engine*& Current() {
  static const Engine* engine = [] {
    const Engine* all[3];
    Available(all);
    return all[0];
  }();
  return engine;
}

inline const Engine& Pick() { return *Current(); }

// Picks the engine by name (JAXGRU_NATIVE_ISA, jaxgru/_native.py); false where this CPU or build lacks it.
inline bool Select(const char* name) {
  const Engine* all[3];
  int count = Available(all);
  for (int i = 0; i < count; ++i) {
    if (std::strcmp(all[i]->name, name) == 0) {
      Current() = all[i];
      return true;
    }
  }
  return false;
}

// Whether there is an engine (else the caller multiplies through the BLAS).
inline bool Active() { return Pick().nr > 0; }

// With an engine: W (n, k), element (j, l) at w[j sn + l sk], packed for MatMul in panels of nr
// columns, k rows each. The panels of n columns, and the floats the packed copy takes (both 0
// without an engine):
inline int64_t Panels(int64_t n) { return Active() ? (n + Pick().nr - 1) / Pick().nr : 0; }
inline int64_t PackedSize(int64_t n, int64_t k) { return Panels(n) * Pick().nr * k; }

// Packs panels [p0, p1) of w (all of them: p0 = 0, p1 = Panels(n)).
inline void Pack(const float* w, int64_t n, int64_t k, int64_t sn, int64_t sk, int64_t p0, int64_t p1, float* packed) {
  Pick().pack(w, n, k, sn, sk, p0, p1, packed);
}

// C (m, n) = A (m, k) W^T (+ C), A's element (i, l) at a[i sa + l sl], C row-major with ldc.
inline void MatMul(const float* a, int64_t sa, int64_t sl, int64_t m, const float* packed, int64_t n, int64_t k, float* c,
                   int64_t ldc, bool accumulate) {
  Pick().matmul(a, sa, sl, m, packed, n, k, c, ldc, accumulate);
}

}  // namespace jaxgru_native::gemm
