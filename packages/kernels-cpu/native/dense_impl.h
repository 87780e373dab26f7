// Dense (linear-layer) kernels, written once and compiled by each dense file with its own -m flags (each
// in its own isa_avx512_dense_* namespace, like the attention kernel files):
//   DITFA_DENSE_F32   fp32 FMA (AVX-512F), register tile 14 rows × 32 columns
//   DITFA_DENSE_BF16  bf16 pairs with vdpbf16ps (AVX512-BF16), same tile, fp32 accumulation
//   DITFA_DENSE_AMX   bf16 AMX tiles (TMUL), 32 × 32 per step as 2 × 2 tiles of 16 × 16, fp32 accumulation
// Every set shares the prologue (LayerNorm + modulate while packing A) and the epilogue (bias, GELU,
// gated residual, split outputs) below, so the fused forms cost no extra pass over memory.
//
// Work is split by rows: one work item is a block of rows times every output column, so A's block is
// packed once (into per-thread scratch, L2-sized) and the weights (packed once at load) stream by.
// Weights are packed in panels of 32 output columns; the fp32 and vdpbf16ps sets block K at KC and keep
// partial sums of a block in scratch, the AMX set keeps the whole K in its tile accumulators.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "dense.h"

namespace ditfa {
namespace DITFA_DENSE_NS {
namespace {

constexpr int NR = 32;
constexpr float kLog2e = 1.4426950408889634f;

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u); }

// 2^x for x in [-126, 127] (degree-7 polynomial, ~1 ulp); below -126 exactly 0, above 127 saturated.
inline __m512 exp2_ps(__m512 x) {
  const __mmask16 normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.f), _CMP_GE_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-126.f)), _mm512_set1_ps(127.f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.52527338040598e-05f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.000154035303933816f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.00133335581464284f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.00961812910762848f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.0555041086648216f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.240226506959101f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.693147180559945f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.f));
  return _mm512_maskz_scalef_ps(normal, p, n);
}

// GELU with the tanh approximation: 0.5·x·(1 + tanh(u)) = x / (1 + e^(−2u)), u = √(2/π)·(x + 0.044715·x³).
inline __m512 gelu_tanh_ps(__m512 x) {
  const __m512 c0 = _mm512_set1_ps(0.7978845608028654f);
  const __m512 c1 = _mm512_set1_ps(0.7978845608028654f * 0.044715f);
  const __m512 u = _mm512_mul_ps(x, _mm512_fmadd_ps(c1, _mm512_mul_ps(x, x), c0));
  const __m512 e = exp2_ps(_mm512_mul_ps(u, _mm512_set1_ps(-2.f * kLog2e)));
  return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.f), e));
}

// Mean and 1/sqrt(var + eps) of one row (two passes, the second over the row in L1).
inline void row_stats(const float* x, int64_t C, float eps, float* mean, float* rstd) {
  __m512 s = _mm512_setzero_ps();
  for (int64_t c = 0; c < C; c += 16) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail_mask(C - c), x + c));
  const float mu = _mm512_reduce_add_ps(s) / static_cast<float>(C);
  const __m512 m = _mm512_set1_ps(mu);
  __m512 v = _mm512_setzero_ps();
  for (int64_t c = 0; c < C; c += 16) {
    const __mmask16 k = tail_mask(C - c);
    const __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + c), m);
    v = _mm512_fmadd_ps(d, d, v);
  }
  const float var = _mm512_reduce_add_ps(v) / static_cast<float>(C);
  *mean = mu;
  *rstd = 1.f / std::sqrt(var + eps);
}

