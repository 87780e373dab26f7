// Flash-style attention for one instruction set, written once over the traits in simd.h and compiled
// by each kernel file with its own -m flags (see kernels_*.cc).
//
// Layout of one work item (batch row b, head h, query tile t): the tile's BR query tokens are the SIMD
// lanes. Q is packed transposed (qt[d][lane], pre-scaled by scale·log2 e so scores are in the log2
// domain), scores are computed transposed (st[key][lane] = Σ_d k[key][d]·qt[d][lane]) and the output is
// accumulated transposed (ot[d][lane] += Σ_key v[key][d]·p[key][lane]). Every softmax statistic is then
// a plain vector over lanes: no horizontal reduction anywhere, and K / V are read in place from the
// [B, L, H, D] tensors (one contiguous row of D floats per key) without packing.
//
// Keys are visited in segments classified against the tile's window: `inside` (every lane sees every
// key: no mask), `outside` (no lane sees any key: skipped by window attention, the residual's share in
// the fused call) and `mixed` (per-element mask). Window attention therefore costs the band plus at
// most one tile width per edge, and the fused call shares one pass over K/V between the full output and
// the window output: each probability goes to exactly one of two accumulators (window / outside) that
// share the running maximum; full = both together, window = the first alone.
//
// With DITFA_AMX (bf16 on AMX-BF16 CPUs) the same tiles, segments and softmax run with the two products
// on TMUL tiles: scores as Sᵀ = K·Qᵀ (A = 16 keys × 32 channels of K in bf16 rows, B = Qᵀ as channel
// pairs per lane, which is the lanes layout the bf16 path already packs) and the output as Oᵀ += Vᵀ·P
// (A = 16 channels × 32 keys of V transposed, B = the probabilities as key pairs per lane). The results
// land in the same st[key][lane] / ot[d][lane] arrays, so masking, the fused accumulators and the
// epilogues are shared with the other paths.
#pragma once

