// One layer of torch's GRU, LSTM or Elman RNN on the CPU, both directions when bidirectional,
// forward and backward, as XLA FFI handlers. The cells differ only in their gate loops (GruCell,
// LstmCell, RnnCell below); the time loop, lengths, resets, directions, the batch split and the
// products are written once.
//
// Axis legend: T time, B batch, I input size, H hidden size, G = gates * H (3H, 4H or H), P
// LSTM's projection size (0: none), O the output size (P, else H), W the carried state's width
// (O for the GRU and the RNN, O + H for the LSTM: h then c, side by side in one row), D
// directions (1 or 2), K steps per chunk, P batch parts.
// Every buffer is row-major; gates are stacked along G like torch's weights.
//
// GRU, per step t and batch row b (torch's equations), gates (r, z, n):
//   r  = sigma(W_ir x + b_ir + W_hr h + b_hr)
//   z  = sigma(W_iz x + b_iz + W_hz h + b_hz)
//   hn = W_hn h + b_hn
//   n  = tanh(W_in x + b_in + r * hn)
//   h' = (1 - z) * n + z * h              (the state passes through where the step is masked out)
// LSTM, gates (i, f, g, o):
//   i, f, o = sigma(W_i. x + b_i. + W_h. h + b_h.)    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
//   c' = f * c + i * g    h' = o * tanh(c')    (with P > 0: h' = W_hr (o * tanh(c')), P wide)
// RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh), or relu.
// With resets, a step flagged for row b starts from that row of h_reset instead of the carried
// state (an episode starts there), and the backward pass sends the gradient with respect to the
// state it started from to dh_reset, none further back. The forward direction resets on the steps
// that `starts` (T, B) flags; the reverse one, which reads an episode from its last step, on the
// input step before each flagged one.
// Backward, with g = dL/dh' (the carried dh plus this step's output cotangent), the cotangents
// a_i of W_ih x + b_ih and a_h of W_hh h + b_hh per gate block:
//   GRU:  a_n = g (1 - z) (1 - n^2)   a_z = g (h - n) z (1 - z)   a_r = a_n hn r (1 - r)
//         a_i = [a_r, a_z, a_n]   a_h = [a_r, a_z, a_n r]   dh = g z + a_h W_hh
//   LSTM: (P > 0: g <- g W_hr, dW_hr += g^T (o tanh c'))   dc' = dc + g o (1 - tanh^2 c')
//         a_i = a_h = [dc' g i (1 - i), dc' c f (1 - f), dc' i (1 - g^2), g tanh(c') o (1 - o)]
//         dh = a_h W_hh   dc = dc' f
//   RNN:  a_i = a_h = g (1 - h'^2) (tanh) or g [h' > 0] (relu)   dh = a_h W_hh
//   (the state's cotangent passes through where the step is masked out)
//   dx = a_i W_ih (only where x is differentiated: input_grad)
//   dW_ih += a_i^T x    dW_hh += a_h^T h    db_ih, db_hh = a_i, a_h's rows summed
//
// Direction d = 1 (the reverse one) runs its time loop from step T - 1 down: its logical step t
// reads input step T - 1 - t, which is torch's reverse direction (flip, run, flip back) without
// the flips; its output goes to columns [O, 2O) of out (T, B, 2O) directly, as the cotangent
// comes from there, and the two directions' dx add up in one buffer: one call for both
// directions has no flips, concatenation, split of d_out or sum of the dx to do.
//
// The batch rows of a sequence never meet, so the batch is cut into P parts that run the whole
// time loop on their own (no barrier per step; P by the call's whole work, since parts meet once)
// on XLA's intra-op thread pool; the weight
// gradients are summed over parts at the end. Within a part, time runs in chunks of K steps: the
// chunk's input projection (and in the backward pass its weight gradients) is one product over
// K * rows, the recurrent product one per step. float32 products against a weight (the input
// projection, the step, LSTM's projection, dh and dx) are the kernel's own, on a copy of the
// weight packed once per call (gru_gemm.h); the weight gradients and every float64 product go to
// a cblas ?gemm whose address the Python side hands over (jaxgru/_native.py).
#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include <sys/mman.h>

#include "gru_gemm.h"
#include "gru_support.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace jaxgru_native;  // NOLINT: the helpers of this one file

constexpr int kChunk = 16;    // K
constexpr int kMinRows = 8;   // the fewest batch rows worth a thread of their own ...
constexpr int64_t kMinWork = int64_t(1) << 18;  // ... and multiply-adds per call (handing over costs ~10 us, once)

struct Dims {
  int64_t T, B, I, H;
  int64_t G, P, W;  // gates * H, the projection size (0: none), the state's width
  int64_t O() const { return P > 0 ? P : H; }  // the output size
  int64_t Work() const { return T * B * (G * (O() + I) + P * H); }  // one direction's forward multiply-adds
};

int Parts(ffi::ThreadPool& pool, const Dims& d, int directions = 1) {
  int64_t threads = std::max<int64_t>(1, pool.num_threads());
  int64_t work = directions * d.Work();  // the forward's multiply-adds; parts meet once, at the end
  return static_cast<int>(std::clamp<int64_t>(std::min(d.B / kMinRows, work / kMinWork), 1, threads));
}

// A weight as the right-hand side of C (m, n) = A (m, k) op(W) (+ C): op(W) = W^T (the forward
// products, W (n, k)) or W (the backward's dh, dx and LSTM's g W_hr, W (k, n)). float32 multiplies by its packed
// copy once PackWeights has made it, float64 through the BLAS.
template <typename T>
struct Weight {
  const T* w;
  bool trans;
  int64_t n, k;
  bool step;  // multiplies one step's rows (W_hh, W_hr); else K steps' rows at once (W_ih)
  const float* packed = nullptr;
};

// The engine's products against W_ih sum over k = I (the input projection) or k = 3H (dx), over K
// steps' rows at once. From k = kBlasDepth they go to OpenBLAS, which is faster there
// (benchmarks/NOTES.md, entry 11g); the steps' products do not.
constexpr int64_t kBlasDepth = 1024;

template <typename T>
void Mul(const T* a, int64_t lda, int64_t m, const Weight<T>& w, T beta, T* c, int64_t ldc) {  // a: (m, k), row-major
  if constexpr (std::is_same_v<T, float>) {
    if (w.packed != nullptr) return gemm::MatMul(a, lda, 1, m, w.packed, w.n, w.k, c, ldc, beta != T(0));
  }
  Gemm<T>(false, w.trans, static_cast<int>(m), static_cast<int>(w.n), static_cast<int>(w.k), a, static_cast<int>(lda), w.w,
          static_cast<int>(w.trans ? w.k : w.n), beta, c, static_cast<int>(ldc));
}