// One row's prologue: out[c] = (x[c] − mean)·rstd·(1 + scale[c]) + shift[c] for c in [c0, c1).
inline void ln_modulate_span(const float* x, const float* shift, const float* scale, float mean, float rstd, int64_t c0, int64_t c1,
                             float* out) {
  const __m512 mu = _mm512_set1_ps(mean), rs = _mm512_set1_ps(rstd), one = _mm512_set1_ps(1.f);
  for (int64_t c = c0; c < c1; c += 16) {
    const __mmask16 k = tail_mask(c1 - c);
    const __m512 n = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + c), mu), rs);
    const __m512 y = _mm512_fmadd_ps(n, _mm512_add_ps(one, _mm512_maskz_loadu_ps(k, scale + c)), _mm512_maskz_loadu_ps(k, shift + c));
    _mm512_mask_storeu_ps(out + (c - c0), k, y);
  }
}

// The epilogue of a computed tile: rows [r0, r0 + rows) × columns [n0, n0 + 32) of `tile` (row stride
// ldc): bias, GELU or (gated) residual, then the store into the output that owns each column. Everything
// that depends only on the columns (masks, bias, output part) or only on the row (sample) is hoisted.
inline void store_tile(const LinearArgs& a, const float* tile, int64_t ldc, int64_t r0, int64_t rows, int64_t n0) {
  const int64_t P = a.N / a.nout;
  struct Half {
    int64_t n;       // first column
    __mmask16 k;     // columns < N
    __m512 bias;
    int64_t part;    // output part, or -1 when the 16 columns straddle two parts
    int64_t col;     // column inside the part
  } hv[2];
  int halves = 0;
  for (int h = 0; h < 2; h++) {
    const int64_t n = n0 + 16 * h;
    if (n >= a.N) break;
    Half& x = hv[halves++];
    x.n = n;
    x.k = tail_mask(a.N - n);
    x.bias = a.bias ? _mm512_maskz_loadu_ps(x.k, a.bias + n) : _mm512_setzero_ps();
    const int64_t j = n / P, last = imin(a.N, n + 16) - 1;
    x.part = last / P == j ? j : -1;
    x.col = n - j * P;
  }
  const bool gated = a.epi == Epilogue::GatedResidual, residual = gated || a.epi == Epilogue::Residual, gelu = a.epi == Epilogue::Gelu;
  int64_t s = r0 / a.rows_per_sample, next = (s + 1) * a.rows_per_sample;
  const float* g = gated ? a.gate.table + s * a.gate.stride + a.gate.offset : nullptr;
  for (int64_t i = 0; i < rows; i++) {
    const int64_t r = r0 + i;
    if (r >= next) {
      s = r / a.rows_per_sample;
      next = (s + 1) * a.rows_per_sample;
      if (gated) g = a.gate.table + s * a.gate.stride + a.gate.offset;
    }
    for (int h = 0; h < halves; h++) {
      const Half& x = hv[h];
      __m512 v = _mm512_add_ps(_mm512_loadu_ps(tile + i * ldc + 16 * h), x.bias);
      if (gelu) {
        v = gelu_tanh_ps(v);
      } else if (residual) {
        const __m512 res = _mm512_maskz_loadu_ps(x.k, a.res + r * a.N + x.n);
        v = gated ? _mm512_fmadd_ps(_mm512_maskz_loadu_ps(x.k, g + x.n), v, res) : _mm512_add_ps(res, v);
      }
      if (x.part >= 0) {
        _mm512_mask_storeu_ps(a.out[x.part] + r * P + x.col, x.k, v);
      } else {
        alignas(64) float tmp[16];
        _mm512_store_ps(tmp, v);
        for (int64_t n = x.n; n < imin(a.N, x.n + 16); n++) a.out[n / P][r * P + n % P] = tmp[n - x.n];
      }
    }
  }
}