#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <time.h>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace ditfa {
namespace DITFA_ISA_NS {
namespace {

using F = Simd::F;
using M = Simd::M;
constexpr int W = Simd::W;
constexpr int NRV = Simd::NRV;   // row vectors per tile
constexpr int BR = NRV * W;      // query lanes per tile
constexpr int BC = 64;           // keys per chunk
constexpr int NJ = Simd::NJ;
constexpr int ND = Simd::ND;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// The fused call computes the window's probabilities relative to the running maximum over all keys. When
// a lane's window maximum ends this far (log2 units) below the maximum its window sums are based on, those
// sums may have lost terms to underflow, and the tile's window output is recomputed on its own.
constexpr float kFusedUnderflowGap = 64.f;

// Local helpers instead of std::min / std::max / std::fill: a template instantiated in several kernel
// files is one weak symbol, and the linker could hand the scalar path a copy compiled for AVX-512.
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

enum Cls : int { kOutside = 0, kInside = 1, kMixed = 2 };
struct Segment {
  int64_t begin, end;
  Cls cls;
};
// Row vectors [ra, rb) of a chunk: every one of the tile's, or (fp32 only, see sweep) a single one.
struct Rows {
  int ra, rb;
};
constexpr Rows kAllRows{0, NRV};
struct Piece {
  int64_t begin, end;
  Cls cls;
  Rows rows;
};

// Per-thread scratch, on the heap (large static TLS blocks fail in dlopen-ed addons).
struct Scratch {
  float* qt = nullptr;   // D × BR
  float* ow = nullptr;   // D × BR (window / only accumulator)
  float* ox = nullptr;   // D × BR (outside-window accumulator of the fused call)
  float* st = nullptr;   // BC × BR
  float* st2 = nullptr;  // BC × BR
  uint32_t* pk = nullptr;  // bf16: BC/2 × BR pairs of probabilities
  std::vector<Segment> segs;
  std::vector<Piece> chunks;  // the segments cut into chunks of at most BC keys
  Scratch() {
    const size_t big = static_cast<size_t>(kMaxHeadDim) * BR * sizeof(float);
    const size_t small = static_cast<size_t>(BC) * BR * sizeof(float);
    qt = static_cast<float*>(std::aligned_alloc(64, big));
    ow = static_cast<float*>(std::aligned_alloc(64, big));
    ox = static_cast<float*>(std::aligned_alloc(64, big));
    st = static_cast<float*>(std::aligned_alloc(64, small));
    st2 = static_cast<float*>(std::aligned_alloc(64, small));
    pk = static_cast<uint32_t*>(std::aligned_alloc(64, small));
    if (!qt || !ow || !ox || !st || !st2 || !pk) throw std::bad_alloc();
    segs.reserve(64);
    chunks.reserve(128);
  }
  ~Scratch() {
    std::free(qt);
    std::free(ow);
    std::free(ox);
    std::free(st);
    std::free(st2);
    std::free(pk);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

Scratch& scratch() {
  thread_local std::unique_ptr<Scratch> s;
  if (!s) s.reset(new Scratch());
  return *s;
}

// The query tile: its lanes' token indices and coordinates. Padding lanes repeat the last token.
struct Tile {
  int64_t tok[BR];
  int nq;
  // 1-D: first and last token. 2-D: patch rows [r0, r1] and columns [c0, c1].
  int64_t i0, i1, r0, r1, c0, c1;
  alignas(64) float pos[BR];  // 1-D token index, or 2-D row
  alignas(64) float col[BR];  // 2-D column
};

inline int64_t patch_cols(const AttnArgs& a) { return imax(1, imin(a.win.cols, BR / 4)); }
inline int64_t patch_rows(const AttnArgs& a) { return imax(1, BR / patch_cols(a)); }
inline bool grid(const AttnArgs& a) { return a.op != Op::Full && a.win.kind == 2; }

int64_t tiles(const AttnArgs& a) {
  if (grid(a)) {
    const int64_t pc = patch_cols(a), pr = patch_rows(a);
    return ((a.win.rows + pr - 1) / pr) * ((a.win.cols + pc - 1) / pc);
  }
  return (a.Lq + BR - 1) / BR;
}

void make_tile(const AttnArgs& a, int64_t t, Tile& tile) {
  if (grid(a)) {
    const int64_t pc = patch_cols(a), pr = patch_rows(a);
    const int64_t across = (a.win.cols + pc - 1) / pc;
    tile.r0 = (t / across) * pr;
    tile.c0 = (t % across) * pc;
    tile.r1 = imin(a.win.rows, tile.r0 + pr) - 1;
    tile.c1 = imin(a.win.cols, tile.c0 + pc) - 1;
    int n = 0;
    for (int64_t r = tile.r0; r <= tile.r1; r++) {
      for (int64_t c = tile.c0; c <= tile.c1; c++) {
        tile.tok[n] = r * a.win.cols + c;
        tile.pos[n] = static_cast<float>(r);
        tile.col[n] = static_cast<float>(c);
        n++;
      }
    }
    tile.nq = n;
  } else {
    tile.i0 = t * BR;
    tile.i1 = imin(a.Lq, tile.i0 + BR) - 1;
    tile.nq = static_cast<int>(tile.i1 - tile.i0 + 1);
    for (int r = 0; r < tile.nq; r++) {
      tile.tok[r] = tile.i0 + r;
      tile.pos[r] = static_cast<float>(tile.i0 + r);
      tile.col[r] = 0.f;
    }
  }
  for (int r = tile.nq; r < BR; r++) {
    tile.tok[r] = tile.tok[tile.nq - 1];
    tile.pos[r] = tile.pos[tile.nq - 1];
    tile.col[r] = tile.col[tile.nq - 1];
  }
}

void push(std::vector<Segment>& segs, int64_t begin, int64_t end, Cls cls) {
  if (begin >= end) return;
  if (!segs.empty() && segs.back().end == begin && segs.back().cls == cls) {
    segs.back().end = end;
    return;
  }
  segs.push_back({begin, end, cls});
}

// Splits [base, base + n) for lanes spanning [x0, x1] with radius w: keys seen by every lane are inside,
// by some lane mixed, by none outside. `allInside` false demotes inside to mixed.
void band_segments(std::vector<Segment>& segs, int64_t base, int64_t n, int64_t x0, int64_t x1, int64_t w, bool allInside) {
  const auto clip = [n](int64_t x) { return imin(imax(x, 0), n); };
  const int64_t anyLo = clip(x0 - w), anyHi = clip(x1 + w + 1);
  int64_t allLo = clip(x1 - w), allHi = clip(x0 + w + 1);
  if (!allInside || allLo >= allHi) allLo = allHi = anyHi;
  push(segs, base, base + anyLo, kOutside);
  push(segs, base + anyLo, base + allLo, kMixed);
  push(segs, base + allLo, base + allHi, kInside);
  push(segs, base + imax(allHi, anyLo), base + anyHi, kMixed);
  push(segs, base + anyHi, base + n, kOutside);
}

void make_segments(const AttnArgs& a, const Tile& tile, std::vector<Segment>& segs) {
  segs.clear();
  if (a.op == Op::Full) {
    push(segs, 0, a.Lkv, kInside);
  } else if (a.win.kind == 1) {
    band_segments(segs, 0, a.Lkv, tile.i0, tile.i1, a.win.size, true);
  } else {
    const int64_t R = a.win.radius, cols = a.win.cols;
    for (int64_t rk = 0; rk < a.win.rows; rk++) {
      const bool any = rk >= tile.r0 - R && rk <= tile.r1 + R;
      const bool all = rk >= tile.r1 - R && rk <= tile.r0 + R;
      if (!any) {
        push(segs, rk * cols, (rk + 1) * cols, kOutside);
      } else {
        band_segments(segs, rk * cols, cols, tile.c0, tile.c1, R, all);
      }
    }
  }
}

// Lanes of row vector `rv` that may see key `j`.
inline M allowed(const AttnArgs& a, const Tile& tile, int rv, int64_t j) {
  if (a.win.kind == 1) {
    const F d = Simd::sub(Simd::load(tile.pos + rv * W), Simd::set1(static_cast<float>(j)));
    const F w = Simd::set1(static_cast<float>(a.win.size));
    return Simd::mand(Simd::le(d, w), Simd::le(Simd::sub(Simd::zero(), w), d));
  }
  const int64_t rk = j / a.win.cols, ck = j - rk * a.win.cols;
  const F R = Simd::set1(static_cast<float>(a.win.radius));
  const F nR = Simd::sub(Simd::zero(), R);
  const F dr = Simd::sub(Simd::load(tile.pos + rv * W), Simd::set1(static_cast<float>(rk)));
  const F dc = Simd::sub(Simd::load(tile.col + rv * W), Simd::set1(static_cast<float>(ck)));
  return Simd::mand(Simd::mand(Simd::le(dr, R), Simd::le(nR, dr)), Simd::mand(Simd::le(dc, R), Simd::le(nR, dc)));
}

// Where one (batch row, head)'s keys and values are: the fp32 tensors in place, and for bf16 their
// converted copies (see prepare()).
struct KV {
  const float* k;
  const float* v;
  int64_t stride;  // floats between consecutive tokens: H·D
  int64_t D;
  int64_t L;  // keys
  const uint32_t* kb;     // bf16: [Lkv][D2] pairs of channels
  const uint32_t* veven;  // bf16: [P][D] pairs of keys (2t, 2t+1)
  const uint32_t* vodd;   // bf16: [P][D] pairs of keys (2t+1, 2t+2)
  const uint16_t* kt;     // AMX: K as bf16 rows [Lkv + 16][Dk] (Dk = D rounded up to 32, zero-padded)
  const uint16_t* vt;     // AMX: V transposed, bf16 [Dv][Lv] (Dv = D rounded up to 16, Lv = Lkv + 32, zero-padded)
};

#if !defined(DITFA_BF16)
// fp32, long key sequences: K and V of one (b, h) are read by every query tile; in place they are rows of D
// floats H·D apart, a strided stream that no longer stays in L2 beyond ~1 MiB per (b, h) (measured at
// L = 4096, D = 72, H = 16: 83 GFLOP/s in place against 130 for onnxruntime). There they are copied into
// contiguous [Lkv][D] blocks once per call. Full attention (and the fused call) reads every key from every
// tile, and the copy already pays off above 256 KiB (DiT-XL/2's 1024 tokens: full 46 → 42 ms, 2 threads);
// a window call reads each key from the few tiles around it, and there the copy only pays off at the larger
// size (1024 tokens, w = 128: 14 → 15 ms with it; 4096 tokens, w = 512: 200 → 170 ms).
inline bool fp32_packs(const AttnArgs& a) {
  const bool everyKey = a.op == Op::Full || a.op == Op::FullResidual;
  return a.H > 1 && a.Lkv * a.D * 8 > (everyKey ? int64_t{1} << 18 : int64_t{1} << 20);
}
size_t prep_bytes_k(const AttnArgs& a) { return fp32_packs(a) ? static_cast<size_t>(a.B * a.H * a.Lkv * a.D) * 4 : 0; }
size_t prep_bytes_v(const AttnArgs& a) { return prep_bytes_k(a); }
void prepare(const AttnArgs& a, uint32_t* kb, uint32_t* vb, int64_t b, int64_t h) {
  if (!fp32_packs(a)) return;
  const int64_t D = a.D, L = a.Lkv, HD = a.H * D, bh = b * a.H + h;
  const float* k = a.k + (b * L * a.H + h) * D;
  const float* v = a.v + (b * L * a.H + h) * D;
  float* kd = reinterpret_cast<float*>(kb) + bh * L * D;
  float* vd = reinterpret_cast<float*>(vb) + bh * L * D;
  for (int64_t j = 0; j < L; j++) {
    std::memcpy(kd + j * D, k + j * HD, static_cast<size_t>(D) * 4);
    std::memcpy(vd + j * D, v + j * HD, static_cast<size_t>(D) * 4);
  }
}
#endif

#if !defined(DITFA_BF16)
// st[jj][lane] = Σ_d k[j0 + jj][d] · qt[d][lane] for a block of J keys, on NR row vectors from `qt`
// (NR < NRV: a window's edge keys that only some of the tile's row vectors see; the pointers start at
// the first of them).
template <int J, int NR>
inline void qk_block(const float* qt, const float* kp, int64_t ks, int64_t D, float* st, F* cmax) {
  F acc[J][NR];
  for (int jj = 0; jj < J; jj++)
    for (int rv = 0; rv < NR; rv++) acc[jj][rv] = Simd::zero();
  for (int64_t d = 0; d < D; d++) {
    F qv[NR];
    for (int rv = 0; rv < NR; rv++) qv[rv] = Simd::load(qt + d * BR + rv * W);
    for (int jj = 0; jj < J; jj++) {
      const F kb = Simd::set1(kp[jj * ks + d]);
      for (int rv = 0; rv < NR; rv++) acc[jj][rv] = Simd::fma(kb, qv[rv], acc[jj][rv]);
    }
  }
  for (int jj = 0; jj < J; jj++) {
    for (int rv = 0; rv < NR; rv++) {
      Simd::store(st + jj * BR + rv * W, acc[jj][rv]);
      cmax[rv] = Simd::max(cmax[rv], acc[jj][rv]);
    }
  }
}

template <int J, int NR>
inline void qk_tail(int rem, const float* qt, const float* kp, int64_t ks, int64_t D, float* st, F* cmax) {
  if constexpr (J > 0) {
    if (rem == J) return qk_block<J, NR>(qt, kp, ks, D, st, cmax);
    qk_tail<J - 1, NR>(rem, qt, kp, ks, D, st, cmax);
  }
}

// Register blocks keep NJ·NRV (q·kᵀ) and ND·NRV (p·v) accumulators whatever the number of row vectors.
template <int NR>
void qk_f32(const float* qt, const float* kp, int64_t ks, int64_t D, int nk, float* st, F* cmax) {
  constexpr int JB = NJ * NRV / NR;
  int j = 0;
  for (; j + JB <= nk; j += JB) qk_block<JB, NR>(qt, kp + j * ks, ks, D, st + j * BR, cmax);
  if (j < nk) qk_tail<JB - 1, NR>(nk - j, qt, kp + j * ks, ks, D, st + j * BR, cmax);
}

// ot[d][lane] = ot[d][lane]·fac[lane] + Σ_j v[j][d] · pt[j][lane] for K channels d0..d0+K, NR row vectors.
template <int K, int NR>
inline void pv_block(float* ot, const float* pt, const float* vp, int64_t vs, int nk, const F* fac) {
  F acc[K][NR];
  for (int dd = 0; dd < K; dd++)
    for (int rv = 0; rv < NR; rv++) acc[dd][rv] = Simd::mul(Simd::load(ot + dd * BR + rv * W), fac[rv]);
  for (int j = 0; j < nk; j++) {
    F pv[NR];
    for (int rv = 0; rv < NR; rv++) pv[rv] = Simd::load(pt + j * BR + rv * W);
    const float* vr = vp + j * vs;
    for (int dd = 0; dd < K; dd++) {
      const F vb = Simd::set1(vr[dd]);
      for (int rv = 0; rv < NR; rv++) acc[dd][rv] = Simd::fma(vb, pv[rv], acc[dd][rv]);
    }
  }
  for (int dd = 0; dd < K; dd++)
    for (int rv = 0; rv < NR; rv++) Simd::store(ot + dd * BR + rv * W, acc[dd][rv]);
}

template <int K, int NR>
inline void pv_tail(int rem, float* ot, const float* pt, const float* vp, int64_t vs, int nk, const F* fac) {
  if constexpr (K > 0) {
    if (rem == K) return pv_block<K, NR>(ot, pt, vp, vs, nk, fac);
    pv_tail<K - 1, NR>(rem, ot, pt, vp, vs, nk, fac);
  }
}

template <int NR>
void pv_f32(float* ot, const float* pt, const float* vp, int64_t vs, int64_t D, int nk, const F* fac) {
  constexpr int KB = ND * NRV / NR;
  int64_t d = 0;
  for (; d + KB <= D; d += KB) pv_block<KB, NR>(ot + d * BR, pt, vp + d, vs, nk, fac);
  if (d < D) pv_tail<KB - 1, NR>(static_cast<int>(D - d), ot + d * BR, pt, vp + d, vs, nk, fac);
}

#endif

#if defined(DITFA_SIMD_AVX512)
// In-register transpose of a 16 × 16 float block: r[i] holds row i on entry and column i on return.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
  }
}
#endif

#if defined(DITFA_BF16)
// bf16 compute (AVX512-BF16): q·kᵀ and p·v with vdpbf16ps, which multiplies pairs of bf16 and
// accumulates in fp32. Q is packed as pairs of channels, K as pairs of channels per key (prepare()), V as
// pairs of keys per channel (two copies, starting at even and at odd keys, so any chunk start works),
// and P as pairs of keys, converted per chunk. Scores, the softmax and all sums stay fp32.
static_assert(W == 16, "bf16 kernels use 16-lane vectors");

inline uint32_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (inputs are finite)
  return u >> 16;
}
inline uint32_t bf16_pair(float lo, float hi) { return bf16_bits(lo) | (bf16_bits(hi) << 16); }
inline int64_t d2_of(int64_t D) { return (D + 1) / 2; }
inline int64_t pairs_of(int64_t L) { return L / 2 + 1; }

template <int J>
inline void qk_block_bf16(const uint32_t* qt, const uint32_t* kp, int64_t D2, float* st, F* cmax) {
  F acc[J][NRV];
  for (int jj = 0; jj < J; jj++)
    for (int rv = 0; rv < NRV; rv++) acc[jj][rv] = Simd::zero();
  for (int64_t d = 0; d < D2; d++) {
    __m512bh qv[NRV];
    for (int rv = 0; rv < NRV; rv++) qv[rv] = (__m512bh)_mm512_load_si512(qt + d * BR + rv * W);
    for (int jj = 0; jj < J; jj++) {
      const __m512bh kb = (__m512bh)_mm512_set1_epi32(static_cast<int>(kp[jj * D2 + d]));
      for (int rv = 0; rv < NRV; rv++) acc[jj][rv] = _mm512_dpbf16_ps(acc[jj][rv], qv[rv], kb);
    }
  }
  for (int jj = 0; jj < J; jj++) {
    for (int rv = 0; rv < NRV; rv++) {
      Simd::store(st + jj * BR + rv * W, acc[jj][rv]);
      cmax[rv] = Simd::max(cmax[rv], acc[jj][rv]);
    }
  }
}

template <int J>
inline void qk_tail_bf16(int rem, const uint32_t* qt, const uint32_t* kp, int64_t D2, float* st, F* cmax) {
  if constexpr (J > 0) {
    if (rem == J) return qk_block_bf16<J>(qt, kp, D2, st, cmax);
    qk_tail_bf16<J - 1>(rem, qt, kp, D2, st, cmax);
  }
}

template <int K>
inline void pv_block_bf16(float* ot, const uint32_t* pk, const uint32_t* vp, int64_t D, int np, const F* fac) {
  F acc[K][NRV];
  for (int dd = 0; dd < K; dd++)
    for (int rv = 0; rv < NRV; rv++) acc[dd][rv] = Simd::mul(Simd::load(ot + dd * BR + rv * W), fac[rv]);
  for (int t = 0; t < np; t++) {
    __m512bh pv[NRV];
    for (int rv = 0; rv < NRV; rv++) pv[rv] = (__m512bh)_mm512_load_si512(pk + t * BR + rv * W);
    const uint32_t* vr = vp + t * D;
    for (int dd = 0; dd < K; dd++) {
      const __m512bh vb = (__m512bh)_mm512_set1_epi32(static_cast<int>(vr[dd]));
      for (int rv = 0; rv < NRV; rv++) acc[dd][rv] = _mm512_dpbf16_ps(acc[dd][rv], pv[rv], vb);
    }
  }
  for (int dd = 0; dd < K; dd++)
    for (int rv = 0; rv < NRV; rv++) Simd::store(ot + dd * BR + rv * W, acc[dd][rv]);
}

template <int K>
inline void pv_tail_bf16(int rem, float* ot, const uint32_t* pk, const uint32_t* vp, int64_t D, int np, const F* fac) {
  if constexpr (K > 0) {
    if (rem == K) return pv_block_bf16<K>(ot, pk, vp, D, np, fac);
    pv_tail_bf16<K - 1>(rem, ot, pk, vp, D, np, fac);
  }
}

#if defined(DITFA_AMX)
inline int64_t amx_dk(int64_t D) { return (D + 31) / 32 * 32; }
inline int64_t amx_dv(int64_t D) { return (D + 15) / 16 * 16; }
inline int64_t amx_lk(int64_t L) { return L + 16; }
inline int64_t amx_lv(int64_t L) { return L + 32; }
inline uint16_t bf16_half(float x) { return static_cast<uint16_t>(bf16_bits(x)); }

// Converts one (b, h): K to bf16 rows, V to bf16 columns (transposed). Padding is zero.
void prepare(const AttnArgs& a, uint32_t* kb, uint32_t* vb, int64_t b, int64_t h) {
  const int64_t D = a.D, L = a.Lkv, HD = a.H * D, Dk = amx_dk(D), Dv = amx_dv(D), Lk = amx_lk(L), Lv = amx_lv(L);
  const int64_t bh = b * a.H + h;
  const float* k = a.k + (b * L * a.H + h) * D;
  const float* v = a.v + (b * L * a.H + h) * D;
  uint16_t* kd = reinterpret_cast<uint16_t*>(kb) + bh * Lk * Dk;
  // K: bf16 rows, 16 channels at a time.
  for (int64_t j = 0; j < Lk; j++) {
    for (int64_t d = 0; d < Dk; d += 16) {
      const __mmask16 m = static_cast<__mmask16>(j >= L || d >= D ? 0 : D - d >= 16 ? 0xffff : (1u << (D - d)) - 1u);
      const __m256i h16 = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, k + j * HD + d));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(kd + j * Dk + d), h16);
    }
  }
  // V transposed: 16 keys × 16 channels per register transpose, then rounded to bf16.
  uint16_t* vd = reinterpret_cast<uint16_t*>(vb) + bh * Dv * Lv;
  for (int64_t j0 = 0; j0 < Lv; j0 += 16) {
    for (int64_t d0 = 0; d0 < Dv; d0 += 16) {
      const __mmask16 m = static_cast<__mmask16>(d0 >= D ? 0 : D - d0 >= 16 ? 0xffff : (1u << (D - d0)) - 1u);
      __m512 r[16];
      for (int i = 0; i < 16; i++) r[i] = j0 + i < L ? _mm512_maskz_loadu_ps(m, v + (j0 + i) * HD + d0) : _mm512_setzero_ps();
      transpose16(r);
      for (int i = 0; i < 16; i++) {
        const __m256i h16 = (__m256i)_mm512_cvtneps_pbh(r[i]);
        if (j0 + 16 <= Lv) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(vd + (d0 + i) * Lv + j0), h16);
        } else {
          alignas(32) uint16_t tmp[16];
          _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), h16);
          for (int64_t j = j0; j < Lv; j++) vd[(d0 + i) * Lv + j] = tmp[j - j0];
        }
      }
    }
  }
}
size_t prep_bytes_k(const AttnArgs& a) { return static_cast<size_t>(a.B * a.H * amx_lk(a.Lkv) * amx_dk(a.D)) * 2 + 64; }
size_t prep_bytes_v(const AttnArgs& a) { return static_cast<size_t>(a.B * a.H * amx_dv(a.D) * amx_lv(a.Lkv)) * 2 + 64; }