// The buffers one direction works on; every pointer is at row 0 of the whole batch, h0 and the
// weights at this direction's.
template <typename T>
struct Layer {
  Dims d;
  const T *x, *h0, *w_ih, *w_hh, *b_ih, *b_hh, *w_hr;  // w_hr: LSTM's (P, H), or nullptr
  const bool* valid;   // (T, B), the input steps'
  const bool* starts;  // (T, B), the input steps where an episode starts, or nullptr: no resets
  const T* h_reset;    // (B, W), the state a reset puts in (this direction's), or nullptr
  bool reverse;        // logical step t reads input step T - 1 - t
  int64_t ld, col;    // out and d_out are (T, B, ld), this direction's O columns from col
  Weight<T> ih, hh, hr;  // W_ih^T (I, G), W_hh^T (O, G), W_hr^T (H, P): the forward's products
  Weight<T> ih_b, hh_b, hr_b;  // W_ih (G, I), W_hh (G, O), W_hr (P, H): the backward's dx, dh and g W_hr
  int64_t Step(int64_t t) const { return reverse ? d.T - 1 - t : t; }  // the input step of logical step t
  // Whether logical step t of row b starts from h_reset: its input step starts an episode (forward),
  // or the next input step does (reverse: this step is an episode's last, read first).
  bool Resets(int64_t t, int64_t b) const {
    if (starts == nullptr) return false;
    int64_t s = Step(t) + (reverse ? 1 : 0);
    return s < d.T && starts[s * d.B + b];
  }
  bool AnyResets(int64_t t, int64_t b0, int rows) const {
    for (int i = 0; i < rows; ++i) {
      if (Resets(t, b0 + i)) return true;
    }
    return false;
  }
};

// A buffer of at least `bytes` that the calling thread keeps between calls, one per slot (0: a
// part's work space, 1: the backward pass's per-part weight gradients, 2: the packed weights), so
// that a call allocates nothing once its thread has seen a call as large. It holds at most a
// chunk's work space (K steps), never T's. (The page faults a call meets are in XLA's result
// buffers: see HugePages.)
inline char* ThreadBuffer(int slot, size_t bytes) {
  thread_local std::unique_ptr<char[]> data[3];
  thread_local size_t size[3] = {0, 0, 0};
  if (bytes > size[slot]) {
    data[slot].reset(new char[bytes]);
    size[slot] = bytes;
  }
  return data[slot].get();
}

// Asks for transparent huge pages on the whole 2 MiB pages inside a large result buffer before
// it is first written: XLA allocates results afresh on every call, and each 4 KiB page would
// fault on its first touch (~45k faults per forward+backward of the 2-layer bidirectional
// benchmark shape). Advice only: where the kernel says no (THP off), nothing changes.
template <typename T>
void HugePages(T* data, int64_t count) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(data) + count * sizeof(T)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

// Scratch arrays of sizes[i] elements each, uninitialised (every element is written before it
// is read), 64-byte aligned, carved from the thread's buffer `slot`.
template <typename T, size_t N>
std::array<T*, N> Scratch(int slot, const std::array<int64_t, N>& sizes) {
  constexpr size_t kAlign = 64;
  auto padded = [](int64_t n) { return (size_t(std::max<int64_t>(n, 1)) * sizeof(T) + kAlign - 1) / kAlign * kAlign; };
  size_t total = kAlign;
  for (int64_t n : sizes) total += padded(n);
  auto address = reinterpret_cast<uintptr_t>(ThreadBuffer(slot, total));
  address = (address + kAlign - 1) / kAlign * kAlign;
  std::array<T*, N> arrays;
  for (size_t i = 0; i < N; ++i) {
    arrays[i] = reinterpret_cast<T*>(address);
    address += padded(sizes[i]);
  }
  return arrays;
}

// Whether rows [b0, b0 + rows) of step t are all inside their sequences.
inline bool AllValid(const bool* valid, int64_t B, int64_t t, int64_t b0, int rows) {
  const bool* v = valid + t * B + b0;
  return std::all_of(v, v + rows, [](bool ok) { return ok; });
}

// Gathers rows [b0, b0 + rows) of steps [t0, t0 + k) of src (T, B, cols) into dst (k * rows, cols),
// zeroing masked-out rows (their x may be NaN padding); with valid == nullptr nothing is masked.
// Step -1 is h0 (B, cols); `reverse` reads step T - 1 - t for t (x in the reverse direction).
// A step's rows are contiguous in src: one copy each when none is masked.
template <typename T>
void Gather(const T* src, const T* h0, const bool* valid, const Dims& d, int64_t cols, int64_t t0, int k, int64_t b0, int rows,
            T* dst, bool reverse = false) {
  for (int s = 0; s < k; ++s) {
    int64_t t = t0 + s < 0 || !reverse ? t0 + s : d.T - 1 - (t0 + s);
    const T* in = t < 0 ? h0 + b0 * cols : src + (t * d.B + b0) * cols;
    T* out = dst + int64_t(s) * rows * cols;
    std::copy(in, in + rows * cols, out);
    if (valid == nullptr || AllValid(valid, d.B, t, b0, rows)) continue;
    for (int i = 0; i < rows; ++i) {
      if (!valid[t * d.B + b0 + i]) std::fill(out + i * cols, out + (i + 1) * cols, T(0));
    }
  }
}

// gi (m, G) += bias (G,) on every row.
template <typename T>
JAXGRU_CLONES void AddBias(T* __restrict gi, int64_t m, int64_t G, const T* __restrict bias) {
  for (int64_t q = 0; q < m; ++q) {
    T* __restrict row = gi + q * G;
    for (int64_t j = 0; j < G; ++j) row[j] += bias[j];
  }
}

// sum (G,) += the m rows of a (m, G).
template <typename T>
JAXGRU_CLONES void AddRows(const T* __restrict a, int64_t m, int64_t G, T* __restrict sum) {
  for (int64_t q = 0; q < m; ++q) {
    const T* __restrict row = a + q * G;
    for (int64_t j = 0; j < G; ++j) sum[j] += row[j];
  }
}

// ---- the cells' gate loops ----------------------------------------------------------------------
// Each cell has, for `rows` rows:
//   InputBias(b_ih, b_hh, H, bias): the biases (G,) that add to W_ih x before a step
//   Gates(gi, gh, b_hh, state, rows, H, O, saved, next, hfull): from gi (rows, G) = W_ih x + bias
//     and gh (rows, G) = W_hh h (no bias), the residuals saved (rows, kSaved H) and the new state
//     next (rows, W); with hfull != nullptr (LSTM's projection) o tanh(c') goes there (rows, H) and
//     the caller projects it into next's h
//   GateGrads(saved, prev, d_out, ldo, gfull, rows, H, O, dh, a_i, a_h): from the residuals, the
//     states before the step prev (rows, W) and g = dh + d_out (or, projected, gfull (rows, H) =
//     g W_hr), the cotangents a_i and a_h (rows, G); dh (rows, W) in: the carried dL/dstate, out:
//     its part that skips W_hh (a_h W_hh comes after). kSameA: a_h is a_i (not written apart).

