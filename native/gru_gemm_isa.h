// The float32 product engine of gru_gemm.h for one instruction set. gru_gemm.h includes this file
// once per instruction set, inside a namespace of its own that defines first:
//   kV   floats per vector          Vec   the vector type (aligned), VecU (unaligned)
//   kNV  vectors per panel row      Fma(a, b, c) = a * b + c, one rounding where the ISA has it
//                                   Broadcast(x): x in every lane
//   kMR  rows per register tile
// No include guard: that is the point.
//
// C (m, n) = A (m, k) W^T (+ C), W (n, k) packed once into panels of kNR = kV kNV columns:
// panel p holds, for each l in [0, k), the weights W[p kNR + q][l] of its kNR columns q in a
// row of its own (zero past n). A register tile of kMR rows x kNR columns sums over l with one
// broadcast of A[i][l] per row and kNV vector loads of the panel's row l:
//   C[i][p kNR + q] = sum_l A[i][l] panel_p[l][q]
// Rows are taken in blocks whose A stays in the L2 cache while every panel passes over it.

constexpr int kNR = kV * kNV;

inline int64_t Panels(int64_t n) { return (n + kNR - 1) / kNR; }

// w (n, k), element (j, l) at w[j sn + l sk], packed into panels [p0, p1).
inline void Pack(const float* w, int64_t n, int64_t k, int64_t sn, int64_t sk, int64_t p0, int64_t p1, float* packed) {
  for (int64_t p = p0; p < p1; ++p) {
    float* dst = packed + p * k * kNR;
    int cols = static_cast<int>(std::min<int64_t>(kNR, n - p * kNR));
    const float* col0 = w + p * kNR * sn;
    for (int64_t l = 0; l < k; ++l, dst += kNR) {
      for (int q = 0; q < cols; ++q) dst[q] = col0[q * sn + l * sk];
      for (int q = cols; q < kNR; ++q) dst[q] = 0.0f;
    }
  }
}

// One register tile: rows [0, R) of A (element (i, l) at a[i sa + l sl]) times one panel, into
// c (ldc), cols of its kNR columns, added to c or written over it.
template <int R>
__attribute__((always_inline)) inline void Tile(const float* __restrict a, int64_t sa, int64_t sl, const float* __restrict panel,
                                                int64_t k, float* __restrict c, int64_t ldc, int cols, bool accumulate) {
  Vec sum[R][kNV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) sum[r][j] = Vec{};
  for (int64_t l = 0; l < k; ++l) {
    const Vec* b = reinterpret_cast<const Vec*>(panel + l * kNR);
    Vec bv[kNV];
#pragma GCC unroll 4
    for (int j = 0; j < kNV; ++j) bv[j] = b[j];
    const float* al = a + l * sl;
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      Vec ar = Broadcast(al[r * sa]);
#pragma GCC unroll 4
      for (int j = 0; j < kNV; ++j) sum[r][j] = Fma(ar, bv[j], sum[r][j]);
    }
  }
  if (cols == kNR) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < kNV; ++j) {
        VecU* out = reinterpret_cast<VecU*>(c + r * ldc + j * kV);
        *out = accumulate ? *out + sum[r][j] : sum[r][j];
      }
    }
    return;
  }
  for (int r = 0; r < R; ++r) {  // the last panel, past n: only its first cols columns
    alignas(64) float row[kNR];
    std::memcpy(row, sum[r], sizeof row);
    float* out = c + r * ldc;
    for (int q = 0; q < cols; ++q) out[q] = accumulate ? out[q] + row[q] : row[q];
  }
}

// Rows [0, rows) of A times one panel, kMR rows at a time, then the rows left over.
template <int R = kMR>
__attribute__((always_inline)) inline void Rows(const float* a, int64_t sa, int64_t sl, int64_t rows, const float* panel, int64_t k,
                                                float* c, int64_t ldc, int cols, bool accumulate) {
  if constexpr (R == kMR) {
    int64_t i = 0;
    for (; i + kMR <= rows; i += kMR) Tile<kMR>(a + i * sa, sa, sl, panel, k, c + i * ldc, ldc, cols, accumulate);
    if (i < rows) Rows<kMR - 1>(a + i * sa, sa, sl, rows - i, panel, k, c + i * ldc, ldc, cols, accumulate);
  } else if constexpr (R > 0) {
    if (rows == R) {
      Tile<R>(a, sa, sl, panel, k, c, ldc, cols, accumulate);
    } else {
      Rows<R - 1>(a, sa, sl, rows, panel, k, c, ldc, cols, accumulate);
    }
  }
}

// C (m, n) = A (m, k) W^T (+ C) with W packed by Pack (all Panels(n) panels). The sum over l runs
// in even blocks of at most 1024, so that a panel's block (<= 192 KiB) stays in the L2 cache while
// the row tiles pass over it (benchmarks/NOTES.md, entry 11a); rows run in blocks whose A block
// (rows x depth, 128 KiB) stays there too.
inline void MatMul(const float* a, int64_t sa, int64_t sl, int64_t m, const float* packed, int64_t n, int64_t k, float* c,
                   int64_t ldc, bool accumulate) {
  const int64_t blocks = std::max<int64_t>(1, (k + 1023) / 1024), kc = (k + blocks - 1) / blocks;
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t l0 = b * kc, depth = std::max<int64_t>(0, std::min(kc, k - l0));
    const int64_t block = std::max<int64_t>(kMR, (int64_t(1) << 15) / std::max<int64_t>(depth, 1) / kMR * kMR);
    for (int64_t i0 = 0; i0 < m; i0 += block) {
      int64_t rows = std::min(block, m - i0);
      for (int64_t p = 0; p < Panels(n); ++p) {
        int cols = static_cast<int>(std::min<int64_t>(kNR, n - p * kNR));
        Rows(a + i0 * sa + l0 * sl, sa, sl, rows, packed + p * k * kNR + l0 * kNR, depth, c + i0 * ldc + p * kNR, ldc, cols,
             accumulate || b > 0);
      }
    }
  }
}