// Per-thread scratch: packed A, row statistics, a modulated row, partial sums. Grown on demand.
struct Scratch {
  void* buf = nullptr;
  size_t bytes = 0;
  void* get(size_t need) {
    if (need > bytes) {
      std::free(buf);
      bytes = need + (need >> 2);
      bytes = (bytes + 4095) & ~static_cast<size_t>(4095);
      buf = std::aligned_alloc(64, bytes);
      if (!buf) {
        bytes = 0;
        throw std::bad_alloc();
      }
    }
    return buf;
  }
  ~Scratch() { std::free(buf); }
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

inline const float* shift_row(const LinearArgs& a, int64_t r) { return a.shift.table + (r / a.rows_per_sample) * a.shift.stride + a.shift.offset; }
inline const float* scale_row(const LinearArgs& a, int64_t r) { return a.scale.table + (r / a.rows_per_sample) * a.scale.stride + a.scale.offset; }

#if defined(DITFA_DENSE_F32) || defined(DITFA_DENSE_BF16)
// ------------------------------------------------------------------------------------------------
// Register-tile sets: MR rows × 32 columns in 2·MR zmm accumulators.
constexpr int MR = 14;
#if defined(DITFA_DENSE_F32)
using Elem = float;  // one packed A / B element: a float
constexpr int64_t kPerElem = 1;
#else
using Elem = uint32_t;  // a pair of bf16 (k, k + 1)
constexpr int64_t kPerElem = 2;
#endif
// K per block: the whole K up to 1152 (no partial sums), else blocks of 256, whose B micro-panel
// (256 × 32 floats) stays in L1 (measured single-threaded at K = 4608: 126 GFLOP/s with blocks of 1152,
// 143 with 256; at K = 1152 unblocked 155, blocks of 256 140).
inline int64_t kc_for(int64_t K) { return K <= 1152 ? (K + 1) / 2 * 2 : 256; }

inline int64_t kpad(int64_t K) { return ceil_div(K, kPerElem) * kPerElem; }
int64_t panels(int64_t N) { return ceil_div(N, NR); }
size_t packed_bytes(int64_t K, int64_t N) { return static_cast<size_t>(panels(N) * (kpad(K) / kPerElem) * NR) * sizeof(Elem); }

#if defined(DITFA_DENSE_BF16)
inline uint32_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                // round to nearest even
  return u >> 16;
}
inline uint32_t bf16_pair(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }
#endif

// Panel p: [K / kPerElem][32] elements; column n0 + j of element row t holds W[n0 + j][t·kPerElem …].
void pack(const float* w, int64_t K, int64_t N, void* out, int64_t p0, int64_t p1) {
  const int64_t KE = kpad(K) / kPerElem;
  Elem* o = static_cast<Elem*>(out);
  for (int64_t p = p0; p < p1; p++) {
    Elem* panel = o + p * KE * NR;
    for (int64_t j = 0; j < NR; j++) {
      const int64_t n = p * NR + j;
      for (int64_t t = 0; t < KE; t++) {
#if defined(DITFA_DENSE_F32)
        panel[t * NR + j] = n < N ? w[n * K + t] : 0.f;
#else
        const float lo = n < N && 2 * t < K ? w[n * K + 2 * t] : 0.f;
        const float hi = n < N && 2 * t + 1 < K ? w[n * K + 2 * t + 1] : 0.f;
        panel[t * NR + j] = bf16_pair(lo, hi);
#endif
      }
    }
  }
}

// c[i][0..31] (row stride ldc) = (accumulate ? c : 0) + Σ_t ap[t][i] · bp[t][0..31] over te element rows.
__attribute__((noinline)) void micro(const Elem* ap, const Elem* bp, int64_t te, float* c, int64_t ldc, bool accumulate) {
  __m512 acc[MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) {
    acc[i][0] = accumulate ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
    acc[i][1] = accumulate ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t t = 0; t < te; t++) {
#if defined(DITFA_DENSE_F32)
    const __m512 b0 = _mm512_loadu_ps(bp + t * NR), b1 = _mm512_loadu_ps(bp + t * NR + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      const __m512 av = _mm512_set1_ps(ap[t * MR + i]);
      acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
    }
#else
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + t * NR), b1 = (__m512bh)_mm512_loadu_si512(bp + t * NR + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[t * MR + i]));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, b1);
    }
#endif
  }
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) {
    _mm512_storeu_ps(c + i * ldc, acc[i][0]);
    _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
  }
}