// GRU: saved (r, z, n, hn), (rows, 4H); W = H.
template <typename T>
JAXGRU_CLONES void GruGates(const T* __restrict gi, const T* __restrict gh, const T* __restrict b_hn, const T* __restrict h,
                            int rows, int64_t H, T* __restrict gates, T* __restrict h_new) {
  for (int i = 0; i < rows; ++i) {
    const T *__restrict gi_r = gi + i * 3 * H, *__restrict gh_r = gh + i * 3 * H, *__restrict hp = h + i * H;
    T *__restrict g = gates + i * 4 * H, *__restrict out = h_new + i * H;
    for (int64_t j = 0; j < H; ++j) {
      T r = Sigmoid(gi_r[j] + gh_r[j]);
      T z = Sigmoid(gi_r[H + j] + gh_r[H + j]);
      T hn = gh_r[2 * H + j] + b_hn[j];
      T n = Tanh(gi_r[2 * H + j] + r * hn);
      g[j] = r, g[H + j] = z, g[2 * H + j] = n, g[3 * H + j] = hn;
      out[j] = (T(1) - z) * n + z * hp[j];
    }
  }
}

template <typename T>
JAXGRU_CLONES void GruGateGrads(const T* __restrict gates, const T* __restrict h, const T* __restrict d_out, int64_t ldo, int rows,
                                int64_t H, T* __restrict dh, T* __restrict a_i, T* __restrict a_h) {
  for (int i = 0; i < rows; ++i) {
    const T* __restrict gt = gates + i * 4 * H;
    const T *__restrict r = gt, *__restrict z = gt + H, *__restrict n = gt + 2 * H, *__restrict hn = gt + 3 * H;
    const T *__restrict hp = h + i * H, *__restrict go = d_out + i * ldo;
    T *__restrict d = dh + i * H, *__restrict ai = a_i + i * 3 * H, *__restrict ah = a_h + i * 3 * H;
    for (int64_t j = 0; j < H; ++j) {
      T g = d[j] + go[j];
      T a_n = g * (T(1) - z[j]) * (T(1) - n[j] * n[j]);
      T a_z = g * (hp[j] - n[j]) * z[j] * (T(1) - z[j]);
      T a_r = a_n * hn[j] * r[j] * (T(1) - r[j]);
      ai[j] = a_r, ai[H + j] = a_z, ai[2 * H + j] = a_n;
      ah[j] = a_r, ah[H + j] = a_z, ah[2 * H + j] = a_n * r[j];
      d[j] = g * z[j];
    }
  }
}

struct GruCell {
  static constexpr int kGates = 3, kSaved = 4;
  static constexpr bool kCarry = false, kSameA = false;
  template <typename T>
  static void InputBias(const T* b_ih, const T* b_hh, int64_t H, T* bias) {  // (b_ir + b_hr, b_iz + b_hz, b_in): b_hn is inside r * (...)
    for (int64_t j = 0; j < 3 * H; ++j) bias[j] = b_ih[j] + (j < 2 * H ? b_hh[j] : T(0));
  }
  template <typename T>
  static void Gates(const T* gi, const T* gh, const T* b_hh, const T* state, int rows, int64_t H, int64_t, T* saved, T* next, T*) {
    GruGates(gi, gh, b_hh + 2 * H, state, rows, H, saved, next);
  }
  template <typename T>
  static void GateGrads(const T* saved, const T* prev, const T* d_out, int64_t ldo, const T*, int rows, int64_t H, int64_t, T* dh,
                        T* a_i, T* a_h) {
    GruGateGrads(saved, prev, d_out, ldo, rows, H, dh, a_i, a_h);
  }
};

// LSTM: saved (i, f, g, o, tanh c'), (rows, 5H); a state row is (h (O), c (H)).
template <typename T>
JAXGRU_CLONES void LstmGates(const T* __restrict gi, const T* __restrict gh, const T* __restrict state, int rows, int64_t H, int64_t O,
                             T* __restrict saved, T* __restrict next, T* __restrict hfull) {
  const int64_t W = O + H;
  for (int i = 0; i < rows; ++i) {
    const T *__restrict gi_r = gi + i * 4 * H, *__restrict gh_r = gh + i * 4 * H, *__restrict c = state + i * W + O;
    T *__restrict sv = saved + i * 5 * H, *__restrict c_new = next + i * W + O;
    T* __restrict h_new = hfull != nullptr ? hfull + i * H : next + i * W;
#pragma GCC ivdep  // the five blocks of sv never overlap: more than GCC's alias checks would prove
    for (int64_t j = 0; j < H; ++j) {
      T in = Sigmoid(gi_r[j] + gh_r[j]);
      T f = Sigmoid(gi_r[H + j] + gh_r[H + j]);
      T g = Tanh(gi_r[2 * H + j] + gh_r[2 * H + j]);
      T o = Sigmoid(gi_r[3 * H + j] + gh_r[3 * H + j]);
      T cn = f * c[j] + in * g;
      T tc = Tanh(cn);
      sv[j] = in, sv[H + j] = f, sv[2 * H + j] = g, sv[3 * H + j] = o, sv[4 * H + j] = tc;
      c_new[j] = cn;
      h_new[j] = o * tc;
    }
  }
}

template <typename T>
JAXGRU_CLONES void LstmGateGrads(const T* __restrict saved, const T* __restrict prev, const T* __restrict d_out, int64_t ldo,
                                 const T* __restrict gfull, int rows, int64_t H, int64_t O, T* __restrict dh, T* __restrict a) {
  const int64_t W = O + H;
  for (int i = 0; i < rows; ++i) {
    const T* __restrict sv = saved + i * 5 * H;
    const T *__restrict in = sv, *__restrict f = sv + H, *__restrict gg = sv + 2 * H, *__restrict o = sv + 3 * H, *__restrict tc = sv + 4 * H;
    const T* __restrict cp = prev + i * W + O;
    T *__restrict d = dh + i * W, *__restrict dc = dh + i * W + O, *__restrict ar = a + i * 4 * H;
    const T* __restrict go = gfull != nullptr ? gfull + i * H : d_out + i * ldo;
#pragma GCC ivdep  // nor do the four blocks of ar
    for (int64_t j = 0; j < H; ++j) {
      T g = gfull != nullptr ? go[j] : d[j] + go[j];  // dL / d(o tanh c')
      T dcn = dc[j] + g * o[j] * (T(1) - tc[j] * tc[j]);
      ar[j] = dcn * gg[j] * in[j] * (T(1) - in[j]);
      ar[H + j] = dcn * cp[j] * f[j] * (T(1) - f[j]);
      ar[2 * H + j] = dcn * in[j] * (T(1) - gg[j] * gg[j]);
      ar[3 * H + j] = g * tc[j] * o[j] * (T(1) - o[j]);
      dc[j] = dcn * f[j];
    }
    std::fill(d, d + O, T(0));  // h reaches the loss only through W_hh
  }
}