struct TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
// Tile configuration is per thread and cheap to load; every work item loads it (another library may
// have changed it on this thread) and none releases it (the dense AMX set does the same).
inline void amx_begin() {
  TileConfig cfg{};
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}
#else
// Converts one (b, h): K to channel pairs, V to key pairs (even and odd starts). Padding is zero.
void prepare(const AttnArgs& a, uint32_t* kb, uint32_t* vb, int64_t b, int64_t h) {
  const int64_t D = a.D, D2 = d2_of(D), L = a.Lkv, P = pairs_of(L), HD = a.H * D;
  const int64_t bh = b * a.H + h;
  const float* k = a.k + (b * L * a.H + h) * D;
  const float* v = a.v + (b * L * a.H + h) * D;
  uint32_t* kd = kb + bh * L * D2;
  for (int64_t j = 0; j < L; j++) {
    const float* kr = k + j * HD;
    for (int64_t d = 0; d < D2; d++) kd[j * D2 + d] = bf16_pair(kr[2 * d], 2 * d + 1 < D ? kr[2 * d + 1] : 0.f);
  }
  uint32_t* ve = vb + bh * 2 * P * D;
  uint32_t* vo = ve + P * D;
  const auto vat = [&](int64_t j, int64_t d) { return j < L ? v[j * HD + d] : 0.f; };
  for (int64_t t = 0; t < P; t++) {
    for (int64_t d = 0; d < D; d++) {
      ve[t * D + d] = bf16_pair(vat(2 * t, d), vat(2 * t + 1, d));
      vo[t * D + d] = bf16_pair(vat(2 * t + 1, d), vat(2 * t + 2, d));
    }
  }
}
size_t prep_bytes_k(const AttnArgs& a) { return static_cast<size_t>(a.B * a.H * a.Lkv * d2_of(a.D)) * 4; }
size_t prep_bytes_v(const AttnArgs& a) { return static_cast<size_t>(a.B * a.H * 2 * pairs_of(a.Lkv) * a.D) * 4; }
#endif
#endif