int64_t row_block(const LinearArgs& a, int threads) {
  // Enough work items for dynamic balancing over the pool (≥ 4 per thread when M allows), at most 8 tiles.
  const int64_t tiles = ceil_div(a.M, MR);
  const int64_t per = imax(1, imin(8, tiles / (4 * imax(1, threads))));
  return per * MR;
}

void run_rows(const LinearArgs& a, int64_t m0, int64_t m1) {
  const int64_t rows = m1 - m0, groups = ceil_div(rows, MR);
  const int64_t K = a.K, KE = kpad(K) / kPerElem, P = panels(a.N), Npad = P * NR;
  const int64_t KC = kc_for(K);
  const bool blocked = K > KC;
  // scratch: [mean, rstd per row][modulated row][packed A: groups × KC/kPerElem × MR][partial sums rows × Npad][tile]
  const size_t statsBytes = static_cast<size_t>(2 * groups * MR) * sizeof(float);
  const size_t rowBytes = static_cast<size_t>(kpad(K) + 16) * sizeof(float);
  const size_t apBytes = static_cast<size_t>(groups * (KC / kPerElem) * MR) * sizeof(Elem);
  const size_t csBytes = blocked ? static_cast<size_t>(groups * MR * Npad) * sizeof(float) : 0;
  const size_t tileBytes = static_cast<size_t>(MR * NR) * sizeof(float);
  auto round64 = [](size_t b) { return (b + 63) & ~static_cast<size_t>(63); };
  char* base = static_cast<char*>(scratch().get(round64(statsBytes) + round64(rowBytes) + round64(apBytes) + round64(csBytes) + tileBytes + 64));
  float* stats = reinterpret_cast<float*>(base);
  float* row = reinterpret_cast<float*>(base + round64(statsBytes));
  Elem* ap = reinterpret_cast<Elem*>(base + round64(statsBytes) + round64(rowBytes));
  float* cs = reinterpret_cast<float*>(base + round64(statsBytes) + round64(rowBytes) + round64(apBytes));
  float* tile = reinterpret_cast<float*>(base + round64(statsBytes) + round64(rowBytes) + round64(apBytes) + round64(csBytes));
  if (a.ln) {
    for (int64_t i = 0; i < rows; i++) row_stats(a.a + (m0 + i) * a.lda, K, a.eps, stats + 2 * i, stats + 2 * i + 1);
  }
  const Elem* w = static_cast<const Elem*>(a.w);
  for (int64_t kb = 0; kb < K; kb += KC) {
    const int64_t kc = imin(KC, K - kb);
    const int64_t te = ceil_div(kc, kPerElem);
    const bool first = kb == 0, last = kb + kc >= K;
    // Pack A rows [kb, kb + kc) (modulated when asked), MR rows interleaved per element row.
    for (int64_t g = 0; g < groups; g++) {
      Elem* apg = ap + g * te * MR;
      for (int64_t i = 0; i < MR; i++) {
        const int64_t r = g * MR + i;
        if (r >= rows) {
          for (int64_t t = 0; t < te; t++) apg[t * MR + i] = 0;
          continue;
        }
        const float* src = a.a + (m0 + r) * a.lda + kb;
        if (a.ln) {
          ln_modulate_span(a.a + (m0 + r) * a.lda, shift_row(a, m0 + r), scale_row(a, m0 + r), stats[2 * r], stats[2 * r + 1], kb, kb + kc, row);
          src = row;
        }
#if defined(DITFA_DENSE_F32)
        for (int64_t t = 0; t < te; t++) apg[t * MR + i] = src[t];
#else
        // Round the row to bf16 16 at a time (pairs (k, k + 1) are then consecutive uint32 values).
        alignas(64) uint16_t conv[32];
        for (int64_t c = 0; c < 2 * te; c += 16) {
          const __mmask16 k = tail_mask(kc - c);
          const __m256i b = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, src + c));
          _mm256_store_si256(reinterpret_cast<__m256i*>(conv), b);
          const uint32_t* pairs = reinterpret_cast<const uint32_t*>(conv);
          for (int64_t t = c / 2; t < imin(te, c / 2 + 8); t++) apg[t * MR + i] = pairs[t - c / 2];
        }
#endif
      }
    }
    for (int64_t p = 0; p < P; p++) {
      const Elem* bp = w + p * KE * NR + (kb / kPerElem) * NR;
      for (int64_t g = 0; g < groups; g++) {
        const int64_t r0 = g * MR, nrows = imin(MR, rows - r0);
        if (!blocked) {
          micro(ap + g * te * MR, bp, te, tile, NR, false);
          store_tile(a, tile, NR, m0 + r0, nrows, p * NR);
        } else {
          float* c = cs + r0 * Npad + p * NR;
          micro(ap + g * te * MR, bp, te, c, Npad, !first);
          if (last) store_tile(a, c, Npad, m0 + r0, nrows, p * NR);
        }
      }
    }
  }
}
#endif

