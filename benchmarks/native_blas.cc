// Whose products for the native kernel (benchmarks/NOTES.md, entries 8a and 11a): single-threaded
// float32 C (m, n) = A (m, k) W^T (n, k), row-major, at the kernel's shapes (the step h W_hh^T,
// the backward's dh, the input projection), through the kernel's own engine (native/gru_gemm.h,
// on packed W), MKL (plain and packed) and OpenBLAS (scipy-openblas32); interleaved, medians of 7,
// best of 3 rounds; the engine's largest difference from a float64 sum too. A one-off
// measurement, not part of the build. With MKL unpacked beside it (its wheels, e.g.
// pip download mkl==2026.2.0 mkl-include==2026.2.0 and unzip them: M=<the unpacked data folder>),
// V=.venv, OB=$($V/bin/python -c "import scipy_openblas32 as s; print(s.get_lib_dir())"):
//   g++ -O3 -std=c++17 -Inative benchmarks/native_blas.cc -I$M/include -L$M/lib -l:libmkl_intel_lp64.so.3 \
//     -l:libmkl_sequential.so.3 -l:libmkl_core.so.3 -L$OB -lscipy_openblas -Wl,-rpath,$M/lib \
//     -Wl,-rpath,$OB -o /tmp/native_blas && /tmp/native_blas [avx2]
// An argument picks a lesser engine; for AVX2 against AVX2, also set OPENBLAS_CORETYPE=Haswell
// and MKL_ENABLE_INSTRUCTIONS=AVX2.
#include <mkl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "gru_gemm.h"

extern "C" void scipy_cblas_sgemm(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
extern "C" void scipy_openblas_set_num_threads(int);

namespace gemm = jaxgru_native::gemm;

template <class F>
double Median(F f, int reps) {  // microseconds per call
  std::vector<double> t;
  for (int r = 0; r < 7; ++r) {
    auto a = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(b - a).count() / reps);
  }
  std::sort(t.begin(), t.end());
  return t[3];
}

int main(int argc, char** argv) {
  mkl_set_num_threads(1);
  scipy_openblas_set_num_threads(1);
  if (argc > 1 && !gemm::Select(argv[1])) return std::fprintf(stderr, "no engine %s here\n", argv[1]), 1;
  std::printf("engine %s; GFLOP/s, one thread\n", gemm::Pick().name);
  // (m, k, n): steps (B/2 rows, H, 3H), the backward's dh (B/2, 3H, H), input projections (16 B/2, I, 3H)
  const int shapes[][3] = {{64, 128, 384},   {32, 128, 384},   {16, 128, 384},  {48, 192, 576},   {32, 256, 768},
                           {32, 512, 1536},  {32, 1024, 3072}, {32, 3072, 1024}, {95, 16, 48},  {512, 128, 384},
                           {512, 1024, 3072}};
  std::mt19937 g(0);
  std::uniform_real_distribution<float> u(-1, 1);
  std::printf("(   m,    k,    n)  engine  mkl_packed   mkl  openblas   engine's max |error|\n");
  for (const auto& s : shapes) {
    const int M = s[0], K = s[1], N = s[2];
    std::vector<float> A(size_t(M) * K), W(size_t(N) * K), C(size_t(M) * N), R(size_t(M) * N);
    for (auto& v : A) v = u(g);
    for (auto& v : W) v = u(g);
    std::vector<float> storage(gemm::PackedSize(N, K) + 16);
    float* packed = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(storage.data()) + 63) & ~uintptr_t(63));
    if (gemm::Active()) gemm::Pack(W.data(), N, K, K, 1, 0, gemm::Panels(N), packed);
    auto engine = [&] {
      if (gemm::Active()) return gemm::MatMul(A.data(), K, 1, M, packed, N, K, C.data(), N, false);
      scipy_cblas_sgemm(101, 111, 112, M, N, K, 1.f, A.data(), K, W.data(), K, 0.f, C.data(), N);
    };
    engine();
    double error = 0;
    for (int i = 0; i < M; ++i) {
      for (int j = 0; j < N; ++j) {
        double want = 0;
        for (int l = 0; l < K; ++l) want += double(A[size_t(i) * K + l]) * W[size_t(j) * K + l];
        error = std::max(error, std::fabs(want - C[size_t(i) * N + j]));
      }
    }
    float* mkl_packed = static_cast<float*>(mkl_malloc(cblas_sgemm_pack_get_size(CblasBMatrix, M, N, K), 64));
    cblas_sgemm_pack(CblasRowMajor, CblasBMatrix, CblasTrans, M, N, K, 1.f, W.data(), K, mkl_packed);
    const int reps = std::max(5, int(4000000 / (int64_t(M) * N * K / 64 + 1)));
    double best[4] = {1e30, 1e30, 1e30, 1e30};
    for (int round = 0; round < 3; ++round) {  // interleaved
      best[0] = std::min(best[0], Median(engine, reps));
      best[1] = std::min(best[1], Median([&] { cblas_sgemm_compute(CblasRowMajor, CblasNoTrans, CblasPacked, M, N, K, A.data(), K, mkl_packed, K, 0.f, R.data(), N); }, reps));
      best[2] = std::min(best[2], Median([&] { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, A.data(), K, W.data(), K, 0.f, R.data(), N); }, reps));
      best[3] = std::min(best[3], Median([&] { scipy_cblas_sgemm(101, 111, 112, M, N, K, 1.f, A.data(), K, W.data(), K, 0.f, R.data(), N); }, reps));
    }
    const double mflop = 2.0 * M * N * K / 1e3;  // per microsecond: GFLOP/s
    std::printf("(%4d, %4d, %4d)  %6.0f  %10.0f  %4.0f  %8.0f   %.1e\n", M, K, N, mflop / best[0], mflop / best[1], mflop / best[2],
                mflop / best[3], error);
    mkl_free(mkl_packed);
  }
}