// Scores of keys [j0, j0 + nk) for the lanes of `rows`: st[j][lane]; cmax gets their maximum per lane.
void qk(const float* qt, const KV& kv, int64_t j0, int nk, float* st, F* cmax, Rows rows) {
#if defined(DITFA_AMX)
  // Sᵀ (16 keys × 16 lanes per tile) = K rows (A) · Qᵀ channel pairs (B). Two key blocks at a time share
  // each Qᵀ load: tiles 0, 1 (block a, lane halves), 2, 3 (block b), 4, 5 (K of a, b), 6, 7 (Qᵀ halves).
  const int64_t Dk = amx_dk(kv.D), steps = Dk / 32;
  const uint16_t* kp = kv.kt + j0 * Dk;
  int kb = 0;
  for (; kb + 16 < nk; kb += 32) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t ds = 0; ds < steps; ds++) {
      _tile_loadd(6, qt + ds * 16 * BR, BR * 4);
      _tile_loadd(7, qt + ds * 16 * BR + 16, BR * 4);
      _tile_loadd(4, kp + kb * Dk + ds * 32, Dk * 2);
      _tile_loadd(5, kp + (kb + 16) * Dk + ds * 32, Dk * 2);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, st + kb * BR, BR * 4);
    _tile_stored(1, st + kb * BR + 16, BR * 4);
    _tile_stored(2, st + (kb + 16) * BR, BR * 4);
    _tile_stored(3, st + (kb + 16) * BR + 16, BR * 4);
  }
  if (kb < nk) {
    _tile_zero(0);
    _tile_zero(1);
    for (int64_t ds = 0; ds < steps; ds++) {
      _tile_loadd(4, kp + kb * Dk + ds * 32, Dk * 2);
      _tile_loadd(6, qt + ds * 16 * BR, BR * 4);
      _tile_loadd(7, qt + ds * 16 * BR + 16, BR * 4);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
    }
    _tile_stored(0, st + kb * BR, BR * 4);
    _tile_stored(1, st + kb * BR + 16, BR * 4);
  }
  for (int j = 0; j < nk; j++)
    for (int rv = 0; rv < NRV; rv++) cmax[rv] = Simd::max(cmax[rv], Simd::load(st + j * BR + rv * W));