struct LstmCell {
  static constexpr int kGates = 4, kSaved = 5;
  static constexpr bool kCarry = true, kSameA = true;
  template <typename T>
  static void InputBias(const T* b_ih, const T* b_hh, int64_t H, T* bias) {
    for (int64_t j = 0; j < 4 * H; ++j) bias[j] = b_ih[j] + b_hh[j];
  }
  template <typename T>
  static void Gates(const T* gi, const T* gh, const T*, const T* state, int rows, int64_t H, int64_t O, T* saved, T* next, T* hfull) {
    LstmGates(gi, gh, state, rows, H, O, saved, next, hfull);
  }
  template <typename T>
  static void GateGrads(const T* saved, const T* prev, const T* d_out, int64_t ldo, const T* gfull, int rows, int64_t H, int64_t O,
                        T* dh, T* a_i, T*) {
    LstmGateGrads(saved, prev, d_out, ldo, gfull, rows, H, O, dh, a_i);
  }
};

// RNN: saved h', (rows, H); W = H.
template <typename T, bool kRelu>
JAXGRU_CLONES void RnnGates(const T* __restrict gi, const T* __restrict gh, int rows, int64_t H, T* __restrict saved,
                            T* __restrict next) {
  for (int i = 0; i < rows; ++i) {
    const T *__restrict gi_r = gi + i * H, *__restrict gh_r = gh + i * H;
    T *__restrict sv = saved + i * H, *__restrict out = next + i * H;
    for (int64_t j = 0; j < H; ++j) {
      T pre = gi_r[j] + gh_r[j];
      T h = kRelu ? (pre > T(0) ? pre : T(0)) : Tanh(pre);
      sv[j] = h, out[j] = h;
    }
  }
}

template <typename T, bool kRelu>
JAXGRU_CLONES void RnnGateGrads(const T* __restrict saved, const T* __restrict d_out, int64_t ldo, int rows, int64_t H,
                                T* __restrict dh, T* __restrict a) {
  for (int i = 0; i < rows; ++i) {
    const T *__restrict h = saved + i * H, *__restrict go = d_out + i * ldo;
    T *__restrict d = dh + i * H, *__restrict ar = a + i * H;
    for (int64_t j = 0; j < H; ++j) {
      T g = d[j] + go[j];
      ar[j] = kRelu ? (h[j] > T(0) ? g : T(0)) : g * (T(1) - h[j] * h[j]);
      d[j] = T(0);
    }
  }
}

template <bool kRelu>
struct RnnCell {
  static constexpr int kGates = 1, kSaved = 1;
  static constexpr bool kCarry = false, kSameA = true;
  template <typename T>
  static void InputBias(const T* b_ih, const T* b_hh, int64_t H, T* bias) {
    for (int64_t j = 0; j < H; ++j) bias[j] = b_ih[j] + b_hh[j];
  }
  template <typename T>
  static void Gates(const T* gi, const T* gh, const T*, const T*, int rows, int64_t H, int64_t, T* saved, T* next, T*) {
    RnnGates<T, kRelu>(gi, gh, rows, H, saved, next);
  }
  template <typename T>
  static void GateGrads(const T* saved, const T*, const T* d_out, int64_t ldo, const T*, int rows, int64_t H, int64_t, T* dh, T* a_i,
                        T*) {
    RnnGateGrads<T, kRelu>(saved, d_out, ldo, rows, H, dh, a_i);
  }
};

// ---- the time loop, written once --------------------------------------------------------------

// Copies rows [0, rows) of the first `cols` columns of src (row stride lds) to dst (row stride ldd).
template <typename T>
void CopyRows(const T* src, int64_t lds, int rows, int64_t cols, T* dst, int64_t ldd) {
  if (lds == cols && ldd == cols) {
    std::copy(src, src + rows * cols, dst);
    return;
  }
  for (int i = 0; i < rows; ++i) std::copy(src + i * lds, src + i * lds + cols, dst + i * ldd);
}

// One direction's forward for batch rows [b0, b0 + rows): its columns of out (T, B, ld) zero where
// masked, h_last (B, W), and when saving, states (T, B, W) (the carried state after each logical
// step) and saved (T, B, kSaved H), both in logical steps. A step's rows are contiguous in every
// (T, B, .) buffer but out, so the residuals and the new state are written in place there,
// masked rows patched afterwards.
template <typename C, typename T>
void ForwardPart(const Layer<T>& L, int64_t b0, int rows, T* out, T* h_last, T* states, T* saved) {
  const int64_t H = L.d.H, I = L.d.I, B = L.d.B, G = L.d.G, O = L.d.O(), W = L.d.W, S = C::kSaved * H;
  const int64_t K = std::min<int64_t>(kChunk, L.d.T);
  auto [xk, gi, gh, bias, h, own_saved, reset, hfull] = Scratch<T, 8>(
    0, {K * rows * I, K * rows * G, rows * G, G, 2 * rows * W, saved == nullptr ? rows * S : 0, L.starts == nullptr ? 0 : rows * W,
        L.d.P > 0 ? rows * H : 0});
  C::InputBias(L.b_ih, L.b_hh, H, bias);
  std::copy(L.h0 + b0 * W, L.h0 + (b0 + rows) * W, h);
  const T* state = h;  // the state each step starts from, (rows, W)
  for (int64_t t0 = 0; t0 < L.d.T; t0 += kChunk) {
    int k = static_cast<int>(std::min<int64_t>(kChunk, L.d.T - t0));
    Gather(L.x, L.h0, L.valid, L.d, I, t0, k, b0, rows, xk, L.reverse);
    Mul(xk, I, int64_t(k) * rows, L.ih, T(0), gi, G);  // (K rows, G)
    AddBias(gi, int64_t(k) * rows, G, bias);
    for (int s = 0; s < k; ++s) {
      int64_t step = L.Step(t0 + s), row0 = (t0 + s) * B + b0, in0 = step * B + b0;  // logical, input rows
      T* g = saved != nullptr ? saved + row0 * S : own_saved;
      T* next = states != nullptr ? states + row0 * W : h + (state == h ? rows * W : 0);
      T* o = out + in0 * L.ld + L.col;
      if (L.AnyResets(t0 + s, b0, rows)) {  // the step starts from h_reset in the flagged rows
        std::copy(state, state + rows * W, reset);
        for (int i = 0; i < rows; ++i) {
          if (L.Resets(t0 + s, b0 + i)) std::copy(L.h_reset + (b0 + i) * W, L.h_reset + (b0 + i + 1) * W, reset + i * W);
        }
        state = reset;
        if (states == nullptr) next = h;  // state is neither half of h
      }
      Mul(state, W, rows, L.hh, T(0), gh, G);  // h's O columns of each state row
      C::Gates(gi + int64_t(s) * rows * G, gh, L.b_hh, state, rows, H, O, g, next, L.d.P > 0 ? hfull : nullptr);
      if (L.d.P > 0) Mul(hfull, H, rows, L.hr, T(0), next, W);  // h' = W_hr (o tanh c')
      CopyRows(next, W, rows, O, o, L.ld);
      if (!AllValid(L.valid, B, step, b0, rows)) {
        for (int i = 0; i < rows; ++i) {
          if (L.valid[in0 + i]) continue;
          std::copy(state + i * W, state + (i + 1) * W, next + i * W);  // the state passes through
          std::fill(o + i * L.ld, o + i * L.ld + O, T(0));
          std::fill(g + i * S, g + (i + 1) * S, T(0));
        }
      }
      state = next;
    }
  }
  std::copy(state, state + rows * W, h_last + b0 * W);
}