#if defined(DITFA_DENSE_AMX)
// ------------------------------------------------------------------------------------------------
// AMX: bf16 A rows [rows][Kp] (Kp = K rounded up to 32), weights per 32-column panel as, for each
// 32-deep K step, two 16-column halves of [16 k-pairs][16 columns][2] bf16 (the TMUL B layout).
constexpr int64_t MT = 32;  // rows per tile step (two 16-row A tiles)

inline int64_t kpad(int64_t K) { return ceil_div(K, 32) * 32; }
int64_t panels(int64_t N) { return ceil_div(N, NR); }
size_t packed_bytes(int64_t K, int64_t N) { return static_cast<size_t>(panels(N) * (kpad(K) / 32) * 2 * 512) * sizeof(uint16_t); }

inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

void pack(const float* w, int64_t K, int64_t N, void* out, int64_t p0, int64_t p1) {
  const int64_t steps = kpad(K) / 32;
  uint16_t* o = static_cast<uint16_t*>(out);
  for (int64_t p = p0; p < p1; p++) {
    uint16_t* panel = o + p * steps * 1024;
    for (int64_t s = 0; s < steps; s++) {
      for (int64_t h = 0; h < 2; h++) {
        uint16_t* t = panel + (s * 2 + h) * 512;
        for (int64_t kk = 0; kk < 16; kk++) {
          for (int64_t j = 0; j < 16; j++) {
            const int64_t n = p * NR + h * 16 + j;
            for (int64_t e = 0; e < 2; e++) {
              const int64_t k = s * 32 + 2 * kk + e;
              t[(kk * 16 + j) * 2 + e] = n < N && k < K ? bf16_bits(w[n * K + k]) : 0;
            }
          }
        }
      }
    }
  }
}

struct TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

int64_t row_block(const LinearArgs& a, int threads) {
  const int64_t steps = ceil_div(a.M, MT);
  const int64_t per = imax(1, imin(4, steps / (4 * imax(1, threads))));
  return per * MT;
}

// Converts 16 floats (masked) to bf16 with round-to-nearest-even.
inline void store_bf16(uint16_t* dst, __m512 v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), (__m256i)_mm512_cvtneps_pbh(v)); }