#elif defined(DITFA_BF16)
  const uint32_t* qt2 = reinterpret_cast<const uint32_t*>(qt);
  const int64_t D2 = d2_of(kv.D);
  const uint32_t* kp = kv.kb + j0 * D2;
  int j = 0;
  for (; j + NJ <= nk; j += NJ) qk_block_bf16<NJ>(qt2, kp + j * D2, D2, st + j * BR, cmax);
  if (j < nk) qk_tail_bf16<NJ - 1>(nk - j, qt2, kp + j * D2, D2, st + j * BR, cmax);
#else
  if (rows.rb - rows.ra == NRV) {
    qk_f32<NRV>(qt, kv.k + j0 * kv.stride, kv.stride, kv.D, nk, st, cmax);
  } else {
    qk_f32<1>(qt + rows.ra * W, kv.k + j0 * kv.stride, kv.stride, kv.D, nk, st + rows.ra * W, cmax + rows.ra);
  }
#endif
}

// ot = ot·fac + p·v over keys [j0, j0 + nk) for the lanes of `rows`. `pk` is bf16 scratch (unused for fp32).
void pv(float* ot, const float* pt, const KV& kv, int64_t j0, int nk, const F* fac, uint32_t* pk, Rows rows) {
#if defined(DITFA_AMX)
  // Probabilities as key pairs per lane (the B layout), zero beyond nk up to the 32-key step.
  const int np = (nk + 1) / 2, ksteps = (nk + 31) / 32;
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                       18, 2, 17, 1, 16, 0);
  for (int t = 0; t < np; t++) {
    for (int rv = 0; rv < NRV; rv++) {
      const F lo = Simd::load(pt + (2 * t) * BR + rv * W);
      const F hi = 2 * t + 1 < nk ? Simd::load(pt + (2 * t + 1) * BR + rv * W) : Simd::zero();
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
      _mm512_store_si512(pk + t * BR + rv * W, _mm512_permutexvar_epi16(idx, both));
    }
  }
  for (int t = np; t < ksteps * 16; t++)
    for (int rv = 0; rv < NRV; rv++) _mm512_store_si512(pk + t * BR + rv * W, _mm512_setzero_si512());
  // ot·fac, then Oᵀ (16 channels × 16 lanes per tile) += Vᵀ rows (A) · P (B).
  const int64_t D = kv.D, Dv = amx_dv(D), Lv = amx_lv(kv.L);
  // Once the running maximum settles every factor is 1: skip the pass over the accumulator.
  bool rescale = false;
  for (int rv = 0; rv < NRV; rv++) rescale = rescale || _mm512_cmp_ps_mask(fac[rv], Simd::set1(1.f), _CMP_NEQ_UQ) != 0;
  if (rescale) {
    for (int64_t d = 0; d < D; d++)
      for (int rv = 0; rv < NRV; rv++) Simd::store(ot + d * BR + rv * W, Simd::mul(Simd::load(ot + d * BR + rv * W), fac[rv]));
  }
  _tile_loadd(4, pk, BR * 4);
  _tile_loadd(5, pk + 16, BR * 4);
  if (ksteps > 1) {
    _tile_loadd(6, pk + 16 * BR, BR * 4);
    _tile_loadd(7, pk + 16 * BR + 16, BR * 4);
  }
  for (int64_t db = 0; db < Dv; db += 16) {
    _tile_loadd(0, ot + db * BR, BR * 4);
    _tile_loadd(1, ot + db * BR + 16, BR * 4);
    _tile_loadd(2, kv.vt + db * Lv + j0, Lv * 2);
    _tile_dpbf16ps(0, 2, 4);
    _tile_dpbf16ps(1, 2, 5);
    if (ksteps > 1) {
      _tile_loadd(2, kv.vt + db * Lv + j0 + 32, Lv * 2);
      _tile_dpbf16ps(0, 2, 6);
      _tile_dpbf16ps(1, 2, 7);
    }
    _tile_stored(0, ot + db * BR, BR * 4);
    _tile_stored(1, ot + db * BR + 16, BR * 4);
  }
#elif defined(DITFA_BF16)
  // Pairs of keys (j0 + 2t, j0 + 2t + 1); a missing last key gets probability 0.
  const int np = (nk + 1) / 2;
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                       18, 2, 17, 1, 16, 0);
  for (int t = 0; t < np; t++) {
    for (int rv = 0; rv < NRV; rv++) {
      const F lo = Simd::load(pt + (2 * t) * BR + rv * W);
      const F hi = 2 * t + 1 < nk ? Simd::load(pt + (2 * t + 1) * BR + rv * W) : Simd::zero();
      const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);  // words 0..15 = lo, 16..31 = hi
      _mm512_store_si512(pk + t * BR + rv * W, _mm512_permutexvar_epi16(idx, both));
    }
  }
  const int64_t D = kv.D;
  const uint32_t* vp = (j0 % 2 == 0 ? kv.veven + (j0 / 2) * D : kv.vodd + ((j0 - 1) / 2) * D);
  int64_t d = 0;
  for (; d + ND <= D; d += ND) pv_block_bf16<ND>(ot + d * BR, pk, vp + d, D, np, fac);
  if (d < D) pv_tail_bf16<ND - 1>(static_cast<int>(D - d), ot + d * BR, pk, vp + d, D, np, fac);
#else
  (void)pk;
  if (rows.rb - rows.ra == NRV) {
    pv_f32<NRV>(ot, pt, kv.v + j0 * kv.stride, kv.stride, kv.D, nk, fac);
  } else {
    pv_f32<1>(ot + rows.ra * W, pt + rows.ra * W, kv.v + j0 * kv.stride, kv.stride, kv.D, nk, fac + rows.ra);
  }
#endif
}