// One direction's backward for batch rows [b0, b0 + rows), from the cotangent of its columns of
// out (T, B, ld): dx (T, B, I) unless dx == nullptr (x needs no gradient: a product of a quarter
// of the pass saved), written or, with add_dx, added to (the second direction's), dh0 (B, W), and
// this part's weight gradients dw_ih (G, I), dw_hh (G, O), db_ih, db_hh (G,), dw_hr (P, H),
// overwritten. saved == nullptr (remat): the residuals again from the states, one chunk at a time.
template <typename C, typename T>
void BackwardPart(const Layer<T>& L, const T* states, const T* saved, const T* d_out, const T* d_last, int64_t b0, int rows,
                  T* dx, bool add_dx, T* dh0, T* dh_reset, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, T* dw_hr) {
  const int64_t H = L.d.H, I = L.d.I, B = L.d.B, G = L.d.G, O = L.d.O(), W = L.d.W, P = L.d.P, S = C::kSaved * H;
  const int64_t K = std::min<int64_t>(kChunk, L.d.T), remat = saved == nullptr ? 1 : 0, proj = P > 0 ? 1 : 0;
  auto [xk, hp, a_i, a_h_own, dxk, gates, gi, gh, bias, scratch_h, dh, gp, hf, gfull] = Scratch<T, 14>(
    0, {K * rows * I, K * rows * W, K * rows * G, C::kSameA ? 0 : K * rows * G, dx == nullptr ? 0 : K * rows * I, remat * K * rows * S,
        remat * K * rows * G, remat * K * rows * G, G, remat * rows * W, rows * W, proj * K * rows * P, proj * K * rows * H,
        proj * rows * H});
  T* a_h = C::kSameA ? a_i : a_h_own;
  C::InputBias(L.b_ih, L.b_hh, H, bias);
  std::copy(d_last + b0 * W, d_last + (b0 + rows) * W, dh);
  std::fill(dw_ih, dw_ih + G * I, T(0));
  std::fill(dw_hh, dw_hh + G * O, T(0));
  std::fill(db_ih, db_ih + G, T(0));
  std::fill(db_hh, db_hh + G, T(0));
  std::fill(dw_hr, dw_hr + P * H, T(0));
  if (dh_reset != nullptr) std::fill(dh_reset + b0 * W, dh_reset + (b0 + rows) * W, T(0));
  int64_t chunks = (L.d.T + kChunk - 1) / kChunk;
  for (int64_t c = chunks - 1; c >= 0; --c) {
    int64_t t0 = c * kChunk;
    int k = static_cast<int>(std::min<int64_t>(kChunk, L.d.T - t0));
    Gather(L.x, L.h0, L.valid, L.d, I, t0, k, b0, rows, xk, L.reverse);
    Gather(states, L.h0, static_cast<const bool*>(nullptr), L.d, W, t0 - 1, k, b0, rows, hp);  // the state before each step
    for (int s = 0; s < k && L.starts != nullptr; ++s) {  // ... which is h_reset where the step resets
      for (int i = 0; i < rows; ++i) {
        if (L.Resets(t0 + s, b0 + i)) {
          std::copy(L.h_reset + (b0 + i) * W, L.h_reset + (b0 + i + 1) * W, hp + (int64_t(s) * rows + i) * W);
        }
      }
    }
    if (remat) {
      Mul(xk, I, int64_t(k) * rows, L.ih, T(0), gi, G);
      AddBias(gi, int64_t(k) * rows, G, bias);
      Mul(hp, W, int64_t(k) * rows, L.hh, T(0), gh, G);
      for (int s = 0; s < k; ++s) {
        int64_t off = int64_t(s) * rows;
        C::Gates(gi + off * G, gh + off * G, L.b_hh, hp + off * W, rows, H, O, gates + off * S, scratch_h, proj ? gfull : nullptr);
      }
    }
    for (int s = k - 1; s >= 0; --s) {
      int64_t step = L.Step(t0 + s), row0 = (t0 + s) * B + b0, in0 = step * B + b0, local = int64_t(s) * rows;
      const T* gt = remat ? gates + local * S : saved + row0 * S;
      const T* go = d_out + in0 * L.ld + L.col;
      T *ar = a_i + local * G, *hr = a_h + local * G;
      bool all_valid = AllValid(L.valid, B, step, b0, rows);
      if (proj) {  // g = dh + d_out, W_hr's gradient g^T (o tanh c'), and g W_hr into the cell
        T *g = gp + local * P, *v = hf + local * H;
        for (int i = 0; i < rows; ++i) {
          if (all_valid || L.valid[in0 + i]) {
            for (int64_t j = 0; j < P; ++j) g[i * P + j] = dh[i * W + j] + go[i * L.ld + j];
            for (int64_t j = 0; j < H; ++j) v[i * H + j] = gt[i * S + 3 * H + j] * gt[i * S + 4 * H + j];
          } else {
            std::fill(g + i * P, g + (i + 1) * P, T(0));
            std::fill(v + i * H, v + (i + 1) * H, T(0));
          }
        }
        Mul(g, P, rows, L.hr_b, T(0), gfull, H);
      }
      if (all_valid) {
        C::GateGrads(gt, hp + local * W, go, L.ld, proj ? gfull : nullptr, rows, H, O, dh, ar, hr);
      } else {
        for (int i = 0; i < rows; ++i) {
          if (L.valid[in0 + i]) {
            C::GateGrads(gt + i * S, hp + (local + i) * W, go + i * L.ld, L.ld, proj ? gfull + i * H : nullptr, 1, H, O, dh + i * W,
                         ar + i * G, hr + i * G);
          } else {  // a skipped step passes dh through and sees no gradient
            std::fill(ar + i * G, ar + (i + 1) * G, T(0));
            if (!C::kSameA) std::fill(hr + i * G, hr + (i + 1) * G, T(0));
          }
        }
      }
      // dh += a_h W_hh: (rows, G) x (G, O), into h's columns; masked rows add zero.
      Mul(hr, G, rows, L.hh_b, T(1), dh, W);
      if (L.AnyResets(t0 + s, b0, rows)) {  // the state it started from was h_reset: dh goes there
        for (int i = 0; i < rows; ++i) {
          if (!L.Resets(t0 + s, b0 + i)) continue;
          T *d = dh + i * W, *dr = dh_reset + (b0 + i) * W;
          for (int64_t j = 0; j < W; ++j) dr[j] += d[j];
          std::fill(d, d + W, T(0));
        }
      }
    }
    int m = k * rows;
    Gemm<T>(true, false, G, I, m, a_i, G, xk, I, T(1), dw_ih, I);
    Gemm<T>(true, false, G, O, m, a_h, G, hp, W, T(1), dw_hh, O);
    if (proj) Gemm<T>(true, false, P, H, m, gp, P, hf, H, T(1), dw_hr, H);
    AddRows(a_i, m, G, db_ih);
    AddRows(a_h, m, G, db_hh);
    if (dx == nullptr) continue;
    Mul(a_i, G, m, L.ih_b, T(0), dxk, I);
    for (int s = 0; s < k; ++s) {  // a step's rows are contiguous in dx
      const T* src = dxk + int64_t(s) * rows * I;
      T* dst = dx + (L.Step(t0 + s) * B + b0) * I;
      if (add_dx) {
        AddRows(src, 1, rows * I, dst);
      } else {
        std::copy(src, src + rows * I, dst);
      }
    }
  }
  std::copy(dh, dh + rows * W, dh0 + b0 * W);
}