void run_rows(const LinearArgs& a, int64_t m0, int64_t m1) {
  const int64_t rows = m1 - m0, rowsPad = ceil_div(rows, MT) * MT;
  const int64_t K = a.K, Kp = kpad(K), steps = Kp / 32, P = panels(a.N);
  const size_t apBytes = static_cast<size_t>(rowsPad * Kp) * sizeof(uint16_t);
  const size_t rowBytes = static_cast<size_t>(Kp + 16) * sizeof(float);
  char* base = static_cast<char*>(scratch().get(apBytes + rowBytes + MT * NR * sizeof(float) + 256));
  uint16_t* ap = reinterpret_cast<uint16_t*>(base);
  float* row = reinterpret_cast<float*>(base + apBytes);
  float* tile = reinterpret_cast<float*>(base + apBytes + rowBytes + 64);
  tile = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(tile) + 63) & ~static_cast<uintptr_t>(63));
  // Pack A: bf16 rows of Kp (zero-padded columns and rows).
  for (int64_t i = 0; i < rowsPad; i++) {
    uint16_t* dst = ap + i * Kp;
    if (i >= rows) {
      std::memset(dst, 0, static_cast<size_t>(Kp) * sizeof(uint16_t));
      continue;
    }
    const int64_t r = m0 + i;
    const float* src = a.a + r * a.lda;
    if (a.ln) {
      float mean, rstd;
      row_stats(src, K, a.eps, &mean, &rstd);
      ln_modulate_span(src, shift_row(a, r), scale_row(a, r), mean, rstd, 0, K, row);
      src = row;
    }
    int64_t c = 0;
    for (; c + 16 <= K; c += 16) store_bf16(dst + c, _mm512_loadu_ps(src + c));
    if (c < Kp) {
      alignas(64) float pad[32] = {};
      for (int64_t e = c; e < K; e++) pad[e - c] = src[e];
      store_bf16(dst + c, _mm512_load_ps(pad));
      if (c + 16 < Kp) store_bf16(dst + c + 16, _mm512_load_ps(pad + 16));
    }
  }
  TileConfig cfg{};
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);  // per work item (cheap); never released, like the attention kernels' tiles
  const uint16_t* w = static_cast<const uint16_t*>(a.w);
  const int64_t lda = Kp * static_cast<int64_t>(sizeof(uint16_t));
  for (int64_t p = 0; p < P; p++) {
    const uint16_t* bp = w + p * steps * 1024;
    for (int64_t i0 = 0; i0 < rows; i0 += MT) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const uint16_t* a0 = ap + i0 * Kp;
      const uint16_t* a1 = a0 + 16 * Kp;
      for (int64_t s = 0; s < steps; s++) {
        _tile_loadd(4, a0 + s * 32, lda);
        _tile_loadd(5, a1 + s * 32, lda);
        _tile_loadd(6, bp + s * 1024, 64);
        _tile_loadd(7, bp + s * 1024 + 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      _tile_stored(0, tile, NR * 4);
      _tile_stored(1, tile + 16, NR * 4);
      _tile_stored(2, tile + 16 * NR, NR * 4);
      _tile_stored(3, tile + 16 * NR + 16, NR * 4);
      store_tile(a, tile, NR, m0 + i0, imin(MT, rows - i0), p * NR);
    }
  }
}
#endif

#if defined(DITFA_DENSE_F32)
void ln_modulate_rows(const float* x, int64_t C, SampleVec shift, SampleVec scale, float eps, int64_t rows_per_sample, float* out, int64_t r0,
                      int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    float mean, rstd;
    row_stats(x + r * C, C, eps, &mean, &rstd);
    const int64_t s = r / rows_per_sample;
    ln_modulate_span(x + r * C, shift.table + s * shift.stride + shift.offset, scale.table + s * scale.stride + scale.offset, mean, rstd, 0, C,
                     out + r * C);
  }
}

void gated_add_rows(const float* x, const float* y, int64_t C, SampleVec gate, int64_t rows_per_sample, float* out, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; r++) {
    const float* g = gate.table ? gate.table + (r / rows_per_sample) * gate.stride + gate.offset : nullptr;
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 k = tail_mask(C - c);
      const __m512 xv = _mm512_maskz_loadu_ps(k, x + r * C + c), yv = _mm512_maskz_loadu_ps(k, y + r * C + c);
      const __m512 v = g ? _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, g + c), yv, xv) : _mm512_add_ps(xv, yv);
      _mm512_mask_storeu_ps(out + r * C + c, k, v);
    }
  }
}
#endif

}  // namespace
}  // namespace DITFA_DENSE_NS
}  // namespace ditfa