// One softmax accumulator: ot (D × BR), the row sums l and the maximum `ref` they are relative to.
struct Acc {
  float* ot;
  F l[NRV];
  F ref[NRV];
  void init(int64_t D) {
    for (int64_t i = 0; i < D * BR; i++) ot[i] = 0.f;
    for (int rv = 0; rv < NRV; rv++) {
      l[rv] = Simd::zero();
      ref[rv] = Simd::set1(kNegInf);
    }
  }
  // Rebases onto `m` (which is >= ref or the stand-in 0 for an all -inf lane) and adds p·v.
  // Row vectors outside `rows` are left as they are.
  void add(const float* pt, const KV& kv, int64_t j0, int nk, const F* m, const F* psum, uint32_t* pk, Rows rows) {
    F fac[NRV];
    for (int rv = rows.ra; rv < rows.rb; rv++) {
      fac[rv] = Simd::exp2(Simd::sub(ref[rv], m[rv]));
      l[rv] = Simd::fma(l[rv], fac[rv], psum[rv]);
      ref[rv] = m[rv];
    }
    pv(ot, pt, kv, j0, nk, fac, pk, rows);
  }
  // Factor that brings this accumulator onto the final maximum m.
  F factor(int rv, F m) const { return Simd::exp2(Simd::sub(ref[rv], m)); }
};

struct State {
  F m[NRV];   // running maximum over every key seen (log2 domain)
  F mw[NRV];  // fused only: running maximum over in-window keys
};

// Processes keys [j0, j0 + nk) of class `cls` for the tile's row vectors `rows` (the others are untouched).
void chunk(const AttnArgs& a, const Tile& tile, Scratch& s, State& st, Acc& accW, Acc* accX, const KV& kv, int64_t j0, int nk, Cls cls, Rows rows) {
  const bool fused = accX != nullptr;
  const bool masked = cls == kMixed;
  F cmax[NRV], wmax[NRV], muse[NRV], sumA[NRV], sumB[NRV];
  for (int rv = 0; rv < NRV; rv++) {
    cmax[rv] = wmax[rv] = Simd::set1(kNegInf);
    muse[rv] = sumA[rv] = sumB[rv] = Simd::zero();
  }
  qk(s.qt, kv, j0, nk, s.st, cmax, rows);
  // Masked chunks: maxima again, without the masked entries (they are excluded from the window's
  // maximum, and from everything in plain window attention).
  if (masked) {
    for (int rv = rows.ra; rv < rows.rb; rv++) cmax[rv] = Simd::set1(kNegInf);
  }
  for (int j = 0; masked && j < nk; j++) {
    for (int rv = rows.ra; rv < rows.rb; rv++) {
      F x = Simd::load(s.st + j * BR + rv * W);
      if (masked) {
        const F xm = Simd::select(allowed(a, tile, rv, j0 + j), x, Simd::set1(kNegInf));
        if (!fused) {
          x = xm;
          Simd::store(s.st + j * BR + rv * W, x);
        }
        wmax[rv] = Simd::max(wmax[rv], xm);
      }
      cmax[rv] = Simd::max(cmax[rv], x);
    }
  }
  for (int rv = rows.ra; rv < rows.rb; rv++) {
    st.m[rv] = Simd::max(st.m[rv], cmax[rv]);
    // A lane that has seen only masked keys so far has m = -inf; 0 stands in so exp2 stays finite.
    muse[rv] = Simd::select(Simd::eq(st.m[rv], Simd::set1(kNegInf)), Simd::zero(), st.m[rv]);
    if (fused) st.mw[rv] = Simd::max(st.mw[rv], cls == kInside ? cmax[rv] : wmax[rv]);
  }
  // Pass 2: probabilities and their sums, split between the window and outside accumulators in the
  // fused call.
  const bool split = fused && masked;
  for (int j = 0; j < nk; j++) {
    for (int rv = rows.ra; rv < rows.rb; rv++) {
      float* sp = s.st + j * BR + rv * W;
#if defined(DITFA_BF16)
      const F p = Simd::exp2_bf16(Simd::sub(Simd::load(sp), muse[rv]));
#else
      const F p = Simd::exp2(Simd::sub(Simd::load(sp), muse[rv]));
#endif
      if (split) {
        const F pin = Simd::select(allowed(a, tile, rv, j0 + j), p, Simd::zero());
        const F pout = Simd::sub(p, pin);
        Simd::store(sp, pin);
        Simd::store(s.st2 + j * BR + rv * W, pout);
        sumA[rv] = Simd::add(sumA[rv], pin);
        sumB[rv] = Simd::add(sumB[rv], pout);
      } else {
        Simd::store(sp, p);
        sumA[rv] = Simd::add(sumA[rv], p);
      }
    }
  }
  if (!fused || cls == kInside) {
    accW.add(s.st, kv, j0, nk, muse, sumA, s.pk, rows);
  } else if (cls == kOutside) {
    accX->add(s.st, kv, j0, nk, muse, sumA, s.pk, rows);
  } else {
    accW.add(s.st, kv, j0, nk, muse, sumA, s.pk, rows);
    accX->add(s.st2, kv, j0, nk, muse, sumB, s.pk, rows);
  }
}

// Requests every cache line of the D floats at `row` (RW: 0 to read, 1 to write; a compile-time
// argument of __builtin_prefetch).
template <int RW>
inline void prefetch_lines(const float* row, int64_t D) {
  const char* p = reinterpret_cast<const char*>(row);
  const int64_t bytes = D * 4;
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, RW, 3);
  __builtin_prefetch(p + bytes - 1, RW, 3);
}

inline void prefetch_row(const float* row, int64_t D, bool forWrite) {
  if (forWrite) {
    prefetch_lines<1>(row, D);
  } else {
    prefetch_lines<0>(row, D);
  }
}

// The rows a tile of (b, h) reads and writes outside K/V: Q, the output and (residual ops) the residual.
template <typename Fn>
void tile_rows(const AttnArgs& a, const Tile& tile, int64_t b, int64_t h, Fn fn) {
  const int64_t HD = a.H * a.D, base = (b * a.Lq * a.H + h) * a.D;
  const bool aux = a.op == Op::WindowResidual || a.op == Op::FullResidual;
  for (int r = 0; r < tile.nq; r++) {
    const int64_t off = base + tile.tok[r] * HD;
    fn(a.q + off, false);
    fn(a.out + off, true);
    if (aux) fn(a.aux + off, a.op == Op::FullResidual);
  }
}