constexpr int kMaxDirections = 2;

ffi::Error Invalid(const char* what) { return ffi::Error(ffi::ErrorCode::kInvalidArgument, std::string("jaxgru native kernel: ") + what); }

// The layer's sizes from its operands (x (T, B, I), h0 (D, B, W), w_ih (D, G, I), w_hh (D, G, O),
// w_hr (D, P, H) or empty); an error where they do not fit together.
template <typename C, ffi::DataType E>
ffi::Error Sizes(ffi::Buffer<E> x, ffi::Buffer<E> h0, ffi::Buffer<E> w_ih, ffi::Buffer<E> w_hh, ffi::Buffer<E> w_hr, Dims& d) {
  if (h0.dimensions().size() != 3 || h0.dimensions()[0] < 1 || h0.dimensions()[0] > kMaxDirections) {
    return Invalid("h0 must be (D, B, W) with D = 1 or 2");
  }
  auto dims = x.dimensions();
  if (dims.size() != 3 || w_ih.dimensions().size() != 3 || w_hh.dimensions().size() != 3) return Invalid("x, w_ih and w_hh must be 3-D");
  int64_t G = w_hh.dimensions()[1], H = G / C::kGates;
  int64_t P = w_hr.element_count() > 0 ? w_hr.dimensions()[1] : 0;
  if (P > 0 && !C::kCarry) return Invalid("only the LSTM has a projection");
  int64_t O = P > 0 ? P : H, W = O + (C::kCarry ? H : 0);
  d = Dims{dims[0], dims[1], dims[2], H, G, P, W};
  if (G != C::kGates * H || w_hh.dimensions()[2] != O || h0.dimensions()[2] != W || w_ih.dimensions()[2] != d.I) {
    return Invalid("the weights' and the state's sizes do not fit the cell");
  }
  return ffi::Error::Success();
}

// Direction `dir` of the layer: x (T, B, I) and valid (T, B) shared, h0 (D, B, W), w_ih (D, G, I),
// w_hh (D, G, O), b_ih, b_hh (D, G), w_hr (D, P, H); direction 1 runs in reverse.
template <ffi::DataType E>
Layer<ffi::NativeType<E>> MakeLayer(const Dims& d, ffi::Buffer<E> x, ffi::Buffer<E> h0, ffi::Buffer<E> w_ih, ffi::Buffer<E> w_hh,
                                    ffi::Buffer<E> b_ih, ffi::Buffer<E> b_hh, ffi::Buffer<E> w_hr, ffi::Buffer<ffi::PRED> valid,
                                    ffi::Buffer<ffi::PRED> starts, ffi::Buffer<E> h_reset, int dir) {
  const int64_t D = h0.dimensions()[0], G = d.G, O = d.O();
  using T = ffi::NativeType<E>;
  const T *wi = w_ih.typed_data() + dir * G * d.I, *wh = w_hh.typed_data() + dir * G * O;
  const T* wr = d.P > 0 ? w_hr.typed_data() + dir * d.P * d.H : nullptr;
  const bool resets = starts.element_count() > 0;  // empty placeholders: no resets
  return {d,
          x.typed_data(),
          h0.typed_data() + dir * d.B * d.W,
          wi,
          wh,
          b_ih.typed_data() + dir * G,
          b_hh.typed_data() + dir * G,
          wr,
          valid.typed_data(),
          resets ? starts.typed_data() : nullptr,
          resets ? h_reset.typed_data() + dir * d.B * d.W : nullptr,
          dir == 1,
          D * O,
          dir * O,
          {wi, true, G, d.I, false},
          {wh, true, G, O, true},
          {wr, true, d.P, d.H, true},
          {wi, false, d.I, G, false},
          {wh, false, O, G, true},
          {wr, false, d.H, d.P, true}};
}

// float32 with an engine: packs the weights that the call multiplies by (nullptr: none) into the
// calling thread's buffer 2, the panels shared among the parts' threads (float64 and "blas" pack
// nothing, nor does W_ih from kBlasDepth on).
template <typename T, size_t N>
void PackWeights(ffi::ThreadPool& pool, int parts, const std::array<Weight<T>*, N>& weights) {
  if constexpr (std::is_same_v<T, float>) {
    if (!gemm::Active()) return;
    std::array<int64_t, N> sizes;
    for (size_t i = 0; i < N; ++i) {
      bool engine = weights[i] != nullptr && (weights[i]->step || weights[i]->k < kBlasDepth);
      sizes[i] = engine ? gemm::PackedSize(weights[i]->n, weights[i]->k) : 0;
    }
    auto packed = Scratch<float, N>(2, sizes);
    ParallelFor(pool, parts, [&](int p) {
      for (size_t i = 0; i < N; ++i) {
        if (sizes[i] == 0) continue;
        const Weight<T>& w = *weights[i];
        int64_t panels = gemm::Panels(w.n);
        // element (j, l) of the (n, k) matrix whose transpose multiplies: W itself, or W's transpose
        gemm::Pack(w.w, w.n, w.k, w.trans ? w.k : 1, w.trans ? 1 : w.n, panels * p / parts, panels * (p + 1) / parts, packed[i]);
      }
    });
    for (size_t i = 0; i < N; ++i) {
      if (weights[i] != nullptr) weights[i]->packed = sizes[i] > 0 ? packed[i] : nullptr;
    }
  }
}

