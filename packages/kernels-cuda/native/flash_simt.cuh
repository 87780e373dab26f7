// SIMT flash attention: the path for fp32 storage, for head sizes the tensor-core kernel does not take
// (D % 8 != 0 or D > 128, up to 256) and the cross-check of the tensor-core kernel. Scores, softmax and
// the weighted sum are fp32 whatever the storage type.
//
// One warp per query row, 8 rows per block. Tiles of 32 keys are staged in shared memory as fp32; lane j
// scores key j of the tile, the warp forms the online-softmax update with shuffles, and each lane
// accumulates the output elements d = lane, lane + 32, ... Windowed calls visit only the band's keys.
#pragma once

#include "kernel_common.cuh"

namespace ditfa {
namespace simt {

constexpr int kRows = 8;
constexpr int kThreads = kRows * 32;
constexpr int kKeys = 32;
constexpr int kMaxD = 256;
constexpr int kPer = kMaxD / 32;

inline size_t smem_bytes(int D) { return sizeof(float) * (static_cast<size_t>(kKeys) * (D + 1) + kKeys * D + kRows * D); }

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, DITFA_SHFL_XOR(x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += DITFA_SHFL_XOR(x, o);
  return x;
}

// One online-softmax step for the warp's row: s is lane's score (log2 domain, -inf when masked).
__device__ __forceinline__ void online_step(float s, float& m, float& l, float (&acc)[kPer], const float* Vs, int D, int lane, int nkeys) {
  const float mnew = fmaxf(m, warp_max(s));
  const float muse = mnew == -INFINITY ? 0.f : mnew;
  const float alpha = exp2f(m - muse);
  const float pj = exp2f(s - muse);
  m = mnew;
  l = l * alpha + warp_sum(pj);
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] *= alpha;
  for (int jj = 0; jj < nkeys; ++jj) {
    const float pk = DITFA_SHFL(pj, jj);
#pragma unroll
    for (int c = 0; c < kPer; ++c) {
      const int d = lane + 32 * c;
      if (d < D) acc[c] = fmaf(pk, Vs[jj * D + d], acc[c]);
    }
  }
}

template <typename T, bool FUSED>
DITFA_KERNEL(kThreads) flash_simt_kernel(const AttnParams p) {
  DITFA_EXTERN_SMEM(float, sm);
  const int D = p.D;
  float* Ks = sm;                       // [kKeys][D + 1]
  float* Vs = Ks + kKeys * (D + 1);     // [kKeys][D]
  float* Qs = Vs + kKeys * D;           // [kRows][D]

  const int m0 = DITFA_BID_X * kRows;
  const int h = DITFA_BID_Y;
  const int b = DITFA_BID_Z;
  const int warp = DITFA_TID_X >> 5;
  const int lane = DITFA_TID_X & 31;
  const int row = m0 + warp;
  const bool active = row < p.Lq;
  const int64_t tstride = static_cast<int64_t>(p.H) * D;
  const T* q = static_cast<const T*>(p.q) + (static_cast<int64_t>(b) * p.Lq * p.H + h) * D;
  const T* k = static_cast<const T*>(p.k) + (static_cast<int64_t>(b) * p.Lkv * p.H + h) * D;
  const T* v = static_cast<const T*>(p.v) + (static_cast<int64_t>(b) * p.Lkv * p.H + h) * D;

  for (int idx = DITFA_TID_X; idx < kRows * D; idx += kThreads) {
    const int r = idx / D, d = idx - r * D;
    Qs[idx] = (m0 + r < p.Lq) ? to_float<T>(q[static_cast<int64_t>(m0 + r) * tstride + d]) : 0.f;
  }

  const int mlast = min(m0 + kRows, p.Lq) - 1;
  int wlo = 0, whi = p.Lkv;
  window_key_range(p.win, m0, mlast, p.Lkv, wlo, whi);
  const bool windowed = p.win.kind != 0;
  const int klo = (windowed && !FUSED) ? wlo : 0;
  const int khi = (windowed && !FUSED) ? whi : p.Lkv;

  float acc[kPer], accw[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = accw[c] = 0.f;
  float m = -INFINITY, l = 0.f, mw = -INFINITY, lw = 0.f;

  for (int n0 = klo; n0 < khi; n0 += kKeys) {
    const int nkeys = min(kKeys, khi - n0);
    DITFA_SYNC(); // Qs written / previous tile consumed
    for (int idx = DITFA_TID_X; idx < kKeys * D; idx += kThreads) {
      const int r = idx / D, d = idx - r * D;
      const bool ok = r < nkeys;
      const int64_t off = static_cast<int64_t>(n0 + r) * tstride + d;
      Ks[r * (D + 1) + d] = ok ? to_float<T>(k[off]) : 0.f;
      Vs[r * D + d] = ok ? to_float<T>(v[off]) : 0.f;
    }
    DITFA_SYNC();
    if (!active) continue;
    const int j = n0 + lane;
    float s = -INFINITY;
    if (lane < nkeys) {
      const float* qr = Qs + warp * D;
      const float* kr = Ks + lane * (D + 1);
      float dot = 0.f;
      for (int d = 0; d < D; ++d) dot = fmaf(qr[d], kr[d], dot);
      s = dot * p.scale_log2;
    }
    const bool allow = lane < nkeys && (!windowed || window_allows(p.win, row, j));
    if (FUSED) {
      online_step(s, m, l, acc, Vs, D, lane, nkeys);
      if (n0 + nkeys > wlo && n0 < whi) online_step(allow ? s : -INFINITY, mw, lw, accw, Vs, D, lane, nkeys);
    } else {
      online_step(allow ? s : -INFINITY, m, l, acc, Vs, D, lane, nkeys);
    }
  }
  if (!active) return;

  const float inv = l > 0.f ? 1.f / l : 0.f;
  const float invw = lw > 0.f ? 1.f / lw : 0.f;
  const int64_t off = (static_cast<int64_t>(b) * p.Lq * p.H + h) * D + static_cast<int64_t>(row) * tstride;
  T* out = static_cast<T*>(p.out) + off;
  const T* res = p.residual_in ? static_cast<const T*>(p.residual_in) + off : nullptr;
  T* full = FUSED ? static_cast<T*>(p.full_out) + off : nullptr;
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    const int d = lane + 32 * c;
    if (d >= D) continue;
    float x = acc[c] * inv;
    if (FUSED) {
      full[d] = from_float<T>(x);
      x -= accw[c] * invw;
    } else if (res) {
      x += to_float<T>(res[d]);
    }
    out[d] = from_float<T>(x);
  }
}

}  // namespace simt
}  // namespace ditfa