// Runs the tile's segments through `chunk`. Plain window attention skips outside segments.
void sweep(const AttnArgs& a, const Tile& tile, Scratch& s, State& st, Acc& accW, Acc* accX, bool windowOnly, int64_t b, int64_t h) {
  KV kv{a.k + (b * a.Lkv * a.H + h) * a.D, a.v + (b * a.Lkv * a.H + h) * a.D, a.H * a.D, a.D, a.Lkv, nullptr, nullptr, nullptr, nullptr, nullptr};
#if defined(DITFA_AMX)
  {
    const int64_t bh = b * a.H + h;
    kv.kt = reinterpret_cast<const uint16_t*>(a.kb) + bh * amx_lk(a.Lkv) * amx_dk(a.D);
    kv.vt = reinterpret_cast<const uint16_t*>(a.vb) + bh * amx_dv(a.D) * amx_lv(a.Lkv);
  }
#elif !defined(DITFA_BF16)
  if (a.kb != nullptr) {
    const int64_t bh = b * a.H + h;
    kv.k = reinterpret_cast<const float*>(a.kb) + bh * a.Lkv * a.D;
    kv.v = reinterpret_cast<const float*>(a.vb) + bh * a.Lkv * a.D;
    kv.stride = a.D;
  }
#endif
#if defined(DITFA_BF16) && !defined(DITFA_AMX)
  const int64_t bh = b * a.H + h, P = pairs_of(a.Lkv);
  kv.kb = a.kb + bh * a.Lkv * d2_of(a.D);
  kv.veven = a.vb + bh * 2 * P * a.D;
  kv.vodd = kv.veven + P * a.D;
#endif
  for (int rv = 0; rv < NRV; rv++) st.m[rv] = st.mw[rv] = Simd::set1(kNegInf);
  // In plain window attention an outside segment never reaches chunk(); in full attention everything
  // is inside. Chunks of equal size (at most BC): no tiny tail chunk paying a whole chunk's fixed costs.
  s.chunks.clear();
  const auto cut = [&](int64_t begin, int64_t end, Cls cls, Rows rows) {
    const int64_t len = end - begin, n = (len + BC - 1) / BC;
    for (int64_t c = 0; c < n; c++) s.chunks.push_back({begin + len * c / n, begin + len * (c + 1) / n, cls, rows});
  };
#if !defined(DITFA_BF16)
  // A 1-D window's edges: of the keys in a mixed segment, those below the second row vector's reach
  // (lanes i0 + W … see keys from i0 + W − w on) concern the first row vector only, and so on: such a run
  // goes through chunk() with that single row vector, which halves its work at NRV = 2 (the tile's
  // edges cost a row vector's width instead of the tile's). Row vector r sees [lo_r − w, hi_r + w].
  const bool byRows = windowOnly && a.win.kind == 1 && NRV > 1;
#else
  const bool byRows = false;
#endif
  for (const Segment& seg : s.segs) {
    if (windowOnly && seg.cls == kOutside) continue;
    if (!byRows || seg.cls != kMixed) {
      cut(seg.begin, seg.end, seg.cls, kAllRows);
      continue;
    }
    const int64_t w = a.win.size;
    const auto reach = [&](int rv, int64_t j) {
      const int64_t lo = static_cast<int64_t>(tile.pos[rv * W]), hi = static_cast<int64_t>(tile.pos[rv * W + W - 1]);
      return j >= lo - w && j <= hi + w;
    };
    // Runs of keys with the same row vectors in reach (a contiguous range, the rows being in order).
    int64_t j = seg.begin;
    while (j < seg.end) {
      int ra = 0;
      while (ra < NRV && !reach(ra, j)) ra++;
      int rb = ra;
      while (rb < NRV && reach(rb, j)) rb++;
      int64_t e = j + 1;
      const auto same = [&](int64_t k) {
        for (int rv = 0; rv < NRV; rv++)
          if (reach(rv, k) != (rv >= ra && rv < rb)) return false;
        return true;
      };
      while (e < seg.end && same(e)) e++;
      // Runs nobody sees cannot occur in a mixed segment; a run of several (but not all) row vectors
      // (NRV > 2) goes through with all of them, the mask keeping the others out.
      if (rb > ra) cut(j, e, kMixed, rb - ra == 1 ? Rows{ra, rb} : kAllRows);
      j = e;
    }
  }
#if !defined(DITFA_BF16)
  // K and V read in place are rows H·D floats apart (another 4-KiB page each at DiT's sizes), which the
  // hardware prefetchers do not follow: the keys a tile sees first in this call (a window's leading
  // edge, all of them in the first tile of a head) each cost a wait on memory. The next chunk's rows are
  // requested while this one computes.
  const bool strided = kv.stride != kv.D;
  const auto prefetch_keys = [&](const Piece& c) {
    for (int64_t j = c.begin; j < c.end; j++) {
      prefetch_lines<0>(kv.k + j * kv.stride, kv.D);
      prefetch_lines<0>(kv.v + j * kv.stride, kv.D);
    }
  };
  if (strided && !s.chunks.empty()) prefetch_keys(s.chunks[0]);
#endif
  for (size_t i = 0; i < s.chunks.size(); i++) {
    const Piece& c = s.chunks[i];
#if !defined(DITFA_BF16)
    if (strided && i + 1 < s.chunks.size()) prefetch_keys(s.chunks[i + 1]);
#endif
    chunk(a, tile, s, st, accW, accX, kv, c.begin, static_cast<int>(c.end - c.begin), c.cls, c.rows);
  }
}


void run_tile(const AttnArgs& a, int64_t b, int64_t h, int64_t t) {
  Scratch& s = scratch();
  Tile tile{};
  make_tile(a, t, tile);
  const int64_t D = a.D, HD = a.H * a.D;
  const float qscale = a.scale * kLog2e;
  const float* qbase = a.q + (b * a.Lq * a.H + h) * D;
  // In [B, L, H, D] one head's D channels of consecutive tokens are H·D floats apart: at DiT-XL/2's
  // sizes every row of the tile is in another 4-KiB page, which the hardware prefetchers do not cross, so
  // reading Q and writing the output row by row waited on one miss after another (window attention at
  // DiT-XL/2's size spent more time there than on its band). Requesting every row up front overlaps the
  // misses of Q and hides those of the output and the residual behind the sweep. (Requesting the next
  // tile's rows during this one's sweep measured slower, as did giving each thread runs of consecutive
  // tiles.)
  tile_rows(a, tile, b, h, [&](const float* row, bool forWrite) { prefetch_row(row, D, forWrite); });
#if defined(DITFA_BF16)
  uint32_t* qt2 = reinterpret_cast<uint32_t*>(s.qt);
  if (static_cast<double>(a.Lq) * static_cast<double>(HD) < 2147483647.0) {
    // Channel pairs of 16 lanes at a time: two gathers, one rounding to bf16 pairs (lo, hi interleaved).
    const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3,
                                           18, 2, 17, 1, 16, 0);
    const F qs = Simd::set1(qscale);
    for (int lb = 0; lb < BR / 16; lb++) {
      alignas(64) int32_t off[16];
      for (int i = 0; i < 16; i++) off[i] = static_cast<int32_t>(tile.tok[lb * 16 + i] * HD);
      const __m512i idx = _mm512_load_si512(off);
      for (int64_t d = 0; d < d2_of(D); d++) {
        const F lo = Simd::mul(_mm512_i32gather_ps(idx, qbase + 2 * d, 4), qs);
        const F hi = 2 * d + 1 < D ? Simd::mul(_mm512_i32gather_ps(idx, qbase + 2 * d + 1, 4), qs) : Simd::zero();
        const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
        _mm512_store_si512(qt2 + d * BR + lb * 16, _mm512_permutexvar_epi16(inter, both));
      }
    }
  } else {
    for (int r = 0; r < BR; r++) {
      const float* qr = qbase + tile.tok[r] * HD;
      for (int64_t d = 0; d < d2_of(D); d++) qt2[d * BR + r] = bf16_pair(qr[2 * d] * qscale, 2 * d + 1 < D ? qr[2 * d + 1] * qscale : 0.f);
    }
  }
