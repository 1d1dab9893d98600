// Which BLAS for the native kernel (benchmarks/NOTES.md, entry 8): single-threaded GEMM of the
// recurrent step's shape, C (B, 3H) = h (B, H) W_hh^T (3H, H), row-major, float32 and float64,
// MKL (plain and packed) against OpenBLAS (scipy-openblas32), interleaved, medians of 7.
// A one-off measurement, not part of the build. With MKL installed beside the dev extras
// (pip install mkl==2026.2.0 mkl-include==2026.2.0) and V=.venv,
// OB=$(.venv/bin/python -c "import scipy_openblas32 as s; print(s.get_lib_dir())"):
//   g++ -O2 -std=c++17 benchmarks/native_blas.cc -I$V/include -L$V/lib -l:libmkl_intel_lp64.so.3 \
//     -l:libmkl_sequential.so.3 -l:libmkl_core.so.3 -L$OB -lscipy_openblas -Wl,-rpath,$V/lib \
//     -Wl,-rpath,$OB -o /tmp/native_blas && /tmp/native_blas
#include <mkl.h>
#include <chrono>
#include <cstdio>
#include <vector>
#include <algorithm>
#include <random>
extern "C" void scipy_cblas_sgemm(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
extern "C" void scipy_cblas_dgemm(int, int, int, int, int, int, double, const double*, int, const double*, int, double, double*, int);
extern "C" void scipy_openblas_set_num_threads(int);
template <class F> double med(F f, int reps) {
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
int main() {
  mkl_set_num_threads(1);
  scipy_openblas_set_num_threads(1);
  int shapes[][2] = {{64, 128}, {16, 128}, {48, 192}, {64, 256}, {64, 512}, {1, 16}, {16, 64}};
  std::mt19937 g(0);
  std::uniform_real_distribution<float> u(-1, 1);
  printf("shape(B,H)  mkl_sgemm  mkl_packed  openblas_sgemm  mkl_dgemm openblas_dgemm  (us, median of 7, 1 thread)\n");
  for (auto& s : shapes) {
    int M = s[0], K = s[1], N = 3 * s[1];
    std::vector<float> A(M * K), B(N * K), C(M * N);
    std::vector<double> Ad(M * K), Bd(N * K), Cd(M * N);
    for (auto& v : A) v = u(g);
    for (auto& v : B) v = u(g);
    for (size_t i = 0; i < A.size(); ++i) Ad[i] = A[i];
    for (size_t i = 0; i < B.size(); ++i) Bd[i] = B[i];
    float* P = (float*)mkl_malloc(cblas_sgemm_pack_get_size(CblasBMatrix, M, N, K), 64);
    cblas_sgemm_pack(CblasRowMajor, CblasBMatrix, CblasTrans, M, N, K, 1.f, B.data(), K, P);
    int reps = std::max(20, 2000000 / (M * N * K / 64 + 1));
    double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
    for (int round = 0; round < 3; ++round) {  // interleave candidates
      best[0] = std::min(best[0], med([&] { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, A.data(), K, B.data(), K, 0.f, C.data(), N); }, reps));
      best[1] = std::min(best[1], med([&] { cblas_sgemm_compute(CblasRowMajor, CblasNoTrans, CblasPacked, M, N, K, A.data(), K, P, K, 0.f, C.data(), N); }, reps));
      best[2] = std::min(best[2], med([&] { scipy_cblas_sgemm(101, 111, 112, M, N, K, 1.f, A.data(), K, B.data(), K, 0.f, C.data(), N); }, reps));
      best[3] = std::min(best[3], med([&] { cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1., Ad.data(), K, Bd.data(), K, 0., Cd.data(), N); }, reps));
      best[4] = std::min(best[4], med([&] { scipy_cblas_dgemm(101, 111, 112, M, N, K, 1., Ad.data(), K, Bd.data(), K, 0., Cd.data(), N); }, reps));
    }
    double gf = 2.0 * M * N * K / 1e3;
    printf("(%3d,%4d)  %8.2f  %8.2f  %8.2f  %8.2f  %8.2f   | GFLOP/s sgemm: mkl %.0f packed %.0f openblas %.0f\n", M, K, best[0], best[1], best[2], best[3], best[4], gf / best[0], gf / best[1], gf / best[2]);
    mkl_free(P);
  }
}