ffi::Error NoBlas() { return ffi::Error(ffi::ErrorCode::kFailedPrecondition, "jaxgru native kernel: no BLAS was set"); }

// starts (T, B) and h_reset (D, B, W) go together, or are both empty (no resets).
template <ffi::DataType E>
bool ResetsFit(ffi::Buffer<ffi::PRED> starts, ffi::Buffer<E> h_reset, ffi::Buffer<E> x, ffi::Buffer<E> h0) {
  if (starts.element_count() == 0) return h_reset.element_count() == 0;
  return static_cast<int64_t>(starts.element_count()) == x.dimensions()[0] * x.dimensions()[1] &&
         h_reset.element_count() == h0.element_count();
}

// The forward's work units: each direction's batch cut in `split` parts, the directions side by
// side when the pool has a thread for each (`side`), else one after another in each part.
struct Plan {
  int split;
  bool side;
  int Units(int directions) const { return side ? directions * split : split; }
};

Plan ForwardPlan(ffi::ThreadPool& pool, const Dims& d, int directions) {
  int64_t threads = std::max<int64_t>(1, pool.num_threads());
  int64_t work = directions * d.Work();
  int64_t units = std::clamp<int64_t>(std::min(directions * (d.B / kMinRows), work / kMinWork), 1, threads);
  if (directions > 1 && units >= directions && d.B >= kMinRows) return {static_cast<int>(units / directions), true};
  return {Parts(pool, d, directions), false};
}

template <typename C, ffi::DataType E, bool kSave>
ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<E> x, ffi::Buffer<E> h0, ffi::Buffer<E> w_ih, ffi::Buffer<E> w_hh,
                   ffi::Buffer<E> b_ih, ffi::Buffer<E> b_hh, ffi::Buffer<E> w_hr, ffi::Buffer<ffi::PRED> valid,
                   ffi::Buffer<ffi::PRED> starts, ffi::Buffer<E> h_reset, ffi::ResultBuffer<E> out, ffi::ResultBuffer<E> h_last,
                   ffi::ResultBuffer<E> states, ffi::ResultBuffer<E> gates) {
  if (sgemm == nullptr || dgemm == nullptr) return NoBlas();
  Dims d;
  if (ffi::Error error = Sizes<C, E>(x, h0, w_ih, w_hh, w_hr, d); error.failure()) return error;
  if (!ResetsFit<E>(starts, h_reset, x, h0)) return Invalid("starts must be (T, B) and h_reset like h0, or both empty");
  const int D = static_cast<int>(h0.dimensions()[0]);
  using T = ffi::NativeType<E>;
  std::array<Layer<T>, kMaxDirections> L;
  for (int dir = 0; dir < D; ++dir) L[dir] = MakeLayer<E>(d, x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, valid, starts, h_reset, dir);
  Plan plan = ForwardPlan(pool, d, D);
  T* s = kSave ? states->typed_data() : nullptr;
  T* g = kSave && gates->element_count() > 0 ? gates->typed_data() : nullptr;  // empty under remat
  std::array<Weight<T>*, 3 * kMaxDirections> weights{};
  for (int dir = 0; dir < D; ++dir) {
    weights[3 * dir] = &L[dir].ih, weights[3 * dir + 1] = &L[dir].hh;
    if (d.P > 0) weights[3 * dir + 2] = &L[dir].hr;
  }
  PackWeights<T, 3 * kMaxDirections>(pool, plan.Units(D), weights);
  HugePages(out->typed_data(), out->element_count());
  if (s != nullptr) HugePages(s, states->element_count());
  if (g != nullptr) HugePages(g, gates->element_count());
  const int64_t S = C::kSaved * d.H;
  ParallelFor(pool, plan.Units(D), [&](int u) {
    int p = u % plan.split, first = plan.side ? u / plan.split : 0, last = plan.side ? first + 1 : D;
    int64_t b0 = d.B * p / plan.split, b1 = d.B * (p + 1) / plan.split;
    for (int dir = first; dir < last; ++dir) {
      ForwardPart<C>(L[dir], b0, static_cast<int>(b1 - b0), out->typed_data(), h_last->typed_data() + dir * d.B * d.W,
                     s == nullptr ? nullptr : s + dir * d.T * d.B * d.W, g == nullptr ? nullptr : g + dir * d.T * d.B * S);
    }
  });
  return ffi::Error::Success();
}