#if defined(DITFA_AMX)
  for (int64_t d = d2_of(D); d < amx_dk(D) / 2; d++)
    for (int r = 0; r < BR; r++) qt2[d * BR + r] = 0;
  amx_begin();
#endif
#elif defined(DITFA_SIMD_AVX512)
  // 16 lanes × 16 channels at a time through a register transpose (padding lanes repeat a token).
  {
    const F qs = Simd::set1(qscale);
    for (int lb = 0; lb < BR / 16; lb++) {
      for (int64_t d0 = 0; d0 < D; d0 += 16) {
        const __mmask16 dm = static_cast<__mmask16>(D - d0 >= 16 ? 0xffff : (1u << (D - d0)) - 1u);
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = Simd::mul(_mm512_maskz_loadu_ps(dm, qbase + tile.tok[lb * 16 + i] * HD + d0), qs);
        transpose16(r);
        for (int64_t j = 0; j < 16 && d0 + j < D; j++) Simd::store(s.qt + (d0 + j) * BR + lb * 16, r[j]);
      }
    }
  }
#else
  for (int r = 0; r < BR; r++) {
    const float* qr = qbase + tile.tok[r] * HD;
    for (int64_t d = 0; d < D; d++) s.qt[d * BR + r] = qr[d] * qscale;
  }
#endif
  make_segments(a, tile, s.segs);
  State st;
  Acc accW{s.ow, {}, {}};
  accW.init(D);
  const bool fused = a.op == Op::FullResidual;
  Acc accX{s.ox, {}, {}};
  if (fused) accX.init(D);
  sweep(a, tile, s, st, accW, fused ? &accX : nullptr, a.op != Op::Full && !fused, b, h);

  float* obase = a.out + (b * a.Lq * a.H + h) * D;
  alignas(64) float inv[BR];
  if (!fused) {
    for (int rv = 0; rv < NRV; rv++) Simd::store(inv + rv * W, accW.l[rv]);
#if defined(DITFA_SIMD_AVX512)
    // ot[d][lane] → out[token][d] 16 × 16 at a time (a transpose in registers), normalised per lane.
    const float* rbase = a.op == Op::WindowResidual ? a.aux + (b * a.Lq * a.H + h) * D : nullptr;
    for (int lb = 0; lb * 16 < tile.nq; lb++) {
      const int lanes = static_cast<int>(imin(16, tile.nq - lb * 16));
      for (int64_t d0 = 0; d0 < D; d0 += 16) {
        const __mmask16 dm = static_cast<__mmask16>(D - d0 >= 16 ? 0xffff : (1u << (D - d0)) - 1u);
        __m512 r[16];
        for (int i = 0; i < 16; i++) r[i] = d0 + i < D ? _mm512_load_ps(s.ow + (d0 + i) * BR + lb * 16) : _mm512_setzero_ps();
        transpose16(r);
        for (int i = 0; i < lanes; i++) {
          const int lane = lb * 16 + i;
          __m512 o = _mm512_mul_ps(r[i], _mm512_set1_ps(1.f / inv[lane]));
          if (rbase) o = _mm512_add_ps(o, _mm512_maskz_loadu_ps(dm, rbase + tile.tok[lane] * HD + d0));
          _mm512_mask_storeu_ps(obase + tile.tok[lane] * HD + d0, dm, o);
        }
      }
    }
#else
    for (int r = 0; r < tile.nq; r++) {
      float* orow = obase + tile.tok[r] * HD;
      const float il = 1.f / inv[r];
      for (int64_t d = 0; d < D; d++) orow[d] = s.ow[d * BR + r] * il;
      if (a.op == Op::WindowResidual) {
        const float* rrow = a.aux + (b * a.Lq * a.H + h) * D + tile.tok[r] * HD;
        for (int64_t d = 0; d < D; d++) orow[d] += rrow[d];
      }
    }
#endif
    return;
  }
  // Fused: full = (ow·fw + ox·fx) / (lw·fw + lx·fx), window = ow / lw.
  alignas(64) float fw[BR], fx[BR], lw[BR], lx[BR], gap[BR];
  for (int rv = 0; rv < NRV; rv++) {
    const F m = Simd::select(Simd::eq(st.m[rv], Simd::set1(kNegInf)), Simd::zero(), st.m[rv]);
    Simd::store(fw + rv * W, accW.factor(rv, m));
    Simd::store(fx + rv * W, accX.factor(rv, m));
    Simd::store(lw + rv * W, accW.l[rv]);
    Simd::store(lx + rv * W, accX.l[rv]);
    // The window's sums are relative to accW.ref; its largest term is 2^(mw − ref).
    Simd::store(gap + rv * W, Simd::sub(accW.ref[rv], st.mw[rv]));
  }
  float* rbase = a.aux + (b * a.Lq * a.H + h) * D;
  bool underflow = false;
  for (int r = 0; r < tile.nq; r++) underflow = underflow || !(gap[r] <= kFusedUnderflowGap);
  for (int r = 0; r < tile.nq; r++) {
    float* orow = obase + tile.tok[r] * HD;
    const float il = 1.f / (lw[r] * fw[r] + lx[r] * fx[r]);
    const float iw = 1.f / lw[r];
    float* rrow = rbase + tile.tok[r] * HD;
    for (int64_t d = 0; d < D; d++) {
      const float ow = s.ow[d * BR + r];
      const float full = (ow * fw[r] + s.ox[d * BR + r] * fx[r]) * il;
      orow[d] = full;
      rrow[d] = full - ow * iw;
    }
  }
  if (underflow) {
    // Recompute the window part alone (its own maximum) and rewrite the residual.
    Acc acc{s.ow, {}, {}};
    acc.init(D);
    State st2;
    sweep(a, tile, s, st2, acc, nullptr, true, b, h);
    for (int rv = 0; rv < NRV; rv++) Simd::store(inv + rv * W, acc.l[rv]);
    for (int r = 0; r < tile.nq; r++) {
      const float* orow = obase + tile.tok[r] * HD;
      float* rrow = rbase + tile.tok[r] * HD;
      const float il = 1.f / inv[r];
      for (int64_t d = 0; d < D; d++) rrow[d] = orow[d] - s.ow[d * BR + r] * il;
    }
  }
}

// Independent FMA chains on registers only: the machine's fp32 FMA peak for this instruction set.
double fma_peak(double seconds) {
  constexpr int kChains = 12;
  F x[kChains];
  for (int i = 0; i < kChains; i++) x[i] = Simd::set1(1.f + 1e-3f * static_cast<float>(i));
  const F mulv = Simd::set1(0.999999f), addv = Simd::set1(1e-6f);
  double flops = 0;
  const auto now = [] {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  const double start = now();
  constexpr int kIters = 1 << 16;
  do {
    for (int it = 0; it < kIters; it++) {
      for (int i = 0; i < kChains; i++) x[i] = Simd::fma(x[i], mulv, addv);
    }
    flops += 2.0 * W * kChains * kIters;
  } while (now() - start < seconds);
  alignas(64) float sink[W];
  F total = x[0];
  for (int i = 1; i < kChains; i++) total = Simd::add(total, x[i]);
  Simd::store(sink, total);
  volatile float keep = sink[0];
  (void)keep;
  return flops;
}

}  // namespace
}  // namespace DITFA_ISA_NS
}  // namespace ditfa