// The backward's parts each run every direction on their rows, one after another: the
// directions' dx add up in the same rows, so no two threads write a row of it.
template <typename C, ffi::DataType E>
ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<E> x, ffi::Buffer<E> h0, ffi::Buffer<E> w_ih, ffi::Buffer<E> w_hh,
                    ffi::Buffer<E> b_ih, ffi::Buffer<E> b_hh, ffi::Buffer<E> w_hr, ffi::Buffer<ffi::PRED> valid,
                    ffi::Buffer<ffi::PRED> starts, ffi::Buffer<E> h_reset, ffi::Buffer<E> states, ffi::Buffer<E> gates,
                    ffi::Buffer<E> d_out, ffi::Buffer<E> d_last, bool input_grad, bool remat, ffi::ResultBuffer<E> dx,
                    ffi::ResultBuffer<E> dh0, ffi::ResultBuffer<E> dw_ih, ffi::ResultBuffer<E> dw_hh, ffi::ResultBuffer<E> db_ih,
                    ffi::ResultBuffer<E> db_hh, ffi::ResultBuffer<E> dw_hr, ffi::ResultBuffer<E> dh_reset) {
  if (sgemm == nullptr || dgemm == nullptr) return NoBlas();
  Dims d;
  if (ffi::Error error = Sizes<C, E>(x, h0, w_ih, w_hh, w_hr, d); error.failure()) return error;
  if (!ResetsFit<E>(starts, h_reset, x, h0)) return Invalid("starts must be (T, B) and h_reset like h0, or both empty");
  const int D = static_cast<int>(h0.dimensions()[0]);
  using T = ffi::NativeType<E>;
  std::array<Layer<T>, kMaxDirections> L;
  for (int dir = 0; dir < D; ++dir) L[dir] = MakeLayer<E>(d, x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, valid, starts, h_reset, dir);
  const int64_t G = d.G, I = d.I, O = d.O(), PH = d.P * d.H, S = C::kSaved * d.H;
  const int64_t size = G * (I + O + 2) + PH;  // a direction's gradients: dw_ih, dw_hh, db_ih, db_hh, dw_hr
  int parts = Parts(pool, d, D);
  T* d_x = input_grad ? dx->typed_data() : nullptr;  // else dx is an empty placeholder
  T* d_reset = L[0].starts != nullptr ? dh_reset->typed_data() : nullptr;  // else an empty placeholder
  if (input_grad) HugePages(d_x, dx->element_count());
  std::array<Weight<T>*, 5 * kMaxDirections> weights{};
  for (int dir = 0, n = 0; dir < D; ++dir) {
    weights[n++] = &L[dir].hh_b;
    if (d.P > 0) weights[n++] = &L[dir].hr_b;
    if (input_grad) weights[n++] = &L[dir].ih_b;
    if (remat) weights[n++] = &L[dir].ih, weights[n++] = &L[dir].hh;
  }
  PackWeights<T, 5 * kMaxDirections>(pool, parts, weights);
  T* partial = Scratch<T, 1>(1, {parts * D * size})[0];  // per part and direction
  ParallelFor(pool, parts, [&](int p) {
    int64_t b0 = d.B * p / parts, b1 = d.B * (p + 1) / parts;
    for (int dir = 0; dir < D; ++dir) {
      T* w = partial + (int64_t(p) * D + dir) * size;
      BackwardPart<C>(L[dir], states.typed_data() + dir * d.T * d.B * d.W, remat ? nullptr : gates.typed_data() + dir * d.T * d.B * S,
                      d_out.typed_data(), d_last.typed_data() + dir * d.B * d.W, b0, static_cast<int>(b1 - b0), d_x, dir > 0,
                      dh0->typed_data() + dir * d.B * d.W, d_reset == nullptr ? nullptr : d_reset + dir * d.B * d.W, w, w + G * I,
                      w + G * (I + O), w + G * (I + O + 1), w + G * (I + O + 2));
    }
  });
  T* dst[5] = {dw_ih->typed_data(), dw_hh->typed_data(), db_ih->typed_data(), db_hh->typed_data(), PH > 0 ? dw_hr->typed_data() : nullptr};
  int64_t offset[6] = {0, G * I, G * (I + O), G * (I + O + 1), G * (I + O + 2), size};
  for (int dir = 0; dir < D; ++dir) {
    for (int a = 0; a < 5; ++a) {
      if (offset[a + 1] == offset[a]) continue;
      T* out = dst[a] + dir * (offset[a + 1] - offset[a]);
      for (int64_t j = offset[a]; j < offset[a + 1]; ++j) {
        T sum = T(0);
        for (int p = 0; p < parts; ++p) sum += partial[(int64_t(p) * D + dir) * size + j];
        out[j - offset[a]] = sum;
      }
    }
  }
  return ffi::Error::Success();
}

}  // namespace

// The float32 engine's instruction set: its name, or, given a name, whether it could be picked.
extern "C" const char* jaxgru_isa() { return gemm::Pick().name; }
extern "C" int jaxgru_select_isa(const char* name) { return gemm::Select(name) ? 1 : 0; }

extern "C" void jaxgru_set_blas(void* s, void* d) {
  sgemm = reinterpret_cast<Sgemm>(s);
  dgemm = reinterpret_cast<Dgemm>(d);
}

// Operands of every target: x, h0, w_ih, w_hh, b_ih, b_hh, w_hr, valid, starts, h_reset.
#define JAXGRU_OPERANDS(E)                                                                               \
  ffi::Ffi::Bind()                                                                                       \
    .Ctx<ffi::ThreadPool>()                                                                              \
    .Arg<ffi::Buffer<E>>()                                                                               \
    .Arg<ffi::Buffer<E>>()                                                                               \
    .Arg<ffi::Buffer<E>>()                                                                               \
    .Arg<ffi::Buffer<E>>()                                                                               \
    .Arg<ffi::Buffer<E>>()                                                                               \
    .Arg<ffi::Buffer<E>>()                                                                               \
    .Arg<ffi::Buffer<E>>()                                                                               \
    .Arg<ffi::Buffer<ffi::PRED>>()                                                                       \
    .Arg<ffi::Buffer<ffi::PRED>>()                                                                       \
    .Arg<ffi::Buffer<E>>()

// Results: out, h_last, states, gates.
#define JAXGRU_FORWARD(name, C, E, save)                                                                 \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, (Forward<C, E, save>),                                             \
                                JAXGRU_OPERANDS(E)                                                       \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>());

// Further operands states, gates, d_out, d_last; results dx, dh0, dw_ih, dw_hh, db_ih, db_hh,
// dw_hr, dh_reset.
#define JAXGRU_BACKWARD(name, C, E)                                                                      \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, (Backward<C, E>),                                                  \
                                JAXGRU_OPERANDS(E)                                                       \
                                  .Arg<ffi::Buffer<E>>()                                                 \
                                  .Arg<ffi::Buffer<E>>()                                                 \
                                  .Arg<ffi::Buffer<E>>()                                                 \
                                  .Arg<ffi::Buffer<E>>()                                                 \
                                  .Attr<bool>("input_grad")                                              \
                                  .Attr<bool>("remat")                                                   \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>()                                                 \
                                  .Ret<ffi::Buffer<E>>());

// One cell's six targets: {prefix}_forward, _forward_save and _backward, each _f32 and _f64.
#define JAXGRU_CELL(prefix, C)                                    \
  JAXGRU_FORWARD(prefix##_forward_f32, C, ffi::F32, false)        \
  JAXGRU_FORWARD(prefix##_forward_f64, C, ffi::F64, false)        \
  JAXGRU_FORWARD(prefix##_forward_save_f32, C, ffi::F32, true)    \
  JAXGRU_FORWARD(prefix##_forward_save_f64, C, ffi::F64, true)    \
  JAXGRU_BACKWARD(prefix##_backward_f32, C, ffi::F32)             \
  JAXGRU_BACKWARD(prefix##_backward_f64, C, ffi::F64)

using RnnTanhCell = RnnCell<false>;
using RnnReluCell = RnnCell<true>;
JAXGRU_CELL(jaxgru, GruCell)
JAXGRU_CELL(jaxgru_lstm, LstmCell)
JAXGRU_CELL(jaxgru_rnn_tanh, RnnTanhCell)
JAXGRU_CELL(jaxgru_rnn_relu, RnnReluCell)
